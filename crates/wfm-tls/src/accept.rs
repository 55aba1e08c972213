//! The accept loop both servers feed on: TCP connections are accepted, and each TLS
//! handshake runs in its own task under a deadline, so a slow or silent client can hold
//! neither the accept loop nor a worker. Ready connections wait in a bounded queue that the
//! server (tonic, axum) takes them from; the loop ends when that queue's receiver is gone.
//!
//! Each handshake takes the server config in force when it starts: a reloaded certificate
//! reaches new connections, and open ones keep theirs.

use std::io;
use std::net::SocketAddr;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use wfm_telemetry::Counter;

use crate::config::ServerTls;
use crate::roles::uri_sans;

/// Handshakes in progress at once; beyond it new connections are dropped at once, so that
/// a flood of silent clients costs at most this many tasks for one deadline each.
pub const MAX_HANDSHAKES: usize = 1024;

/// Connections accepted and ready that may wait for the server to take them.
const READY_QUEUE: usize = 64;

/// A pause after an accept error that is not about one connection (out of file
/// descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one warning about failing accepts per this long.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(5);

/// An accepted connection, plaintext or TLS.
#[derive(Debug)]
pub enum MaybeTls {
    /// Plaintext (loopback, or `--insecure-plaintext`).
    Plain(TcpStream),
    /// TLS, after a completed handshake.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// The underlying TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(tcp) => tcp,
            MaybeTls::Tls(tls) => tls.get_ref().0,
        }
    }
}

/// One connection ready to serve.
#[derive(Debug)]
pub struct Accepted {
    /// The stream.
    pub io: MaybeTls,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The URI SANs of the client certificate the handshake verified; `None` without one.
    pub client_uris: Option<Vec<String>>,
}

/// How the accept loop runs.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// The most a TLS handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
    /// Counts handshakes that failed or timed out.
    pub handshake_failures: Counter,
    /// Counts connections that could not be accepted (out of file descriptors, say).
    pub accept_errors: Counter,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            handshake_failures: Counter::default(),
            accept_errors: Counter::default(),
        }
    }
}

/// The ready connections of one listener.
#[derive(Debug)]
pub struct Incoming {
    ready: mpsc::Receiver<Accepted>,
    local: Option<SocketAddr>,
}

/// Whether an accept error concerns only the connection being accepted.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl Incoming {
    /// Starts accepting on `listener`, with TLS when `tls` is given.
    pub fn spawn(
        listener: TcpListener,
        tls: Option<Arc<ServerTls>>,
        options: AcceptOptions,
    ) -> Self {
        let local = listener.local_addr().ok();
        let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(run(listener, tls, options, ready_tx));
        Self { ready, local }
    }

    /// The listener's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The next ready connection; `None` once the loop has stopped.
    pub async fn accept(&mut self) -> Option<Accepted> {
        self.ready.recv().await
    }

    /// Polls for the next ready connection.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Accepted>> {
        self.ready.poll_recv(cx)
    }
}

async fn run(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    options: AcceptOptions,
    ready: mpsc::Sender<Accepted>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = ready.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                options.accept_errors.inc();
                // Once per interval: out of descriptors, every accept fails until some close.
                if warned.is_none_or(|at| at.elapsed() >= ACCEPT_WARN_EVERY) {
                    tracing::warn!(%error, "cannot accept connections; lower the connection cap or raise the open-files limit");
                    warned = Some(std::time::Instant::now());
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Small frames written one by one; Nagle's algorithm would hold each behind the
        // peer's delayed ACK.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Some(tls) = &tls else {
            let plain = Accepted {
                io: MaybeTls::Plain(tcp),
                remote,
                client_uris: None,
            };
            if ready.send(plain).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            options.handshake_failures.inc();
            tracing::debug!(%remote, "too many tls handshakes in progress; connection dropped");
            continue;
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let (ready, options) = (ready.clone(), options.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream =
                match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        options.handshake_failures.inc();
                        tracing::debug!(%remote, %error, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        options.handshake_failures.inc();
                        tracing::debug!(%remote, "tls handshake timed out");
                        return;
                    }
                };
            let client_uris = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(uri_sans);
            let accepted = Accepted {
                io: MaybeTls::Tls(Box::new(stream)),
                remote,
                client_uris,
            };
            // Bounded by the receiver: once the server is gone, `send` fails at once.
            let _ = ready.send(accepted).await;
        });
    }
}

delegate_io!(MaybeTls);
