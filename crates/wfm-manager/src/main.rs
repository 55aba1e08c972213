//! The `wfm-manager` binary: parses its flags, sets up logging, and serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wfm_manager::ManagerConfig;
use wfm_profiles::ProfileSet;
use wfm_reference::SigningKey;

/// The workflow-manager gRPC service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "WFM_MANAGER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Key that signs session resource references (at least 32 bytes). Without it an
    /// ephemeral key is generated, and references die with the process.
    #[arg(long, env = "WFM_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// Lifetime of a session resource reference, in seconds.
    #[arg(long, env = "WFM_REFERENCE_TTL_SECS", default_value_t = 12 * 60 * 60)]
    reference_ttl_secs: u64,
    /// Workflow profile file (TOML), watched and reloaded on change or SIGHUP. Without it
    /// only the built-in default profile exists.
    #[arg(long, env = "WFM_PROFILES")]
    profiles: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let signing_key = match &args.signing_key {
        Some(key) => SigningKey::from_bytes(key.as_bytes()).context("WFM_SIGNING_KEY")?,
        None => {
            tracing::warn!(
                "no signing key configured: using an ephemeral key; references will not survive a restart"
            );
            SigningKey::generate()?
        }
    };
    let mut config = ManagerConfig::new(signing_key);
    config.reference_ttl = Duration::from_secs(args.reference_ttl_secs);
    if let Some(path) = args.profiles {
        // Every problem is printed, one `file:line:col: message` per line.
        config.profiles =
            ProfileSet::load(&path).map_err(|e| anyhow::anyhow!("invalid profile file:\n{e}"))?;
        config.profiles_path = Some(path);
    }

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    wfm_manager::serve(listener, config, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on ctrl-c or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops the server");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}
