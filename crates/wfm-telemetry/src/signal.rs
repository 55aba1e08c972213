//! The end of a process's life: ctrl-c, or SIGTERM from an orchestrator.

/// Resolves on ctrl-c or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only ctrl-c stops the process")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs a service until it returns. On ctrl-c or SIGTERM it cancels `shutdown`, which starts
/// the service's own drain, and waits up to `grace` for it; past that the process leaves
/// anyway, because an orchestrator will kill it soon after.
pub async fn serve_until_signal<E: Send + 'static>(
    service: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    shutdown: tokio_util::sync::CancellationToken,
    grace: std::time::Duration,
) -> Result<Result<(), E>, tokio::task::JoinError> {
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        signal.cancel();
    });
    let mut serving = tokio::spawn(service);
    tokio::select! {
        outcome = &mut serving => return outcome,
        () = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, &mut serving).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!(
                grace_secs = grace.as_secs(),
                "shutdown grace period exceeded; exiting"
            );
            serving.abort();
            Ok(Ok(()))
        }
    }
}

/// SIGHUP, the operator's "reload your files", where the platform has it; never fires
/// elsewhere or if it cannot be installed. Every `Hangup` sees every signal, so the profile
/// and certificate watchers each have their own.
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Starts listening for SIGHUP; a failure is logged and the listener never fires.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            let kind = tokio::signal::unix::SignalKind::hangup();
            let signal = tokio::signal::unix::signal(kind)
                .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP"))
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves on the next SIGHUP.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

impl Default for Hangup {
    fn default() -> Self {
        Self::new()
    }
}
