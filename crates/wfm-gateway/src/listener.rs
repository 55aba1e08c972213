//! The gateway's TCP listener: `TCP_NODELAY` on every connection, and accept errors (out of
//! file descriptors, above all) logged and counted instead of retried in silence.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::stats::GatewayStats;

/// Pause after an accept error: the cause (no descriptors) rarely clears at once, and an
/// immediate retry would spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one warning per this long, however many accepts fail.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// A listener for `axum::serve`.
pub(crate) struct Listener {
    inner: TcpListener,
    stats: Arc<GatewayStats>,
    warned: Option<Instant>,
    failed_since_warning: u64,
}

impl Listener {
    /// Wraps `inner`, counting accept errors in `stats`.
    pub(crate) fn new(inner: TcpListener, stats: Arc<GatewayStats>) -> Self {
        Self {
            inner,
            stats,
            warned: None,
            failed_since_warning: 0,
        }
    }

    fn failed(&mut self, error: &io::Error) {
        self.stats.accept_errors.inc();
        self.failed_since_warning += 1;
        let now = Instant::now();
        if self
            .warned
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            tracing::warn!(%error, failed = self.failed_since_warning,
                "cannot accept connections; lower max_connections or raise the open-files limit");
            self.warned = Some(now);
            self.failed_since_warning = 0;
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, address)) => {
                    // Events are small frames written one by one; Nagle's algorithm would
                    // hold each behind the client's delayed ACK for up to 40 ms.
                    if let Err(error) = tcp.set_nodelay(true) {
                        tracing::debug!(%error, "cannot set TCP_NODELAY");
                    }
                    return (tcp, address);
                }
                Err(error) => {
                    self.failed(&error);
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
