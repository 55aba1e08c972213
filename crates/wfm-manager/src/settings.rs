//! The binary's settings: every one is a flag, a `WFM_*` environment variable and a key of
//! the optional TOML file given by `--config`, in that order of precedence over the
//! built-in default. `docs/configuration.md` lists them, and a test keeps it in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};
use wfm_profiles::ProfileSet;
use wfm_reference::{MIN_KEY_LEN, SigningKey};
use wfm_telemetry::settings::{SettingsError, at_least, secret};
use wfm_telemetry::{TelemetryArgs, Tracer};

use crate::{ManagerConfig, ManagerStats};

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
    /// Logs and OpenTelemetry.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl Settings {
    /// How long shutdown may take before the process gives up on it.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The signing key from the flag, the key file, or `None` for an ephemeral one.
    fn signing_key(&self) -> Result<Option<SigningKey>, SettingsError> {
        let given = secret(
            &Settings::command(),
            ("signing_key", self.signing_key.as_deref()),
            ("signing_key_file", self.signing_key_file.as_deref()),
        )?;
        let Some((id, bytes)) = given else {
            return Ok(None);
        };
        SigningKey::from_bytes(&bytes).map(Some).map_err(|_| {
            let value = format!("<{} bytes, redacted>", bytes.len());
            SettingsError::invalid(id, value, format!("at least {MIN_KEY_LEN} bytes"))
        })
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

    fn config(
        self,
        stats: Arc<ManagerStats>,
        tracer: Tracer,
    ) -> Result<ManagerConfig, SettingsError> {
        let signing_key = match self.signing_key()? {
            Some(key) => key,
            None => {
                tracing::warn!(
                    "no signing key configured: using an ephemeral key; references will not survive a restart"
                );
                SigningKey::generate().map_err(|error| {
                    let allowed = format!("a key, as no ephemeral one can be generated ({error})");
                    SettingsError::invalid("signing_key", "", allowed)
                })?
            }
        };
        let mut config = ManagerConfig::new(signing_key);
        config.reference_ttl = Duration::from_secs(self.reference_ttl_secs);
        config.profiles_poll = Duration::from_millis(self.profiles_poll_ms);
        config.drain_delay = Duration::from_millis(self.drain_delay_ms);
        config.stream_queue = usize::try_from(self.stream_queue).unwrap_or(usize::MAX);
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
