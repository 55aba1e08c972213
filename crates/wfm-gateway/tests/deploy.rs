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

#[test]
fn the_compose_file_matches_the_binaries() {
    let compose: Value = serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
    let services = &compose["services"];
    let image = services["wfm-manager"]["image"].as_str().unwrap();
    // (service, settings, subcommand, listen variable, healthcheck's listen variable and path)
    for (name, command, role, listen, (probe_listen, probe)) in [
        (
            "wfm-manager",
            manager(),
            wfm_manager::cli::COMMAND,
            "WFM_MANAGER_LISTEN",
            ("WFM_MANAGER_METRICS_LISTEN", wfm_gateway::METRICS_PATH),
        ),
        (
            "wfm-gateway",
            gateway(),
            wfm_gateway::cli::COMMAND,
            "WFM_GATEWAY_LISTEN",
            ("WFM_GATEWAY_LISTEN", wfm_gateway::HEALTHZ_PATH),
        ),
    ] {
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
        // The key file is the mounted secret.
        let key_file = environment["WFM_SIGNING_KEY_FILE"].as_str().unwrap();
        let secret = service["secrets"][0].as_str().unwrap();
        assert_eq!(key_file, format!("/run/secrets/{secret}"));
    }
    // The manager's default ports are the ones the image and compose use.
    assert_eq!(default_port(manager(), "listen"), 50051);
    assert_eq!(default_port(manager(), "metrics_listen"), 9464);
    assert_eq!(default_port(gateway(), "listen"), 8080);
    // The gateway reaches the manager on its listen port, and the simulator too.
    let manager_port = port_of(
        services["wfm-manager"]["environment"]["WFM_MANAGER_LISTEN"]
            .as_str()
            .unwrap(),
    );
    for name in ["wfm-gateway", "simulator"] {
        let url = services[name]["environment"]["WFM_MANAGER_URL"]
            .as_str()
            .unwrap();
        assert_eq!(url, format!("http://wfm-manager:{manager_port}"), "{name}");
    }
    // The simulator is the same image, playing the scenario library the image ships.
    assert_eq!(services["simulator"]["image"], image);
    let simulator = services["simulator"]["command"][0].as_str().unwrap();
    assert!(
        simulator.contains("wfm sim run ") && simulator.contains("/usr/share/wfm/scenarios/"),
        "{simulator}"
    );
    assert!(read("deploy/docker/Dockerfile").contains("COPY scenarios /usr/share/wfm/scenarios"));

    // Prometheus scrapes both services where they serve /metrics.
    let prometheus: Value =
        serde_yaml_ng::from_str(&read("deploy/compose/prometheus.yml")).unwrap();
    let jobs = prometheus["scrape_configs"].as_sequence().unwrap();
    let metrics_port = port_of(
        services["wfm-manager"]["environment"]["WFM_MANAGER_METRICS_LISTEN"]
            .as_str()
            .unwrap(),
    );
    let gateway_port = port_of(
        services["wfm-gateway"]["environment"]["WFM_GATEWAY_LISTEN"]
            .as_str()
            .unwrap(),
    );
    for (job, target) in [
        ("wfm-manager", format!("wfm-manager:{metrics_port}")),
        ("wfm-gateway", format!("wfm-gateway:{gateway_port}")),
    ] {
        let job = jobs
            .iter()
            .find(|j| j["job_name"] == job)
            .unwrap_or_else(|| panic!("no job {job}"));
        assert_eq!(job["metrics_path"], wfm_gateway::METRICS_PATH);
        assert_eq!(job["static_configs"][0]["targets"][0], target.as_str());
    }
    // The collector listens where the services export.
    let collector: Value =
        serde_yaml_ng::from_str(&read("deploy/compose/otel-collector.yaml")).unwrap();
    let grpc = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    let endpoint = services["wfm-manager"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        .as_str()
        .unwrap();
    assert_eq!(endpoint, format!("http://otel-collector:{}", port_of(grpc)));
}

// ---------------------------------------------------------------------------------------
// deploy/k8s

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
    for (file, command, role, listen) in [
        (
            "deploy/k8s/manager.yaml",
            manager(),
            wfm_manager::cli::COMMAND,
            "WFM_MANAGER_LISTEN",
        ),
        (
            "deploy/k8s/gateway.yaml",
            gateway(),
            wfm_gateway::cli::COMMAND,
            "WFM_GATEWAY_LISTEN",
        ),
    ] {
        let name = format!("wfm-{role}");
        let docs = documents(file);
        let deployment = find(&docs, "Deployment", &name);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "wfm:latest", "{file}");
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
            assert_eq!(readiness["grpc"]["port"].as_u64(), Some(u64::from(port)));
            assert_eq!(readiness["grpc"]["service"], "wfm.v1.WorkflowManager");
            assert_eq!(liveness["grpc"]["port"].as_u64(), Some(u64::from(port)));
            let metrics = port_of(env_value(container, "WFM_MANAGER_METRICS_LISTEN"));
            assert!(ports.contains(&u64::from(metrics)));
            assert!(targets.contains(&u64::from(metrics)));
        } else {
            assert_eq!(readiness["httpGet"]["path"], wfm_gateway::READYZ_PATH);
            assert_eq!(liveness["httpGet"]["path"], wfm_gateway::HEALTHZ_PATH);
            for probe in [readiness, liveness] {
                assert_eq!(probe["httpGet"]["port"].as_u64(), Some(u64::from(port)));
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
                format!("http://wfm-manager:{}", default_port(manager(), "listen"))
            );
        }
    }
}
