//! Static checks of what cannot run here (Docker, Kubernetes) and of the settings document:
//! every port, environment variable, command and probe path in `docker-compose.yml`,
//! `deploy/` and `docs/configuration.md` is checked against the code, so that a renamed
//! flag or subcommand breaks this test rather than a deployment. Every container runs the
//! one `wfm` binary with its role as the subcommand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;

use clap::CommandFactory;
use serde_yaml_ng::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(id, flag, env, default)` of every setting of a binary, from its clap definition.
fn settings(command: clap::Command) -> Vec<(String, String, String, String)> {
    command
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let env = a
                .get_env()
                .map(|e| e.to_string_lossy().to_string())
                .unwrap_or_default();
            let default = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join(",");
            (
                a.get_id().to_string(),
                format!("--{}", a.get_long().unwrap_or_default()),
                env,
                default,
            )
        })
        .collect()
}

/// The one binary every image and manifest runs.
const BINARY: &str = "/usr/local/bin/wfm";

fn manager() -> clap::Command {
    wfm_manager::settings::Settings::command()
}

fn gateway() -> clap::Command {
    wfm_gateway::settings::Settings::command()
}

fn envs(command: clap::Command) -> BTreeSet<String> {
    settings(command)
        .into_iter()
        .map(|(_, _, env, _)| env)
        .filter(|e| !e.is_empty())
        .chain(
            wfm_telemetry::init::STANDARD_ENV
                .iter()
                .map(|s| s.to_string()),
        )
        .collect()
}

/// The default port of setting `id`.
fn default_port(command: clap::Command, id: &str) -> u16 {
    let (_, _, _, default) = settings(command)
        .into_iter()
        .find(|(i, ..)| i == id)
        .unwrap();
    default.parse::<SocketAddr>().unwrap().port()
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// docs/configuration.md

/// The rows of the table after `marker`: `| key | flag | env | default | meaning |`.
fn doc_rows(doc: &str, marker: &str) -> Vec<(String, String, String, String)> {
    let start = doc
        .find(marker)
        .unwrap_or_else(|| panic!("docs/configuration.md lacks {marker}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            let cell = |i: usize| cells.get(i).cloned().unwrap_or_default();
            let default = cell(3);
            let default = if default == "none" {
                String::new()
            } else {
                default
            };
            (cell(0), cell(1), cell(2), default)
        })
        .collect()
}

fn expected_rows(command: clap::Command) -> String {
    settings(command.clone())
        .into_iter()
        .map(|(id, flag, env, default)| {
            let help = command
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())
                .and_then(|a| a.get_help())
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            let default = if default.is_empty() {
                "none".to_string()
            } else {
                format!("`{default}`")
            };
            let env = if env.is_empty() {
                String::new()
            } else {
                format!("`{env}`")
            };
            format!("| `{id}` | `{flag}` | {env} | {default} | {help} |")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configuration_document_lists_every_setting_as_the_code_defines_it() {
    let doc = read("docs/configuration.md");
    for (marker, command) in [
        ("<!-- settings: wfm-manager -->", manager()),
        ("<!-- settings: wfm-gateway -->", gateway()),
    ] {
        let documented = doc_rows(&doc, marker);
        let defined = settings(command.clone());
        assert_eq!(
            documented,
            defined,
            "docs/configuration.md disagrees with the code after {marker}; the code says:\n{}",
            expected_rows(command)
        );
    }
    for env in wfm_telemetry::init::STANDARD_ENV {
        assert!(doc.contains(&format!("`{env}`")), "{env} is not documented");
    }
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml and deploy/compose

#[test]
fn the_dockerfile_builds_and_runs_the_one_binary() {
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked -p wfm \\\n"));
    assert!(dockerfile.contains("cp target/release/wfm /out/"));
    assert!(dockerfile.contains(&format!("COPY --from=builder /out/wfm {BINARY}\n")));
    assert!(dockerfile.contains(&format!("ENTRYPOINT [\"{BINARY}\"]")));
    // One runtime stage: the builder and the image.
    assert_eq!(dockerfile.matches("\nFROM ").count(), 2, "{dockerfile}");
    // The image listens where compose and the manifests expect, on every interface.
    for (command, listen) in [
        (manager(), "listen"),
        (manager(), "metrics_listen"),
        (gateway(), "listen"),
    ] {
        let (_, _, env, default) = settings(command)
            .into_iter()
            .find(|(id, ..)| id == listen)
            .unwrap();
        let port = default.parse::<SocketAddr>().unwrap().port();
        assert!(
            dockerfile.contains(&format!("{env}=0.0.0.0:{port}")),
            "{env}"
        );
        assert!(dockerfile.contains(&format!(" {port}")), "EXPOSE {port}");
    }
}

/// `docker-compose.yml` as Compose reads it: with its `<<` merge keys applied, since the
/// manager replicas share their definition through them.
fn compose_file() -> Value {
    let mut compose: Value = serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
    compose.apply_merge().unwrap();
    compose
}

/// The services that run `wfm manager`, in file order.
fn manager_replicas(services: &Value) -> Vec<String> {
    services
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, service)| service["command"][0] == wfm_manager::cli::COMMAND)
        .map(|(name, _)| name.as_str().unwrap().to_string())
        .collect()
}

/// A compose service's variable, which must be set.
fn compose_env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn the_compose_file_matches_the_binaries() {
    let compose = compose_file();
    let services = &compose["services"];
    let replicas = manager_replicas(services);
    assert_eq!(
        replicas,
        ["wfm-manager-1", "wfm-manager-2", "wfm-manager-3"],
        "three manager replicas"
    );
    let image = services[&replicas[0]]["image"].as_str().unwrap();
    // (service, settings, subcommand, listen variable, healthcheck's listen variable and path)
    let roles = replicas
        .iter()
        .map(|name| {
            (
                name.as_str(),
                manager(),
                wfm_manager::cli::COMMAND,
                "WFM_MANAGER_LISTEN",
                ("WFM_MANAGER_METRICS_LISTEN", wfm_gateway::METRICS_PATH),
            )
        })
        .chain([(
            "wfm-gateway",
            gateway(),
            wfm_gateway::cli::COMMAND,
            "WFM_GATEWAY_LISTEN",
            ("WFM_GATEWAY_LISTEN", wfm_gateway::HEALTHZ_PATH),
        )]);
    for (name, command, role, listen, (probe_listen, probe)) in roles {
        let service = &services[name];
        // The one image, built from the Dockerfile, run with the role as its command.
        assert_eq!(service["image"], image, "{name}");
        assert_eq!(
            service["build"]["dockerfile"], "deploy/docker/Dockerfile",
            "{name}"
        );
        assert!(service["build"]["target"].is_null(), "{name}: one image");
        assert_eq!(service["command"][0], role, "{name}");
        assert_eq!(service["command"].as_sequence().unwrap().len(), 1);
        let known = envs(command.clone());
        let environment = service["environment"].as_mapping().unwrap();
        for key in environment.keys() {
            let key = key.as_str().unwrap();
            assert!(
                known.contains(key),
                "{name}: {key} is no setting of wfm {role}"
            );
        }
        // The published port is the one the service listens on.
        let port = port_of(environment[listen].as_str().unwrap());
        let ports: Vec<&str> = service["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "{name} listens on {port} but publishes {ports:?}"
        );
        // The healthcheck hits a real path on the port that serves it.
        let probe_port = port_of(environment[probe_listen].as_str().unwrap());
        let test: Vec<&str> = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(
            test.last().copied(),
            Some(format!("http://127.0.0.1:{probe_port}{probe}").as_str()),
            "{name}"
        );
        // Plaintext off loopback is refused at start unless the compose file says it is a
        // demo network.
        let address: SocketAddr = environment[listen].as_str().unwrap().parse().unwrap();
        if !address.ip().is_loopback() && environment.get("WFM_TLS_CERT").is_none() {
            assert_eq!(
                environment
                    .get("WFM_INSECURE_PLAINTEXT")
                    .and_then(Value::as_str),
                Some("true"),
                "{name} serves plaintext on {address}"
            );
        }
        // The key file is on the key volume, mounted read-only, once the key service made it.
        let key_file = environment["WFM_SIGNING_KEY_FILE"].as_str().unwrap();
        assert_key_mount(&compose, name, service, key_file);
    }
    // The manager's default ports are the ones the image and compose use.
    assert_eq!(default_port(manager(), "listen"), 50051);
    assert_eq!(default_port(manager(), "metrics_listen"), 9464);
    assert_eq!(default_port(gateway(), "listen"), 8080);
    // The simulator reaches a manager on its listen port, through the alias every replica
    // answers to: any replica serves any call.
    let manager_port = port_of(compose_env(&services[&replicas[0]], "WFM_MANAGER_LISTEN"));
    for replica in &replicas {
        let aliases = services[replica]["networks"]["default"]["aliases"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{replica} has no network aliases"));
        assert!(aliases.iter().any(|a| a == "wfm-manager"), "{replica}");
    }
    let url = compose_env(&services["simulator"], "WFM_MANAGER_URL");
    assert_eq!(
        url,
        format!("http://wfm-manager:{manager_port}"),
        "simulator"
    );
    // The simulator is the same image, playing the scenario library the image ships.
    assert_eq!(services["simulator"]["image"], image);
    let simulator = services["simulator"]["command"][0].as_str().unwrap();
    assert!(
        simulator.contains("wfm sim run ") && simulator.contains("/usr/share/wfm/scenarios/"),
        "{simulator}"
    );
    assert!(read("deploy/docker/Dockerfile").contains("COPY scenarios /usr/share/wfm/scenarios"));

    // Prometheus scrapes every service where it serves /metrics: each manager replica,
    // since each counts only what it owns, and the gateway.
    let prometheus: Value =
        serde_yaml_ng::from_str(&read("deploy/compose/prometheus.yml")).unwrap();
    let jobs = prometheus["scrape_configs"].as_sequence().unwrap();
    let manager_targets: Vec<String> = replicas
        .iter()
        .map(|replica| {
            let metrics = compose_env(&services[replica], "WFM_MANAGER_METRICS_LISTEN");
            format!("{replica}:{}", port_of(metrics))
        })
        .collect();
    let gateway_port = port_of(compose_env(
        &services["wfm-gateway"],
        "WFM_GATEWAY_METRICS_LISTEN",
    ));
    for (job, targets) in [
        ("wfm-manager", manager_targets),
        ("wfm-gateway", vec![format!("wfm-gateway:{gateway_port}")]),
    ] {
        let job = jobs
            .iter()
            .find(|j| j["job_name"] == job)
            .unwrap_or_else(|| panic!("no job {job}"));
        assert_eq!(job["metrics_path"], wfm_gateway::METRICS_PATH);
        let scraped: Vec<&str> = job["static_configs"][0]["targets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(scraped, targets);
    }
    // The collector listens where the services export.
    let collector: Value =
        serde_yaml_ng::from_str(&read("deploy/compose/otel-collector.yaml")).unwrap();
    let grpc = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    for name in replicas.iter().map(String::as_str).chain(["wfm-gateway"]) {
        let endpoint = compose_env(&services[name], "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert_eq!(
            endpoint,
            format!("http://otel-collector:{}", port_of(grpc)),
            "{name}"
        );
    }
}

/// `(major, minor)` of an image tag or version such as `2.11-alpine` or `v2.14.2`.
fn version_of(tag: &str) -> (u32, u32) {
    let mut parts = tag
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("no version in {tag:?}"),
    }
}

/// Per-key TTLs and limit markers, which the manager's buckets use, arrived in 2.11.
const NATS_MINIMUM: (u32, u32) = (2, 11);

/// The value after `flag` in a command line.
fn argument<'a>(command: &'a [&'a str], flag: &str) -> Option<&'a str> {
    command
        .iter()
        .position(|a| *a == flag)
        .map(|i| command[i + 1])
}

#[test]
fn the_compose_cluster_is_three_manager_replicas_on_one_jetstream_node() {
    let compose = compose_file();
    let services = &compose["services"];
    let replicas = manager_replicas(services);
    assert_eq!(replicas.len(), 3);

    // NATS: the official image, recent enough, JetStream on, its store on a volume.
    let nats = &services["nats"];
    let image = nats["image"].as_str().unwrap();
    let (repository, tag) = image.split_once(':').unwrap();
    assert_eq!(repository, "nats", "the official image");
    assert!(version_of(tag) >= NATS_MINIMUM, "{image}");
    let command: Vec<&str> = nats["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(command.contains(&"-js"), "{command:?}");
    let store = argument(&command, "-sd").expect("a JetStream store directory");
    let volumes: Vec<&str> = nats["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let volume = volumes
        .iter()
        .find_map(|v| v.strip_suffix(&format!(":{store}")))
        .unwrap_or_else(|| panic!("the store {store} is on no volume: {volumes:?}"));
    assert!(
        compose["volumes"].get(volume).is_some(),
        "{volume} is not a named volume"
    );
    let client_port: u16 = argument(&command, "-p").map_or(4222, |p| p.parse().unwrap());
    // The healthcheck asks the monitoring port for JetStream's health.
    let monitor = argument(&command, "-m").expect("a monitoring port");
    let probe = nats["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        probe.starts_with(&format!("http://127.0.0.1:{monitor}/healthz")),
        "{probe}"
    );
    let nats_url = format!("nats://nats:{client_port}");

    let mut advertised = Vec::new();
    let mut published = BTreeSet::new();
    for replica in &replicas {
        let service = &services[replica];
        let env = |name| compose_env(service, name);
        assert_eq!(env("WFM_NATS_URL"), nats_url, "{replica}");
        // The node id names the replica, so it is unique and stable across restarts.
        assert_eq!(env("WFM_NODE_ID"), replica.as_str());
        // Other replicas and the gateway reach it by its service name, on its gRPC port.
        let port = port_of(env("WFM_MANAGER_LISTEN"));
        let advertise = env("WFM_ADVERTISE_URL");
        assert_eq!(advertise, format!("http://{replica}:{port}"));
        advertised.push(advertise.to_string());
        // One compose NATS node cannot hold more copies of a bucket than one.
        assert_eq!(env("WFM_NATS_REPLICAS"), "1", "{replica}");
        assert!(service["depends_on"].get("nats").is_some(), "{replica}");
        // One key for every replica: the same volume.
        assert_eq!(
            service["volumes"], services[&replicas[0]]["volumes"],
            "{replica}"
        );
        for port in service["ports"].as_sequence().unwrap() {
            let host = port.as_str().unwrap().split(':').next().unwrap();
            assert!(
                published.insert(host.to_string()),
                "{replica}: {host} twice"
            );
        }
    }

    // The gateway finds owners through the same NATS and starts from every replica.
    let gateway = &services["wfm-gateway"];
    assert_eq!(compose_env(gateway, "WFM_NATS_URL"), nats_url);
    let manager_urls: Vec<&str> = compose_env(gateway, "WFM_MANAGER_URL").split(',').collect();
    assert_eq!(manager_urls, advertised);
    assert_eq!(gateway["volumes"], services[&replicas[0]]["volumes"]);
    for replica in &replicas {
        assert!(gateway["depends_on"].get(replica).is_some(), "{replica}");
    }
}

/// `service` reads its signing key at `key_file` from the `signing-key` volume, mounted
/// read-only, and starts only once the `signing-key` service (which writes the key there,
/// as the uid the image runs as) has completed.
fn assert_key_mount(doc: &Value, name: &str, service: &Value, key_file: &str) {
    let mounts: Vec<&str> = service["volumes"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{name} mounts no volume"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mount = mounts
        .iter()
        .find_map(|m| m.strip_prefix("signing-key:"))
        .unwrap_or_else(|| panic!("{name} does not mount the signing-key volume"));
    let (dir, mode) = mount.rsplit_once(':').unwrap_or((mount, ""));
    assert_eq!(mode, "ro", "{name}: the key is mounted read-only");
    assert_eq!(key_file, format!("{dir}/signing-key"), "{name}");
    assert_eq!(
        service["depends_on"]["signing-key"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "{name}"
    );
    let keygen = &doc["services"]["signing-key"];
    let script = keygen["command"][2].as_str().unwrap_or_default();
    assert!(
        script.contains("/keys/signing-key")
            && script.contains("/dev/urandom")
            && script.contains("chown 10001:10001"),
        "{script}"
    );
    assert!(doc["volumes"].get("signing-key").is_some());
}

// ---------------------------------------------------------------------------------------
// deploy/k8s

/// The image name every manifest runs, without registry or tag.
const IMAGE: &str = "wfm";

fn documents(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(&read(path))
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn the_kubernetes_manifests_match_the_binaries() {
    let secret = documents("deploy/k8s/secret.yaml");
    let secret_name = secret[0]["metadata"]["name"].as_str().unwrap();
    let secret_key = secret[0]["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    // The manager is a StatefulSet for its replicas' stable names; the gateway is stateless.
    for (file, kind, command, role, listen) in [
        (
            "deploy/k8s/manager.yaml",
            "StatefulSet",
            manager(),
            wfm_manager::cli::COMMAND,
            "WFM_MANAGER_LISTEN",
        ),
        (
            "deploy/k8s/gateway.yaml",
            "Deployment",
            gateway(),
            wfm_gateway::cli::COMMAND,
            "WFM_GATEWAY_LISTEN",
        ),
    ] {
        let name = format!("wfm-{role}");
        let docs = documents(file);
        let deployment = find(&docs, kind, &name);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        // The placeholder that kustomization.yaml pins to a registry and release (checked in
        // the_kustomization_applies_every_manifest_with_its_images_pinned).
        assert_eq!(container["image"], IMAGE, "{file}");
        let run: Vec<&str> = container["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(run, [BINARY, role], "{file}");
        let known = envs(command.clone());
        for env in container["env"].as_sequence().unwrap() {
            let key = env["name"].as_str().unwrap();
            assert!(
                known.contains(key),
                "{file}: {key} is no setting of wfm {role}"
            );
        }
        let port = port_of(env_value(container, listen));
        let ports: Vec<u64> = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
        assert!(ports.contains(&u64::from(port)), "{file}: {ports:?}");
        // Resources, the key from the Secret's file, and a disruption budget.
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
        let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
        assert_eq!(
            env_value(container, "WFM_SIGNING_KEY_FILE"),
            format!("{mount}/{secret_key}")
        );
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], secret_name);
        find(&docs, "PodDisruptionBudget", &name);
        // The Service forwards to the listen port.
        let service = find(&docs, "Service", &name);
        let targets: Vec<u64> = service["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p["targetPort"].as_u64().unwrap())
            .collect();
        assert!(targets.contains(&u64::from(port)), "{file}: {targets:?}");
        // Probes.
        let (readiness, liveness) = (&container["readinessProbe"], &container["livenessProbe"]);
        if name == "wfm-manager" {
            // The gRPC port requires client certificates, which the kubelet's gRPC probe
            // cannot present: the probes are the metrics listener's plaintext HTTP ones.
            let metrics = port_of(env_value(container, "WFM_MANAGER_METRICS_LISTEN"));
            assert_eq!(
                readiness["httpGet"]["path"],
                wfm_telemetry::http::READYZ_PATH
            );
            assert_eq!(
                liveness["httpGet"]["path"],
                wfm_telemetry::http::HEALTHZ_PATH
            );
            for probe in [readiness, liveness] {
                assert_eq!(probe["httpGet"]["port"].as_u64(), Some(u64::from(metrics)));
            }
            assert!(ports.contains(&u64::from(metrics)));
            assert!(targets.contains(&u64::from(metrics)));
        } else {
            assert_eq!(readiness["httpGet"]["path"], wfm_gateway::READYZ_PATH);
            assert_eq!(liveness["httpGet"]["path"], wfm_gateway::HEALTHZ_PATH);
            for probe in [readiness, liveness] {
                assert_eq!(probe["httpGet"]["port"].as_u64(), Some(u64::from(port)));
                // The gateway's port serves TLS only.
                assert_eq!(probe["httpGet"]["scheme"], "HTTPS");
            }
            let ingress = find(&docs, "Ingress", &name);
            let path = &ingress["spec"]["rules"][0]["http"]["paths"][0]["path"];
            assert_eq!(path, wfm_gateway::MEDIABAR_PATH);
            assert!(
                ingress["metadata"]["annotations"]
                    .as_mapping()
                    .unwrap()
                    .keys()
                    .any(|k| k.as_str().unwrap().contains("timeout"))
            );
            let manager_url = env_value(container, "WFM_MANAGER_URL");
            assert_eq!(
                manager_url,
                format!("https://wfm-manager:{}", default_port(manager(), "listen"))
            );
        }
    }
}

/// Whether every label `selector` matches carries the same value in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A container's variable by name, whatever its source (value or valueFrom).
fn env_entry<'a>(container: &'a Value, name: &str) -> (usize, &'a Value) {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, e)| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// A setting's value in a container: its own, else the code's default.
fn setting(container: &Value, command: clap::Command, env: &str) -> String {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == env)
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            settings(command)
                .into_iter()
                .find(|(_, _, e, _)| e == env)
                .map(|(.., default)| default)
                .unwrap_or_else(|| panic!("{env} is no setting"))
        })
}

#[test]
fn the_kubernetes_manager_is_three_replicas_on_a_jetstream_cluster() {
    let docs = documents("deploy/k8s/manager.yaml");
    let set = find(&docs, "StatefulSet", "wfm-manager");
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(replicas, 3);
    let selector = &set["spec"]["selector"]["matchLabels"];
    let template = &set["spec"]["template"];
    let labels = &template["metadata"]["labels"];
    assert!(selects(selector, labels), "the selector misses its pods");
    let pod = &template["spec"];
    let container = &pod["containers"][0];
    let port = port_of(env_value(container, "WFM_MANAGER_LISTEN"));

    // Peer addressing: the headless Service the StatefulSet names, over the same pods.
    let headless_name = set["spec"]["serviceName"].as_str().unwrap();
    let headless = find(&docs, "Service", headless_name);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(selects(&headless["spec"]["selector"], labels));
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let headless_ports: Vec<u64> = headless["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert!(
        headless_ports.contains(&u64::from(port)),
        "{headless_ports:?}"
    );
    // The client Service selects the same pods, and is another Service.
    let client = find(&docs, "Service", "wfm-manager");
    assert!(selects(&client["spec"]["selector"], labels));
    assert_ne!(client["spec"]["clusterIP"], "None");

    // The node id is the pod's name, and the advertise URL that name under the headless
    // Service, on the gRPC port. Kubernetes expands $(VAR) only from variables above it.
    let (node_at, node) = env_entry(container, "WFM_NODE_ID");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    let (advertise_at, advertise) = env_entry(container, "WFM_ADVERTISE_URL");
    assert!(node_at < advertise_at, "WFM_NODE_ID must come first");
    let advertise = advertise["value"].as_str().unwrap();
    assert_eq!(
        advertise,
        format!("https://$(WFM_NODE_ID).{headless_name}:{port}")
    );
    // Which, for every replica, is a pod of the StatefulSet.
    let set_name = set["metadata"]["name"].as_str().unwrap();
    for ordinal in 0..replicas {
        let url = advertise.replace("$(WFM_NODE_ID)", &format!("{set_name}-{ordinal}"));
        let host = url
            .strip_prefix("https://")
            .and_then(|u| u.split(':').next())
            .unwrap();
        assert_eq!(host, format!("{set_name}-{ordinal}.{headless_name}"));
    }

    // Evictions take one replica at a time, and the budget covers the manager's pods.
    let budget = find(&docs, "PodDisruptionBudget", "wfm-manager");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels));
    let one_at_a_time = budget["spec"]["maxUnavailable"].as_u64() == Some(1)
        || budget["spec"]["minAvailable"].as_u64() == Some(replicas - 1);
    assert!(one_at_a_time, "{:?}", budget["spec"]);
    // Replicas spread across nodes, by the manager's own labels.
    let terms =
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_sequence()
            .expect("a preferred pod anti-affinity");
    assert!(!terms.is_empty());
    for term in terms {
        let term = &term["podAffinityTerm"];
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        assert!(selects(&term["labelSelector"]["matchLabels"], labels));
    }
    // Kubernetes waits for the drain and the shutdown (and so the handover) before SIGKILL.
    let drain_ms: u64 = setting(container, manager(), "WFM_MANAGER_DRAIN_DELAY_MS")
        .parse()
        .unwrap();
    let grace_secs: u64 = setting(container, manager(), "WFM_MANAGER_SHUTDOWN_GRACE_SECS")
        .parse()
        .unwrap();
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination * 1000 > drain_ms + grace_secs * 1000,
        "terminationGracePeriodSeconds {termination} cuts a drain of {drain_ms} ms plus {grace_secs} s"
    );

    // NATS, as deploy/k8s/nats-values.yaml installs it with the documented release name.
    let values: Value = serde_yaml_ng::from_str(&read("deploy/k8s/nats-values.yaml")).unwrap();
    let install = "helm install nats nats/nats --version ";
    assert!(read("deploy/k8s/nats-values.yaml").contains(install));
    assert!(read("docs/operate.md").contains(install));
    let config = &values["config"];
    assert_eq!(config["jetstream"]["enabled"], true);
    assert_eq!(config["jetstream"]["fileStore"]["enabled"], true);
    assert_eq!(config["jetstream"]["fileStore"]["pvc"]["enabled"], true);
    assert_eq!(config["jetstream"]["memoryStore"]["enabled"], false);
    assert_eq!(config["cluster"]["enabled"], true);
    let nats_nodes = config["cluster"]["replicas"].as_u64().unwrap();
    assert_eq!(nats_nodes, 3);
    let tag = values["container"]["image"]["tag"].as_str().unwrap();
    assert!(version_of(tag) >= NATS_MINIMUM, "{tag}");
    let nats_port = config["nats"]["port"].as_u64().unwrap();
    // Every NATS pod, by its name under the chart's headless Service.
    let nats_urls = (0..nats_nodes)
        .map(|i| format!("nats://nats-{i}.nats-headless:{nats_port}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(env_value(container, "WFM_NATS_URL"), nats_urls);
    // Each bucket on every NATS node, so that it survives the loss of one.
    let bucket_replicas: u64 = env_value(container, "WFM_NATS_REPLICAS").parse().unwrap();
    assert_eq!(bucket_replicas, nats_nodes);

    // The gateway finds owners through the same NATS.
    let gateway_docs = documents("deploy/k8s/gateway.yaml");
    let gateway = &find(&gateway_docs, "Deployment", "wfm-gateway")["spec"]["template"]["spec"]["containers"]
        [0];
    assert_eq!(env_value(gateway, "WFM_NATS_URL"), nats_urls);
}

/// The variables naming TLS files: each must point into a mounted Secret volume.
const TLS_FILE_ENVS: [&str; 8] = [
    "WFM_TLS_CERT",
    "WFM_TLS_KEY",
    "WFM_CLIENT_CA",
    "WFM_MANAGER_CA",
    "WFM_MANAGER_CERT",
    "WFM_MANAGER_KEY",
    "WFM_NATS_CA",
    "WFM_NATS_CREDS",
];

/// Every TLS variable of `container` in `pod` names a file in a read-only Secret volume
/// mounted as a directory (no `subPath`, so that renewals reach the pod); returns the
/// variables set, with the Secret each points into.
fn tls_files(file: &str, pod: &Value, container: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for env in container["env"].as_sequence().unwrap() {
        let name = env["name"].as_str().unwrap();
        if !TLS_FILE_ENVS.contains(&name) {
            continue;
        }
        let path = env["value"].as_str().unwrap();
        let (dir, _) = path.rsplit_once('/').unwrap();
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("{file}: {name}={path} is in no mounted volume"));
        assert_eq!(mount["readOnly"], true, "{file}: {name}'s volume");
        assert!(
            mount["subPath"].is_null(),
            "{file}: {name}'s volume uses subPath"
        );
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let secret = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: {name}'s volume is no Secret"));
        found.push((name.to_string(), secret.to_string()));
    }
    found
}

#[test]
fn the_kubernetes_services_serve_tls_from_mounted_secrets() {
    let certificates = documents("deploy/k8s/cert-manager/certificates.yaml");
    let certificate = |secret: &str| {
        certificates
            .iter()
            .find(|d| d["kind"] == "Certificate" && d["spec"]["secretName"] == secret)
            .unwrap_or_else(|| panic!("no cert-manager Certificate issues the Secret {secret}"))
    };
    let uris = |cert: &Value| -> Vec<String> {
        strings(&cert["spec"]["uris"])
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    for (file, kind, name, required) in [
        (
            "deploy/k8s/manager.yaml",
            "StatefulSet",
            "wfm-manager",
            &["WFM_TLS_CERT", "WFM_TLS_KEY", "WFM_CLIENT_CA"][..],
        ),
        (
            "deploy/k8s/gateway.yaml",
            "Deployment",
            "wfm-gateway",
            &[
                "WFM_TLS_CERT",
                "WFM_TLS_KEY",
                "WFM_MANAGER_CA",
                "WFM_MANAGER_CERT",
                "WFM_MANAGER_KEY",
            ][..],
        ),
    ] {
        let docs = documents(file);
        let pod = &find(&docs, kind, name)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let files = tls_files(file, pod, container);
        for env in required {
            assert!(
                files.iter().any(|(e, _)| e == env),
                "{file}: {env} is not set"
            );
        }
        // Each Secret is one that cert-manager/certificates.yaml issues.
        for (_, secret) in &files {
            certificate(secret);
        }
        assert!(
            container["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .all(|e| e["name"] != "WFM_INSECURE_PLAINTEXT"),
            "{file}: plaintext is allowed"
        );
    }

    // The roles parse, and name the identities the certificates carry.
    let docs = documents("deploy/k8s/manager.yaml");
    let manager =
        &find(&docs, "StatefulSet", "wfm-manager")["spec"]["template"]["spec"]["containers"][0];
    let rules: Vec<String> = env_value(manager, "WFM_ROLES")
        .split(',')
        .map(str::to_string)
        .collect();
    let roles = wfm_tls::RoleMap::parse(&rules).unwrap();
    let role_of = |uri: &str| roles.identity(vec![uri.to_string()]).role();
    let manager_cert = certificate("wfm-manager-tls");
    for uri in uris(manager_cert) {
        assert_eq!(role_of(&uri), Some(wfm_tls::Role::Peer), "{uri}");
    }
    for uri in uris(certificate("wfm-gateway-manager-client")) {
        assert_eq!(role_of(&uri), Some(wfm_tls::Role::Gateway), "{uri}");
    }
    // The manager's certificate names the hosts it is reached at: the client Service (the
    // gateway's WFM_MANAGER_URL) and each pod under the headless Service (its advertise URL).
    let names = strings(&manager_cert["spec"]["dnsNames"]);
    assert!(names.contains(&"wfm-manager"), "{names:?}");
    assert!(names.contains(&"*.wfm-manager-headless"), "{names:?}");
    let usages = strings(&manager_cert["spec"]["usages"]);
    assert!(usages.contains(&"server auth") && usages.contains(&"client auth"));
    // The ingress re-encrypts to the gateway's TLS port.
    let gateway_docs = documents("deploy/k8s/gateway.yaml");
    let ingress = find(&gateway_docs, "Ingress", "wfm-gateway");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"],
        "HTTPS"
    );
}

/// The cluster settings the compose file and the manifests set, by the names they use.
#[test]
fn the_cluster_settings_exist_as_the_deployments_name_them() {
    for (command, role, flag, env) in [
        (manager(), "manager", "--nats-url", "WFM_NATS_URL"),
        (manager(), "manager", "--node-id", "WFM_NODE_ID"),
        (manager(), "manager", "--advertise-url", "WFM_ADVERTISE_URL"),
        (manager(), "manager", "--lease-ttl-ms", "WFM_LEASE_TTL_MS"),
        (manager(), "manager", "--nats-replicas", "WFM_NATS_REPLICAS"),
        (gateway(), "gateway", "--nats-url", "WFM_NATS_URL"),
        (gateway(), "gateway", "--manager-url", "WFM_MANAGER_URL"),
        (manager(), "manager", "--tls-cert", "WFM_TLS_CERT"),
        (manager(), "manager", "--tls-key", "WFM_TLS_KEY"),
        (manager(), "manager", "--client-ca", "WFM_CLIENT_CA"),
        (manager(), "manager", "--role", "WFM_ROLES"),
        (
            manager(),
            "manager",
            "--insecure-plaintext",
            "WFM_INSECURE_PLAINTEXT",
        ),
        (manager(), "manager", "--nats-creds", "WFM_NATS_CREDS"),
        (manager(), "manager", "--nats-ca", "WFM_NATS_CA"),
        (gateway(), "gateway", "--tls-cert", "WFM_TLS_CERT"),
        (gateway(), "gateway", "--tls-key", "WFM_TLS_KEY"),
        (gateway(), "gateway", "--manager-ca", "WFM_MANAGER_CA"),
        (gateway(), "gateway", "--manager-cert", "WFM_MANAGER_CERT"),
        (gateway(), "gateway", "--manager-key", "WFM_MANAGER_KEY"),
        (
            gateway(),
            "gateway",
            "--insecure-plaintext",
            "WFM_INSECURE_PLAINTEXT",
        ),
        (gateway(), "gateway", "--nats-creds", "WFM_NATS_CREDS"),
        (gateway(), "gateway", "--nats-ca", "WFM_NATS_CA"),
    ] {
        let found = settings(command)
            .into_iter()
            .any(|(_, f, e, _)| f == flag && e == env);
        assert!(found, "wfm {role} has no setting {flag} / {env}");
    }
}

// ---------------------------------------------------------------------------------------
// deploy/k8s: hardening (Pod Security, NetworkPolicy, Ingress TLS, kustomization)

const K8S: &str = "deploy/k8s";

/// Helm values files are input to a chart, not resources: neither applied nor validated as
/// manifests.
fn is_values_file(name: &str) -> bool {
    let stem = name.trim_end_matches(".yaml").trim_end_matches(".yml");
    stem.ends_with("-values") || stem == "values"
}

/// The manifests in deploy/k8s: every YAML file but the values files and the kustomization
/// itself, by file name (.ci/run validates the same selection against the API schemas).
fn manifest_files() -> BTreeSet<String> {
    std::fs::read_dir(root().join(K8S))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| !is_values_file(n) && !n.starts_with("kustomization."))
        .collect()
}

/// Every document of every manifest, with the file it came from.
fn manifest_documents() -> Vec<(String, Value)> {
    manifest_files()
        .into_iter()
        .flat_map(|file| {
            documents(&format!("{K8S}/{file}"))
                .into_iter()
                .map(move |d| (file.clone(), d))
        })
        .collect()
}

/// The pod spec a workload runs, whatever its kind; None for what runs no pod.
fn pod_spec(doc: &Value) -> Option<&Value> {
    let spec = match doc["kind"].as_str()? {
        "Pod" => &doc["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &doc["spec"]["template"]["spec"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => return None,
    };
    Some(spec)
}

/// Every container of a pod: init and ephemeral ones too, since the standard covers them.
fn all_containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod[*k].as_sequence())
        .flatten()
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The volume types the restricted level allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The SELinux types the baseline level allows (unset is allowed too).
const BASELINE_SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// What the Pod Security Standards' "restricted" level (which includes "baseline") refuses
/// in a pod spec, one line each; empty when the pod is admitted. Written from the
/// standard's rules, field by field, so that it needs no cluster. Stricter in one place:
/// sysctls are refused altogether rather than checked against the safe set, since no pod
/// here sets one.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let pod_context = &pod["securityContext"];
    // Baseline: no host namespaces, host ports, host paths, privilege or extra kernel access.
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host].as_bool() == Some(true) {
            found.push(format!("{host}: true"));
        }
    }
    if !pod_context["sysctls"].is_null() {
        found.push("pod sysctls".to_string());
    }
    if pod_context["windowsOptions"]["hostProcess"].as_bool() == Some(true) {
        found.push("pod windowsOptions.hostProcess".to_string());
    }
    for volume in pod["volumes"].as_sequence().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        let types: Vec<&str> = volume
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| *k != "name")
            .collect();
        for kind in types {
            if !RESTRICTED_VOLUMES.contains(&kind) {
                found.push(format!("volume {name}: type {kind}"));
            }
        }
    }
    // Settings that may be made for the pod or per container: a container's own wins.
    let seccomp_ok = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault" | "Localhost"));
    let pod_seccomp = &pod_context["seccompProfile"]["type"];
    if !pod_seccomp.is_null() && !seccomp_ok(pod_seccomp) {
        found.push(format!("pod seccompProfile {pod_seccomp:?}"));
    }
    if pod_context["runAsNonRoot"].as_bool() == Some(false) {
        found.push("pod runAsNonRoot: false".to_string());
    }
    if pod_context["runAsUser"].as_u64() == Some(0) {
        found.push("pod runAsUser: 0".to_string());
    }
    let selinux_ok = |options: &Value| {
        let kind = options["type"].as_str();
        options["user"].is_null()
            && options["role"].is_null()
            && kind.is_none_or(|t| t.is_empty() || BASELINE_SELINUX_TYPES.contains(&t))
    };
    if !selinux_ok(&pod_context["seLinuxOptions"]) {
        found.push("pod seLinuxOptions".to_string());
    }
    if pod_context["appArmorProfile"]["type"] == "Unconfined" {
        found.push("pod appArmorProfile Unconfined".to_string());
    }
    let containers = all_containers(pod);
    if containers.is_empty() {
        found.push("no container".to_string());
    }
    for container in containers {
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        let mut refuse = |what: &str| found.push(format!("container {name}: {what}"));
        if context["privileged"].as_bool() == Some(true) {
            refuse("privileged");
        }
        if context["procMount"]
            .as_str()
            .is_some_and(|m| m != "Default")
        {
            refuse("procMount");
        }
        if context["windowsOptions"]["hostProcess"].as_bool() == Some(true) {
            refuse("windowsOptions.hostProcess");
        }
        if !selinux_ok(&context["seLinuxOptions"]) {
            refuse("seLinuxOptions");
        }
        if context["appArmorProfile"]["type"] == "Unconfined" {
            refuse("appArmorProfile Unconfined");
        }
        for port in container["ports"].as_sequence().into_iter().flatten() {
            if port["hostPort"].as_u64().is_some_and(|p| p != 0) {
                refuse("hostPort");
            }
        }
        // Restricted: explicitly no privilege escalation.
        if context["allowPrivilegeEscalation"].as_bool() != Some(false) {
            refuse("allowPrivilegeEscalation is not false");
        }
        // Non-root, from the container or else the pod.
        let non_root = context["runAsNonRoot"]
            .as_bool()
            .or(pod_context["runAsNonRoot"].as_bool());
        if non_root != Some(true) {
            refuse("runAsNonRoot is not true");
        }
        if context["runAsUser"].as_u64() == Some(0) {
            refuse("runAsUser: 0");
        }
        // A seccomp profile of the runtime or the node, from the container or else the pod.
        let seccomp = if context["seccompProfile"]["type"].is_null() {
            pod_seccomp
        } else {
            &context["seccompProfile"]["type"]
        };
        if !seccomp_ok(seccomp) {
            refuse("seccompProfile is neither RuntimeDefault nor Localhost");
        }
        // Every capability dropped; only binding low ports may come back.
        let capabilities = &context["capabilities"];
        if !strings(&capabilities["drop"]).contains(&"ALL") {
            refuse("capabilities do not drop ALL");
        }
        for added in strings(&capabilities["add"]) {
            if added != "NET_BIND_SERVICE" {
                refuse(&format!("adds capability {added}"));
            }
        }
    }
    found
}

/// A pod that the restricted level admits, for the check's own test.
const RESTRICTED_POD: &str = r#"
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  seccompProfile: {type: RuntimeDefault}
containers:
  - name: app
    ports: [{containerPort: 8080}]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
volumes:
  - {name: key, secret: {secretName: key}}
  - {name: tmp, emptyDir: {}}
"#;

/// The check refuses each thing the standard refuses: without this, a check that admitted
/// everything would pass on the manifests too.
#[test]
fn the_restricted_check_refuses_what_the_standard_refuses() {
    let admitted: Value = serde_yaml_ng::from_str(RESTRICTED_POD).unwrap();
    assert_eq!(restricted_violations(&admitted), Vec::<String>::new());
    let cases: [(&[&str], &str, &str); 20] = [
        (&["hostNetwork"], "true", "hostNetwork"),
        (&["hostPID"], "true", "hostPID"),
        (&["hostIPC"], "true", "hostIPC"),
        (
            &["volumes"],
            "[{name: root, hostPath: {path: /}}]",
            "type hostPath",
        ),
        (
            &["volumes"],
            "[{name: n, nfs: {server: s, path: /}}]",
            "type nfs",
        ),
        (
            &["securityContext", "sysctls"],
            "[{name: a, value: b}]",
            "sysctls",
        ),
        (
            &["securityContext", "runAsNonRoot"],
            "false",
            "runAsNonRoot",
        ),
        (&["securityContext", "runAsUser"], "0", "runAsUser: 0"),
        (
            &["securityContext", "seccompProfile"],
            "{type: Unconfined}",
            "seccompProfile",
        ),
        (
            &["securityContext", "seccompProfile"],
            "null",
            "seccompProfile",
        ),
        (
            &["securityContext", "seLinuxOptions"],
            "{type: spc_t}",
            "seLinuxOptions",
        ),
        (
            &["containers", "0", "securityContext", "privileged"],
            "true",
            "privileged",
        ),
        (
            &[
                "containers",
                "0",
                "securityContext",
                "allowPrivilegeEscalation",
            ],
            "null",
            "allowPrivilegeEscalation",
        ),
        (
            &["containers", "0", "securityContext", "capabilities", "drop"],
            "[NET_RAW]",
            "drop ALL",
        ),
        (
            &["containers", "0", "securityContext", "capabilities", "add"],
            "[SYS_ADMIN]",
            "SYS_ADMIN",
        ),
        (
            &["containers", "0", "securityContext", "seccompProfile"],
            "{type: Unconfined}",
            "seccompProfile",
        ),
        (
            &["containers", "0", "securityContext", "runAsNonRoot"],
            "false",
            "runAsNonRoot",
        ),
        (
            &["containers", "0", "securityContext", "procMount"],
            "Unmasked",
            "procMount",
        ),
        (
            &["containers", "0", "ports", "0", "hostPort"],
            "80",
            "hostPort",
        ),
        // An init container is held to the same rules.
        (
            &["initContainers"],
            "[{name: init, securityContext: {capabilities: {drop: [ALL]}}}]",
            "container init: allowPrivilegeEscalation",
        ),
    ];
    for (path, value, expected) in cases {
        let mut pod = admitted.clone();
        // A sequence index is written as a number in the path.
        let mut at = &mut pod;
        for key in path {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        *at = serde_yaml_ng::from_str(value).unwrap();
        let found = restricted_violations(&pod);
        assert!(
            found.iter().any(|f| f.contains(expected)),
            "{path:?} = {value}: expected a violation naming {expected:?}, found {found:?}"
        );
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    let mut checked = BTreeSet::new();
    for (file, doc) in manifest_documents() {
        let Some(pod) = pod_spec(&doc) else { continue };
        let name = format!("{file}: {}", doc["metadata"]["name"].as_str().unwrap());
        assert_eq!(restricted_violations(pod), Vec::<String>::new(), "{name}");
        // Beyond the standard, as the security review asks: a numeric non-root user (the
        // kubelet cannot check a name against runAsNonRoot), a read-only root (the binary
        // writes no file), and no API token, which neither service uses.
        let context = &pod["securityContext"];
        assert!(
            context["runAsUser"].as_u64().is_some_and(|u| u > 0),
            "{name}: runAsUser"
        );
        assert!(
            context["runAsGroup"].as_u64().is_some_and(|g| g > 0),
            "{name}: runAsGroup"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for container in all_containers(pod) {
            assert_eq!(
                container["securityContext"]["readOnlyRootFilesystem"], true,
                "{name}"
            );
        }
        checked.insert(doc["metadata"]["name"].as_str().unwrap().to_string());
    }
    // The check saw the workloads it is for (a renamed kind would hide them).
    for workload in ["wfm-manager", "wfm-gateway"] {
        assert!(checked.contains(workload), "{workload} was not checked");
    }
    // The image runs as the uid the manifests name, so runAsNonRoot holds in the image too.
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(dockerfile.contains("USER 10001:10001\n"));
}

/// Who a NetworkPolicy rule may admit: the labels that identify its pods (and, in another
/// namespace, the labels of that namespace), and the labels those pods carry.
struct Caller {
    name: &'static str,
    namespace: Option<Value>,
    identity: Value,
    labels: Value,
}

fn labels(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).unwrap()
}

impl Caller {
    /// Pods this repository does not define, known by the labels they are documented with.
    fn external(name: &'static str, namespace: Option<&str>, pods: &str) -> Self {
        Caller {
            name,
            namespace: namespace.map(labels),
            identity: labels(pods),
            labels: labels(pods),
        }
    }

    /// One of our workloads: identified by its selector, carrying its template's labels.
    fn workload(name: &'static str, file: &str, kind: &str) -> Self {
        let docs = documents(file);
        let workload = find(&docs, kind, name);
        Caller {
            name,
            namespace: None,
            identity: workload["spec"]["selector"]["matchLabels"].clone(),
            labels: workload["spec"]["template"]["metadata"]["labels"].clone(),
        }
    }

    /// Whether `peer` admits this caller's pods and no one else's: it asks for at least the
    /// identifying labels, and the pods carry all that it asks for.
    fn is(&self, peer: &Value) -> bool {
        let namespace = match (&self.namespace, &peer["namespaceSelector"]) {
            (None, selector) => selector.is_null(),
            (Some(expected), selector) => selector["matchLabels"] == *expected,
        };
        let pods = &peer["podSelector"]["matchLabels"];
        namespace && selects(&self.identity, pods) && selects(pods, &self.labels)
    }
}

/// The NetworkPolicies that select pods carrying `labels`.
fn policies_for<'a>(docs: &'a [(String, Value)], labels: &Value) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "NetworkPolicy")
        .filter(|d| selects(&d["spec"]["podSelector"]["matchLabels"], labels))
        .collect()
}

/// Per port, the peers the policies admit to it. Refuses what this check cannot read or
/// what opens a door to anyone: a rule for every port or every source, an IP block, label
/// expressions, a protocol other than TCP. `port` turns a rule's port (name or number) into
/// the number, and refuses one the pod does not expose.
fn admitted<'a>(
    policies: &[&'a Value],
    port: impl Fn(&Value) -> u16,
) -> std::collections::BTreeMap<u16, Vec<&'a Value>> {
    let mut by_port = std::collections::BTreeMap::<u16, Vec<&Value>>::new();
    assert!(!policies.is_empty(), "no NetworkPolicy selects these pods");
    for policy in policies {
        let name = policy["metadata"]["name"].as_str().unwrap();
        assert!(
            strings(&policy["spec"]["policyTypes"]).contains(&"Ingress"),
            "{name}: not an ingress policy"
        );
        assert!(
            policy["spec"]["podSelector"]["matchExpressions"].is_null(),
            "{name}"
        );
        for rule in policy["spec"]["ingress"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let peers = rule["from"].as_sequence().map(Vec::as_slice).unwrap_or(&[]);
            let ports = rule["ports"]
                .as_sequence()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!peers.is_empty(), "{name}: a rule admits every source");
            assert!(!ports.is_empty(), "{name}: a rule admits every port");
            for peer in peers {
                assert!(peer["ipBlock"].is_null(), "{name}: an ipBlock");
                for selector in ["podSelector", "namespaceSelector"] {
                    assert!(
                        peer[selector]["matchExpressions"].is_null(),
                        "{name}: {selector} expressions"
                    );
                }
                // A peer without pod labels would admit every pod (of its namespaces).
                assert!(
                    peer["podSelector"]["matchLabels"]
                        .as_mapping()
                        .is_some_and(|m| !m.is_empty()),
                    "{name}: a peer without pod labels: {peer:?}"
                );
            }
            for p in ports {
                assert!(p["endPort"].is_null(), "{name}: a port range");
                assert!(
                    p["protocol"].is_null() || p["protocol"] == "TCP",
                    "{name}: {p:?}"
                );
                by_port
                    .entry(port(&p["port"]))
                    .or_default()
                    .extend(peers.iter());
            }
        }
    }
    by_port
}

/// Checks that the peers admitted to each port are exactly the callers listed for it, and
/// that no other port is open.
fn assert_admits(
    what: &str,
    by_port: &std::collections::BTreeMap<u16, Vec<&Value>>,
    expected: &[(u16, Vec<&Caller>)],
) {
    let open: BTreeSet<u16> = by_port.keys().copied().collect();
    let wanted: BTreeSet<u16> = expected.iter().map(|(p, _)| *p).collect();
    assert_eq!(open, wanted, "{what}: the open ports");
    for (port, callers) in expected {
        let peers = &by_port[port];
        for caller in callers {
            assert!(
                peers.iter().any(|peer| caller.is(peer)),
                "{what}: {} cannot reach port {port}",
                caller.name
            );
        }
        for peer in peers {
            assert!(
                callers.iter().any(|caller| caller.is(peer)),
                "{what}: port {port} admits {peer:?}, which is none of {:?}",
                callers.iter().map(|c| c.name).collect::<Vec<_>>()
            );
        }
    }
}

/// A pod's container port by number, from the number or the name a policy gives.
fn container_port(container: &Value, port: &Value) -> u16 {
    let ports = container["ports"].as_sequence().unwrap();
    let found = ports.iter().find(|p| match port.as_str() {
        Some(name) => p["name"] == name,
        None => p["containerPort"] == *port,
    });
    let found = found.unwrap_or_else(|| {
        panic!(
            "{}: a policy names port {port:?}, which the container does not expose",
            container["name"].as_str().unwrap()
        )
    });
    u16::try_from(found["containerPort"].as_u64().unwrap()).unwrap()
}

/// The labels the policies expect on pods and namespaces this repository does not define;
/// docs/operate.md must tell an operator to set them.
const INTERACTION_PROCESSOR: &str = "{wfm.io/role: interaction-processor}";
const PROMETHEUS_NAMESPACE: &str = "{wfm.io/prometheus: \"true\"}";
const PROMETHEUS_PODS: &str = "{app.kubernetes.io/name: prometheus}";
const INGRESS_NAMESPACE: &str = "{kubernetes.io/metadata.name: ingress-nginx}";
const INGRESS_PODS: &str = "{app.kubernetes.io/name: ingress-nginx}";
/// The NATS chart's selector labels for release `nats`, and its nats-box pod's.
const NATS_PODS: &str = "{app.kubernetes.io/name: nats, app.kubernetes.io/instance: nats, app.kubernetes.io/component: nats}";
const NATS_BOX_PODS: &str = "{app.kubernetes.io/name: nats, app.kubernetes.io/instance: nats, app.kubernetes.io/component: nats-box}";

#[test]
fn the_network_policies_admit_only_the_documented_callers() {
    let docs = manifest_documents();
    let manager = Caller::workload("wfm-manager", "deploy/k8s/manager.yaml", "StatefulSet");
    let gateway = Caller::workload("wfm-gateway", "deploy/k8s/gateway.yaml", "Deployment");
    let processor = Caller::external("interaction processors", None, INTERACTION_PROCESSOR);
    let prometheus = Caller::external("prometheus", Some(PROMETHEUS_NAMESPACE), PROMETHEUS_PODS);
    let ingress = Caller::external("ingress-nginx", Some(INGRESS_NAMESPACE), INGRESS_PODS);
    let nats = Caller::external("nats", None, NATS_PODS);
    let nats_box = Caller::external("nats-box", None, NATS_BOX_PODS);

    // The manager: gRPC from the processors, the gateways and its peers; metrics from
    // Prometheus. The ports are the ones its container listens on.
    let manager_docs = documents("deploy/k8s/manager.yaml");
    let container = &find(&manager_docs, "StatefulSet", "wfm-manager")["spec"]["template"]["spec"]
        ["containers"][0];
    let grpc = port_of(env_value(container, "WFM_MANAGER_LISTEN"));
    let metrics = port_of(env_value(container, "WFM_MANAGER_METRICS_LISTEN"));
    let by_port = admitted(&policies_for(&docs, &manager.labels), |p| {
        container_port(container, p)
    });
    assert_admits(
        "wfm-manager",
        &by_port,
        &[
            (grpc, vec![&processor, &gateway, &manager]),
            (metrics, vec![&prometheus]),
        ],
    );

    // The gateway: its one port, from the ingress controller and Prometheus.
    let gateway_docs = documents("deploy/k8s/gateway.yaml");
    let container = &find(&gateway_docs, "Deployment", "wfm-gateway")["spec"]["template"]["spec"]["containers"]
        [0];
    let http = port_of(env_value(container, "WFM_GATEWAY_LISTEN"));
    let by_port = admitted(&policies_for(&docs, &gateway.labels), |p| {
        container_port(container, p)
    });
    assert_admits(
        "wfm-gateway",
        &by_port,
        &[(http, vec![&ingress, &prometheus])],
    );
    // The controller the policy admits is the class the Ingress asks for.
    assert_eq!(
        find(&gateway_docs, "Ingress", "wfm-gateway")["spec"]["ingressClassName"],
        "nginx"
    );

    // NATS, on the ports nats-values.yaml configures: clients from the manager and the
    // gateway (and the chart's nats-box), routes between the NATS peers only.
    let values: Value = serde_yaml_ng::from_str(&read("deploy/k8s/nats-values.yaml")).unwrap();
    let client = u16::try_from(values["config"]["nats"]["port"].as_u64().unwrap()).unwrap();
    let cluster = u16::try_from(values["config"]["cluster"]["port"].as_u64().unwrap()).unwrap();
    let by_port = admitted(&policies_for(&docs, &nats.labels), |p| {
        u16::try_from(p.as_u64().expect("NATS ports by number")).unwrap()
    });
    assert_admits(
        "nats",
        &by_port,
        &[
            (client, vec![&manager, &gateway, &nats_box]),
            (cluster, vec![&nats]),
        ],
    );
    // Which is the port the services are told to use.
    assert!(env_value(container, "WFM_NATS_URL").contains(&format!(":{client}")));

    // An operator learns from the docs which labels to set.
    let operate = read("docs/operate.md");
    for label in ["wfm.io/role: interaction-processor", "wfm.io/prometheus"] {
        assert!(
            operate.contains(label),
            "docs/operate.md does not name {label}"
        );
    }
}

#[test]
fn the_ingress_serves_tls_through_a_named_class() {
    let docs = documents("deploy/k8s/gateway.yaml");
    let ingress = find(&docs, "Ingress", "wfm-gateway");
    let spec = &ingress["spec"];
    // A named class: a cluster default could be a controller the annotations (and the
    // NetworkPolicy) do not fit.
    assert!(
        spec["ingressClassName"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "no ingressClassName"
    );
    // Every host it serves has a certificate.
    let tls = spec["tls"].as_sequence().expect("no tls section");
    assert!(!tls.is_empty());
    for entry in tls {
        assert!(
            entry["secretName"].as_str().is_some_and(|s| !s.is_empty()),
            "{entry:?}"
        );
    }
    let rules = spec["rules"].as_sequence().unwrap();
    assert!(!rules.is_empty());
    for rule in rules {
        let host = rule["host"].as_str().expect("a rule without a host");
        assert!(
            tls.iter().any(|t| strings(&t["hosts"]).contains(&host)),
            "{host} has no certificate"
        );
    }
}

#[test]
fn the_kustomization_applies_every_manifest_with_its_images_pinned() {
    let kustomization: Value =
        serde_yaml_ng::from_str(&read("deploy/k8s/kustomization.yaml")).unwrap();
    assert_eq!(kustomization["kind"], "Kustomization");
    let resources: BTreeSet<String> = strings(&kustomization["resources"])
        .into_iter()
        .map(str::to_string)
        .collect();
    // Every manifest but the Secret, whose placeholder key would replace the real one.
    let mut expected = manifest_files();
    assert!(expected.remove("secret.yaml"), "secret.yaml is gone");
    assert_eq!(resources, expected, "kustomization.yaml resources");
    for file in &resources {
        assert!(
            !is_values_file(file),
            "{file} is Helm values, not a resource"
        );
    }

    // Every image the listed manifests run is pinned: a registry and a release tag (or a
    // digest), never `latest`, and no pin names an image nothing runs.
    let images = kustomization["images"].as_sequence().expect("no images");
    let mut used = BTreeSet::new();
    for file in &resources {
        for doc in documents(&format!("{K8S}/{file}")) {
            let Some(pod) = pod_spec(&doc) else { continue };
            for container in all_containers(pod) {
                let image = container["image"].as_str().unwrap();
                // A tag in the manifest would be what runs under a plain `kubectl apply -f`.
                assert!(
                    !image.contains(':') && !image.contains('@'),
                    "{file}: {image} carries its own tag"
                );
                used.insert(image.to_string());
            }
        }
    }
    assert!(used.contains(IMAGE));
    let pinned: BTreeSet<String> = images
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pinned, used, "images pinned vs. images run");
    for image in images {
        let name = image["name"].as_str().unwrap();
        let new_name = image["newName"].as_str().unwrap_or_default();
        assert!(
            new_name.contains('/'),
            "{name}: no registry in {new_name:?}"
        );
        let tag = image["newTag"].as_str();
        let digest = image["digest"].as_str();
        assert!(
            tag.is_some() || digest.is_some(),
            "{name}: no tag or digest"
        );
        assert_ne!(tag, Some("latest"), "{name}");
        if name == IMAGE
            && let Some(tag) = tag
        {
            // The image of this release, built from the code these tests check.
            assert_eq!(tag, env!("CARGO_PKG_VERSION"), "{name}");
        }
    }
}
