//! `serve`: the gRPC server with health and reflection, and its graceful shutdown.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::Connected;
use wfm_proto::v1::workflow_manager_server::WorkflowManagerServer;
use wfm_telemetry::http::Readiness;
use wfm_tls::{AcceptOptions, Accepted, Incoming, MaybeTls, Reloadable, RoleMap};

use crate::auth::{AuthorizeLayer, PeerInfo};
use crate::calls::CallsLayer;
use crate::cluster::Cluster;
use crate::config::ManagerConfig;
use crate::profile_watch;
use crate::registry::Registry;
use crate::service::WorkflowManagerService;
use crate::stats::ManagerStats;

/// How often an idle HTTP/2 connection is pinged.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);
/// How long a ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Concurrent calls and streams one connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Largest gRPC message in either direction, in bytes: a session at every limit of
/// `wfm_engine::limits` fits several times over; a larger message is refused with
/// OUT_OF_RANGE before it is decoded.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not load the contract's descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::StartError),
}

/// Serves the workflow manager on `listener` until `shutdown` is cancelled.
///
/// On shutdown, health turns to NOT_SERVING first; after `drain_delay` every binder receives
/// an unbound notice with reason SHUTTING_DOWN, every stream ends, and in-flight calls
/// complete.
pub async fn serve(
    listener: TcpListener,
    config: ManagerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let stats = Arc::clone(&config.stats);
    let drain_delay = config.drain_delay;
    let readiness = Arc::clone(&config.readiness);
    let cluster = match &config.cluster {
        Some(settings) => {
            Some(Cluster::connect(settings, config.peer_tls.clone(), Arc::clone(&stats)).await?)
        }
        None => None,
    };
    let registry = Registry::new(config.profiles.clone(), Arc::clone(&stats))
        .with_max_sessions(config.max_sessions);
    let registry = Arc::new(match &cluster {
        Some(cluster) => registry.with_fence(Arc::clone(&cluster.fence)),
        None => registry,
    });
    let cluster_stop = CancellationToken::new();
    if let Some(cluster) = &cluster {
        cluster
            .start(Arc::clone(&registry), cluster_stop.clone())
            .await?;
    }
    let streams_stop = CancellationToken::new();
    tokio::spawn(crate::timers::run(
        Arc::clone(&registry),
        shutdown.child_token(),
    ));
    if let Some(path) = config.profiles_path.clone() {
        tokio::spawn(profile_watch::watch(
            path,
            config.profiles_poll,
            Arc::clone(&registry),
            Arc::clone(&config.stats),
            shutdown.child_token(),
        ));
    }
    let instance: Arc<str> = match &cluster {
        Some(cluster) => Arc::from(cluster.instance()),
        None => Arc::from(random_instance().as_str()),
    };
    tracing::info!(%instance, "manager instance");
    let reloadable: Vec<Arc<dyn Reloadable>> = config
        .tls
        .iter()
        .map(|tls| Arc::clone(tls) as Arc<dyn Reloadable>)
        .chain(
            config
                .peer_tls
                .iter()
                .map(|tls| Arc::clone(tls) as Arc<dyn Reloadable>),
        )
        .collect();
    wfm_tls::reload::watch(
        reloadable,
        config.tls_poll,
        stats.tls.clone(),
        shutdown.child_token(),
    )
    .await;
    let tls = config.tls.clone();
    let authorize = AuthorizeLayer {
        enforce: tls.as_ref().is_some_and(|tls| tls.requires_client_cert()),
        denied: stats.calls_denied.clone(),
    };
    let roles = Arc::new(config.roles.clone());
    let accept = AcceptOptions {
        handshake_timeout: config.handshake_timeout,
        handshake_failures: stats.tls_handshake_failures.clone(),
        accept_errors: Default::default(),
    };
    let service = WorkflowManagerService::new(
        Arc::clone(&registry),
        instance,
        config,
        cluster.clone(),
        streams_stop.clone(),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    let health = Health { health, readiness };
    health.set(true).await;
    if let Some(cluster) = &cluster {
        tokio::spawn(report_readiness(
            Arc::clone(cluster),
            health.clone(),
            cluster_stop.clone(),
        ));
    }
    // Both versions of reflection: v1 for current grpcurl, v1alpha for older grpcurl builds
    // and Python's grpcio-reflection, which still ask only for it.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(wfm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        (reflection().build_v1()?, reflection().build_v1alpha()?);

    if let Ok(address) = listener.local_addr() {
        let mode = match &tls {
            Some(tls) if tls.requires_client_cert() => "mutual tls",
            Some(_) => "tls",
            None => "plaintext",
        };
        tracing::info!(%address, transport = mode, "workflow manager listening");
    }

    let drain = async move {
        shutdown.cancelled().await;
        health.set(false).await;
        tracing::info!(
            drain_delay_ms = drain_delay.as_millis() as u64,
            "shutting down: health is NOT_SERVING"
        );
        tokio::time::sleep(drain_delay).await;
        if let Some(cluster) = &cluster {
            // Still serving: calls for the sessions handed over are forwarded meanwhile.
            cluster.leave().await;
            cluster_stop.cancel();
        }
        tracing::info!("unbinding clients and ending streams");
        registry.shutdown();
        streams_stop.cancel();
    };
    // The accept loop sets TCP_NODELAY (without it a response's frames wait for the
    // client's delayed ACK: 40 ms per unary call) and runs each TLS handshake under its
    // deadline, with the server config in force at that moment.
    let preface_timeout = accept.handshake_timeout;
    let calls = CallsLayer {
        open: stats.open_calls.clone(),
        too_large: stats.messages_too_large.clone(),
    };
    let incoming = CountedIncoming {
        incoming: Incoming::spawn(listener, tls, accept),
        stats,
        roles,
        preface_timeout,
    };
    Server::builder()
        // A peer that vanishes without closing its connection (a frozen gateway, a dropped
        // NAT mapping) is noticed and its streams and bindings released.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(calls)
        // Roles are checked here, once for every service, before any call is decoded.
        .layer(authorize)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            WorkflowManagerServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, drain)
        .await?;
    tracing::info!("workflow manager stopped");
    Ok(())
}

/// A single process's instance: random per start, since its sessions die with it.
fn random_instance() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return format!("{nanos:x}");
    }
    format!("{:016x}", u64::from_le_bytes(bytes))
}

/// Cluster mode: health reports NOT_SERVING while this replica cannot take sessions on
/// (NATS unreachable, lease not held), so that probes and gateways send new work elsewhere;
/// the sessions it owns are still served.
async fn report_readiness(cluster: Arc<Cluster>, health: Health, stop: CancellationToken) {
    let mut ready = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
        let now = cluster.ready_for_ownership();
        if now == ready {
            continue;
        }
        ready = now;
        health.set(ready).await;
    }
}

/// The gRPC health status and the metrics listener's `/readyz`, set together.
#[derive(Clone)]
struct Health {
    health: tonic_health::server::HealthReporter,
    readiness: Arc<Readiness>,
}

impl Health {
    async fn set(&self, serving: bool) {
        self.readiness.set(serving);
        if serving {
            self.health
                .set_serving::<WorkflowManagerServer<WorkflowManagerService>>()
                .await;
        } else {
            self.health
                .set_not_serving::<WorkflowManagerServer<WorkflowManagerService>>()
                .await;
        }
    }
}

/// The accepted connections as tonic takes them: counted, with the client certificate's
/// role resolved once per connection.
struct CountedIncoming {
    incoming: Incoming,
    stats: Arc<ManagerStats>,
    roles: Arc<RoleMap>,
    /// How long a connection may take to send the HTTP/2 client preface.
    preface_timeout: std::time::Duration,
}

impl tokio_stream::Stream for CountedIncoming {
    type Item = Result<Counted, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.incoming.poll_accept(cx).map(|accepted| {
            accepted.map(|accepted| {
                Ok(Counted::new(
                    accepted,
                    &this.stats,
                    &this.roles,
                    this.preface_timeout,
                ))
            })
        })
    }
}

/// The HTTP/2 client preface (`PRI * HTTP/2.0...`), which every gRPC client sends first.
const PREFACE_LEN: usize = 24;

/// An accepted connection, counted in the connection gauge while it is open, with what
/// its calls are told of their caller.
struct Counted {
    tcp: MaybeTls,
    info: PeerInfo,
    _open: wfm_telemetry::metrics::GaugeGuard,
    /// Until the preface has arrived: its deadline and the bytes still to come. Neither
    /// hyper nor h2 bounds the wait for it, and HTTP/2 keepalive only starts after it, so
    /// a peer that connects and sends nothing (or trickles) would hold the socket forever.
    preface: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
}

impl Counted {
    fn new(
        accepted: Accepted,
        stats: &ManagerStats,
        roles: &RoleMap,
        preface_timeout: std::time::Duration,
    ) -> Self {
        stats.grpc_connections_total.inc();
        let identity = accepted
            .client_uris
            .map(|uris| Arc::new(roles.identity(uris)));
        Self {
            tcp: accepted.io,
            info: PeerInfo {
                remote: accepted.remote,
                identity,
            },
            _open: stats.grpc_connections.track(),
            preface: Some((Box::pin(tokio::time::sleep(preface_timeout)), PREFACE_LEN)),
        }
    }
}

impl Connected for Counted {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let Some((deadline, remaining)) = &mut this.preface else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                *remaining = remaining.saturating_sub(buf.filled().len() - before);
                if *remaining == 0 {
                    this.preface = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the handshake timeout",
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
