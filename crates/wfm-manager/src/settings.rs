//! The binary's settings: every one is a flag, a `WFM_*` environment variable and a key of
//! the optional TOML file given by `--config`, in that order of precedence over the
//! built-in default. `docs/configuration.md` lists them, and a test keeps it in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};
use wfm_profiles::ProfileSet;
use wfm_reference::{KeyRing, SigningKey};
use wfm_telemetry::settings::{SettingsError, at_least, secret};
use wfm_telemetry::{TelemetryArgs, Tracer};

use wfm_tls::{
    ClientFiles, ClientTls, ListenCheck, NatsSecurity, RoleMap, ServerFiles, ServerTls,
    listen_check,
};

use crate::{ClusterConfig, ManagerConfig, ManagerStats};

/// The binary's name, as the Dockerfile, compose file and manifests run it.
pub const BINARY: &str = "wfm-manager";
/// The default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The default address of the Prometheus `/metrics` listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The workflow-manager gRPC service.
#[derive(Debug, Clone, Parser)]
#[command(name = BINARY, version, about)]
pub struct Settings {
    /// TOML file of settings (keys as below, e.g. `listen = "0.0.0.0:50051"`); the
    /// environment and flags override it.
    #[arg(long, env = "WFM_MANAGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC address (the workflow-manager service, grpc.health.v1 and reflection).
    #[arg(long, env = "WFM_MANAGER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Address of the HTTP listener serving Prometheus `/metrics`, apart from the gRPC port.
    #[arg(long, env = "WFM_MANAGER_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: SocketAddr,
    /// Key that signs session resource references (at least 32 bytes), the same as the
    /// gateway's. Without it (or a key file) an ephemeral key is generated, and references
    /// die with the process.
    #[arg(
        long,
        env = "WFM_SIGNING_KEY",
        hide_env_values = true,
        conflicts_with = "signing_key_file"
    )]
    pub signing_key: Option<String>,
    /// File holding the signing key (a mounted Kubernetes or Docker secret); a trailing
    /// line break is ignored.
    #[arg(long, env = "WFM_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// File of previous signing keys, one per line, newest first: they no longer sign, but
    /// still verify the references they signed until those expire (key rotation).
    #[arg(long, env = "WFM_PREVIOUS_SIGNING_KEYS_FILE")]
    pub previous_signing_keys_file: Option<PathBuf>,
    /// Lifetime of a session resource reference, in seconds (12 h: an agent's shift).
    #[arg(long, env = "WFM_REFERENCE_TTL_SECS", default_value_t = 12 * 60 * 60, value_parser = at_least::<60>)]
    pub reference_ttl_secs: u64,
    /// Workflow profile file (TOML), watched and reloaded on change or SIGHUP. Without it
    /// only the built-in default profile exists.
    #[arg(long, env = "WFM_PROFILES")]
    pub profiles: Option<PathBuf>,
    /// How often the profile file is checked for changes, in milliseconds.
    #[arg(long, env = "WFM_PROFILES_POLL_MS", default_value_t = 2_000, value_parser = at_least::<100>)]
    pub profiles_poll_ms: u64,
    /// On SIGTERM, how long health reports NOT_SERVING before clients are told and streams
    /// end, in milliseconds, so that probes and load balancers stop sending work first.
    #[arg(long, env = "WFM_MANAGER_DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,
    /// On SIGTERM, the most the whole shutdown may take, in seconds; the process exits
    /// then whatever is left.
    #[arg(long, env = "WFM_MANAGER_SHUTDOWN_GRACE_SECS", default_value_t = 10, value_parser = at_least::<1>)]
    pub shutdown_grace_secs: u64,
    /// State events that may wait in one binding stream (a gateway's `Attach`, or a
    /// `BindSession`); beyond it a binding's events are dropped and the binding is resent
    /// its entire view state once the stream has drained below half.
    #[arg(long, env = "WFM_MANAGER_STREAM_QUEUE", default_value_t = 4096, value_parser = at_least::<64>)]
    pub stream_queue: u64,
    /// Most sessions this manager creates (an agent's desktop each); more are refused with
    /// RESOURCE_EXHAUSTED. Sessions handed or taken over from other replicas are not refused.
    #[arg(long, env = "WFM_MANAGER_MAX_SESSIONS", default_value_t = 100_000, value_parser = at_least::<1>)]
    pub max_sessions: u64,
    /// How long a MediaBar command waits for its Interaction Processor's answer before it
    /// fails with `timeout` (a gateway waits longer, so that this answer reaches it).
    #[arg(long, env = "WFM_MANAGER_COMMAND_TIMEOUT_MS", default_value_t = 5000, value_parser = at_least::<100>)]
    pub command_timeout_ms: u64,
    /// Cluster mode: comma-separated NATS servers (JetStream, 2.11 or later) through which
    /// replicas share sessions. Unset runs one process alone, as `wfm up` does.
    #[arg(long, env = "WFM_NATS_URL")]
    pub nats_url: Option<String>,
    /// Cluster mode: this replica's name, stable across restarts (1 to 64 letters, digits,
    /// `-` or `_`); defaults to the host name's first label.
    #[arg(long, env = "WFM_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: the gRPC URL at which the other replicas and the gateways reach this
    /// one; defaults to `http://<listen>` unless that is a wildcard address.
    #[arg(long, env = "WFM_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Cluster mode: how long a dead replica's sessions wait before others take them over,
    /// in milliseconds; the same on every replica.
    #[arg(long, env = "WFM_LEASE_TTL_MS", default_value_t = 5_000, value_parser = at_least::<500>)]
    pub lease_ttl_ms: u64,
    /// Cluster mode: JetStream copies of each bucket (3 in production; 1 for a single NATS
    /// server).
    #[arg(long, env = "WFM_NATS_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: u64,
    /// PEM certificate chain of the gRPC port, which then speaks only TLS; with
    /// `--tls-key`. Reloaded on change or SIGHUP.
    #[arg(long, env = "WFM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "WFM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: every client must present a certificate it issued (mutual TLS),
    /// whose URI SAN gives its role (`--role`); in cluster mode also what peers'
    /// certificates are checked against. Without it there are no roles.
    #[arg(long, env = "WFM_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Roles of client certificates, comma-separated `<uri or uri-prefix*>=<role>` with
    /// role `ip`, `gateway`, `ops` or `peer`, matched against the certificate's URI SANs
    /// (docs/security.md). Needs `--client-ca`.
    #[arg(long = "role", env = "WFM_ROLES", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Allows plaintext gRPC and metrics on an address other than loopback, for a private
    /// demo network; logged as a warning at start.
    #[arg(long, env = "WFM_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// How often the TLS files are checked for changes, in milliseconds.
    #[arg(long, env = "WFM_TLS_POLL_MS", default_value_t = 5_000, value_parser = at_least::<100>)]
    pub tls_poll_ms: u64,
    /// Cluster mode: NATS credentials file (`.creds`: the user's JWT and NKey seed).
    #[arg(long, env = "WFM_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Cluster mode: PEM CA of the NATS servers; set, the NATS connection requires TLS.
    #[arg(long, env = "WFM_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Logs and OpenTelemetry.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// The TLS parts of the config.
struct Tls {
    server: Option<Arc<ServerTls>>,
    roles: RoleMap,
    peer: Option<Arc<ClientTls>>,
}

/// The host name's first label, as a node id (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
fn host_node_id() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let label = name.trim().split('.').next()?.to_string();
    ClusterConfig::valid_node_id(&label).then_some(label)
}

impl Settings {
    /// How long shutdown may take before the process gives up on it.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The configured keys (the flag or the key file, and the previous keys), or `None`
    /// for an ephemeral key.
    fn signing_key(&self) -> Result<Option<KeyRing>, SettingsError> {
        let given = secret(
            &Settings::command(),
            ("signing_key", self.signing_key.as_deref()),
            ("signing_key_file", self.signing_key_file.as_deref()),
        )?;
        let Some((id, bytes)) = given else {
            return Ok(None);
        };
        wfm_telemetry::settings::key_ring(id, &bytes, self.previous_signing_keys_file.as_deref())
            .map(Some)
    }

    /// Validates the settings and builds the service's config around `stats` and `tracer`;
    /// an error names the setting in all its forms.
    pub fn into_config(
        self,
        stats: Arc<ManagerStats>,
        tracer: Tracer,
    ) -> Result<ManagerConfig, SettingsError> {
        self.config(stats, tracer)
            .map_err(|error| error.described(&Settings::command()))
    }

    /// Cluster mode's settings, when `--nats-url` is set.
    fn cluster(&self) -> Result<Option<ClusterConfig>, SettingsError> {
        let Some(nats_url) = self.nats_url.clone() else {
            return Ok(None);
        };
        if nats_url.split(',').any(|url| url.trim().is_empty()) {
            return Err(SettingsError::invalid(
                "nats_url",
                &nats_url,
                "comma-separated NATS server URLs, none empty",
            ));
        }
        let node_id = match &self.node_id {
            Some(id) if ClusterConfig::valid_node_id(id) => id.clone(),
            Some(id) => {
                return Err(SettingsError::invalid(
                    "node_id",
                    id,
                    "1 to 64 letters, digits, '-' or '_'",
                ));
            }
            None => host_node_id().ok_or_else(|| {
                SettingsError::invalid(
                    "node_id",
                    "",
                    "a node id: the host name is not usable as one",
                )
            })?,
        };
        let tls = self.tls_cert.is_some();
        let scheme = if tls { "https" } else { "http" };
        let advertise_url = match &self.advertise_url {
            Some(url) if tls && !url.starts_with("https://") => {
                return Err(SettingsError::invalid(
                    "advertise_url",
                    url,
                    "an https:// URL: this replica serves TLS",
                ));
            }
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => url.clone(),
            Some(url) => {
                return Err(SettingsError::invalid(
                    "advertise_url",
                    url,
                    "an http:// or https:// URL",
                ));
            }
            None if !self.listen.ip().is_unspecified() => format!("{scheme}://{}", self.listen),
            None => {
                return Err(SettingsError::invalid(
                    "advertise_url",
                    "",
                    format!(
                        "the URL peers reach this replica at: the listen address {} is a wildcard",
                        self.listen
                    ),
                ));
            }
        };
        if self.signing_key.is_none() && self.signing_key_file.is_none() {
            return Err(SettingsError::invalid(
                "signing_key",
                "",
                "a key shared by every replica: an ephemeral one is refused in cluster mode",
            ));
        }
        Ok(Some(ClusterConfig {
            nats_url,
            node_id,
            advertise_url,
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            replicas: usize::try_from(self.nats_replicas).unwrap_or(3),
            nats: self.nats_security()?,
        }))
    }

    /// The NATS connection's credentials and CA, checked now.
    fn nats_security(&self) -> Result<NatsSecurity, SettingsError> {
        let nats = NatsSecurity {
            creds: self.nats_creds.clone(),
            ca: self.nats_ca.clone(),
        };
        nats.check().map_err(|error| {
            let mut files = Vec::new();
            files.extend(self.nats_ca.as_deref().map(|p| ("nats_ca", p)));
            files.extend(self.nats_creds.as_deref().map(|p| ("nats_creds", p)));
            error.setting(&files)
        })?;
        Ok(nats)
    }

    /// The TLS of the gRPC port, the roles, and the client side towards peers; and the
    /// "no plaintext off loopback" rule for both listeners.
    fn tls(&self) -> Result<Tls, SettingsError> {
        let files: Vec<(&'static str, &std::path::Path)> = [
            ("tls_cert", self.tls_cert.as_deref()),
            ("tls_key", self.tls_key.as_deref()),
            ("client_ca", self.client_ca.as_deref()),
        ]
        .into_iter()
        .filter_map(|(id, path)| path.map(|p| (id, p)))
        .collect();
        let server = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                ServerTls::load(
                    ServerFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: self.client_ca.clone(),
                    },
                    &[b"h2"],
                )
                .map_err(|error| error.setting(&files))?,
            ),
            _ => None,
        };
        let roles = RoleMap::parse(&self.roles).map_err(|error| {
            SettingsError::invalid("roles", self.roles.join(","), error.to_string())
        })?;
        if !roles.is_empty() && self.client_ca.is_none() {
            return Err(SettingsError::invalid(
                "roles",
                self.roles.join(","),
                "needs --client-ca: without client certificates there are no roles",
            ));
        }
        let peer = match (&server, &self.client_ca, &self.nats_url) {
            (Some(_), Some(ca), Some(_)) => Some(
                ClientTls::load(ClientFiles {
                    ca: ca.clone(),
                    identity: self.tls_cert.clone().zip(self.tls_key.clone()),
                })
                .map_err(|error| error.setting(&files))?,
            ),
            (Some(_), None, Some(_)) => {
                return Err(SettingsError::invalid(
                    "client_ca",
                    "",
                    "required in cluster mode with TLS: replicas verify each other with it",
                ));
            }
            _ => None,
        };
        for (id, address) in [
            ("listen", self.listen),
            ("metrics_listen", self.metrics_listen),
        ] {
            match listen_check(address, server.is_some(), self.insecure_plaintext) {
                ListenCheck::Allowed => {}
                ListenCheck::Insecure => tracing::warn!(
                    %address,
                    setting = id,
                    "--insecure-plaintext: serving plaintext on an address other than loopback; \
                     anyone on the network can read and send calls"
                ),
                ListenCheck::Refused => {
                    return Err(SettingsError::invalid(
                        "insecure_plaintext",
                        "false",
                        format!(
                            "needed to serve plaintext on {address} (`{id}`), which is not \
                             loopback: give --tls-cert and --tls-key, or --insecure-plaintext \
                             on a private network"
                        ),
                    ));
                }
            }
        }
        if server.is_some() && self.client_ca.is_none() && !self.listen.ip().is_loopback() {
            tracing::warn!(
                address = %self.listen,
                "tls without --client-ca: callers are not authenticated and every caller may \
                 make every call (no roles)"
            );
        }
        Ok(Tls {
            server,
            roles,
            peer,
        })
    }

    fn config(
        self,
        stats: Arc<ManagerStats>,
        tracer: Tracer,
    ) -> Result<ManagerConfig, SettingsError> {
        let tls = self.tls()?;
        let cluster = self.cluster()?;
        let signing_key: KeyRing = match self.signing_key()? {
            Some(keys) => keys,
            None => {
                tracing::warn!(
                    "no signing key configured: using an ephemeral key; references will not survive a restart"
                );
                SigningKey::generate()
                    .map_err(|error| {
                        let allowed =
                            format!("a key, as no ephemeral one can be generated ({error})");
                        SettingsError::invalid("signing_key", "", allowed)
                    })?
                    .into()
            }
        };
        let mut config = ManagerConfig::new(signing_key);
        config.reference_ttl = Duration::from_secs(self.reference_ttl_secs);
        config.profiles_poll = Duration::from_millis(self.profiles_poll_ms);
        config.drain_delay = Duration::from_millis(self.drain_delay_ms);
        config.stream_queue = usize::try_from(self.stream_queue).unwrap_or(usize::MAX);
        config.cluster = cluster;
        config.max_sessions = usize::try_from(self.max_sessions).unwrap_or(usize::MAX);
        config.command_timeout = Duration::from_millis(self.command_timeout_ms);
        config.tls = tls.server;
        config.roles = tls.roles;
        config.peer_tls = tls.peer;
        config.tls_poll = Duration::from_millis(self.tls_poll_ms);
        if self.drain_delay_ms >= self.shutdown_grace_secs.saturating_mul(1000) {
            return Err(SettingsError::invalid(
                "drain_delay_ms",
                self.drain_delay_ms,
                format!(
                    "less than the shutdown grace ({} s)",
                    self.shutdown_grace_secs
                ),
            ));
        }
        if let Some(path) = self.profiles {
            config.profiles = ProfileSet::load(&path).map_err(|error| SettingsError::File {
                what: "profile file",
                path: path.clone(),
                problem: format!("\n{error}"),
            })?;
            config.profiles_path = Some(path);
        }
        config.stats = stats;
        config.tracer = tracer;
        Ok(config)
    }
}
