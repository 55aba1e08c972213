//! A gateway in front of several manager replicas: a bind follows a replica's redirect to
//! the owner, a session that moves is rebound at its new owner, a replica that dies has its
//! bindings rebound at another, and (with a real nats-server) replicas are found in the
//! `wfm_nodes` bucket. The replicas are fakes that speak the Attach wire; every frame the
//! client receives is validated against the AsyncAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::nats::Nats;
use common::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
use wfm_gateway::GatewayConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_proto::v1::workflow_manager_server::{WorkflowManager, WorkflowManagerServer};
use wfm_reference::SigningKey;

type Boxed<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;
type Outbound = mpsc::Sender<Result<pb::AttachResponse, Status>>;

/// The capabilities every fake replica's catalogue names, in order.
const NAMES: [&str; 4] = [
    "session.login",
    "session.logout",
    "channel.ready",
    "channel.notReady",
];

/// A fake manager replica: it owns every session it is asked for (sending the state
/// `enabled`), or redirects every bind to `redirect` while that is set.
#[derive(Clone)]
struct Fake {
    /// Enabled bits of the session target and of its voice channel.
    enabled: (u64, u64),
    redirect: Arc<Mutex<Option<String>>>,
    /// Every bind command received.
    binds: Arc<Mutex<Vec<pb::AttachBind>>>,
    /// The bindings it holds: binding id, session id, their stream.
    bound: Arc<Mutex<Vec<(u64, String, Outbound)>>>,
    kill: CancellationToken,
}

fn refused<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not part of this test"))
}

fn response(binding_id: u64, kind: Kind) -> Result<pb::AttachResponse, Status> {
    Ok(pb::AttachResponse {
        binding_id,
        kind: Some(kind),
    })
}

impl Fake {
    async fn on_bind(&self, bind: pb::AttachBind, tx: &Outbound) {
        self.binds.lock().unwrap().push(bind.clone());
        if self.kill.is_cancelled() {
            return;
        }
        let id = bind.binding_id;
        let redirect = self.redirect.lock().unwrap().clone();
        if let Some(owner_url) = redirect {
            let refusal = pb::BindResult {
                code: Code::Unavailable as i32,
                message: "another replica owns this session".into(),
                owner_url,
                ..Default::default()
            };
            let _ = tx.send(response(id, Kind::BindResult(refusal))).await;
            return;
        }
        let claims = SigningKey::from_bytes(KEY)
            .unwrap()
            .verify(&bind.resource_reference, 0)
            .unwrap();
        let session = claims.session_id;
        let ok = pb::BindResult {
            code: 0,
            session_id: session.clone(),
            ..Default::default()
        };
        let _ = tx.send(response(id, Kind::BindResult(ok))).await;
        for (target, defined, enabled) in [
            (session.clone(), 0b0011, self.enabled.0),
            (format!("{session}.voice"), 0b1100, self.enabled.1),
        ] {
            let state = pb::CompactState {
                target,
                defined,
                enabled,
                ..Default::default()
            };
            let _ = tx.send(response(id, Kind::State(state))).await;
        }
        self.bound.lock().unwrap().push((id, session, tx.clone()));
    }

    /// Tells every binding its session moved, to `owner_url` (empty: unknown).
    async fn moved(&self, owner_url: &str) {
        let bound = std::mem::take(&mut *self.bound.lock().unwrap());
        for (id, session_id, tx) in bound {
            let unbound = pb::Unbound {
                session_id,
                reason: pb::UnboundReason::Moved.into(),
                owner_url: owner_url.to_string(),
            };
            tx.send(response(id, Kind::Unbound(unbound))).await.unwrap();
        }
    }

    fn binds(&self) -> Vec<pb::AttachBind> {
        self.binds.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl WorkflowManager for Fake {
    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        refused()
    }

    async fn apply_update(
        &self,
        _: Request<pb::ApplyUpdateRequest>,
    ) -> Result<Response<pb::UpdateAck>, Status> {
        refused()
    }

    type PushUpdatesStream = Boxed<pb::PushUpdatesResponse>;

    async fn push_updates(
        &self,
        _: Request<Streaming<pb::ApplyUpdateRequest>>,
    ) -> Result<Response<Self::PushUpdatesStream>, Status> {
        refused()
    }

    async fn end_session(
        &self,
        _: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        refused()
    }

    async fn get_session(
        &self,
        _: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        refused()
    }

    type BindSessionStream = Boxed<pb::BindSessionResponse>;

    async fn bind_session(
        &self,
        _: Request<pb::BindSessionRequest>,
    ) -> Result<Response<Self::BindSessionStream>, Status> {
        refused()
    }

    type AttachStream = Boxed<pb::AttachResponse>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let catalogue = pb::Catalogue {
            wire_version: wfm_proto::ATTACH_WIRE_VERSION,
            names: NAMES.iter().map(|n| n.to_string()).collect(),
        };
        tx.send(response(0, Kind::Catalogue(catalogue)))
            .await
            .unwrap();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(command)) = inbound.message().await {
                if let Some(pb::attach_request::Kind::Bind(bind)) = command.kind {
                    fake.on_bind(bind, &tx).await;
                }
            }
        });
        // A killed replica's streams end, as a crashed process's connections do.
        let stream = futures_util::StreamExt::take_until(
            ReceiverStream::new(rx),
            self.kill.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    type ReceiveCommandsStream = Boxed<pb::Command>;

    async fn receive_commands(
        &self,
        _: Request<Streaming<pb::ProcessorMessage>>,
    ) -> Result<Response<Self::ReceiveCommandsStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn get_service_info(
        &self,
        _: Request<pb::GetServiceInfoRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        Ok(Response::new(pb::ServiceInfo {
            vendor: "wfm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            service_type: "WorkflowManager".into(),
        }))
    }
}

struct Replica {
    addr: SocketAddr,
    fake: Fake,
}

impl Replica {
    /// A replica on 127.0.0.1:0 whose sessions show `enabled`.
    async fn start(enabled: (u64, u64)) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Fake {
            enabled,
            redirect: Arc::default(),
            binds: Arc::default(),
            bound: Arc::default(),
            kill: CancellationToken::new(),
        };
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<WorkflowManagerServer<Fake>>().await;
        let server = Server::builder()
            .add_service(health)
            .add_service(WorkflowManagerServer::new(fake.clone()))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                fake.kill.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        Replica { addr, fake }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and ends every stream, as a crash would.
    fn kill(&self) {
        self.fake.kill.cancel();
    }
}

/// What replica A and replica B send for session `s`, and how the client renders it.
const A: (u64, u64) = (0b0001, 0b0100);
const B: (u64, u64) = (0b0010, 0b1000);

fn rendered(session: &str, state: (u64, u64)) -> Vec<String> {
    let names = |bits: u64, offset: usize| -> String {
        (offset..offset + 2)
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        format!("{session}: {}", names(state.0, 0)),
        format!("{session}.voice: {}", names(state.1, 2)),
    ]
}

fn reference(session: &str) -> String {
    SigningKey::from_bytes(KEY)
        .unwrap()
        .issue(session, "agent-1", 0, u64::MAX / 2)
}

fn config(manager_url: String) -> GatewayConfig {
    let mut config = gateway_config("127.0.0.1:1".parse().unwrap());
    config.manager_url = manager_url;
    config
}

async fn metric(gateway: &Gateway, name: &str) -> Option<String> {
    let (_, metrics) = http_get(gateway.addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")).map(str::to_string))
}

fn assert_binder_id(bind: &pb::AttachBind) {
    let (instance, binding) = bind.binder_id.split_once('/').unwrap();
    assert_eq!(instance.len(), 16, "{}", bind.binder_id);
    assert!(instance.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(binding, bind.binding_id.to_string());
}

#[tokio::test]
async fn a_bind_redirected_to_the_owner_ends_bound_there_as_if_sent_there() {
    let a = Replica::start(A).await;
    let b = Replica::start(B).await;
    *a.fake.redirect.lock().unwrap() = Some(b.url());
    // The gateway knows only A; B becomes an endpoint when A names it.
    let gateway = Gateway::start(config(a.url())).await;
    gateway.wait_ready(200).await;
    let mut ws = gateway.ws().await;

    assert_eq!(ws.bind("b", &reference("s1"), true).await, bound("b", "s1"));
    assert_eq!(ws.events(2).await, rendered("s1", B));
    ws.assert_quiet().await;

    let (at_a, at_b) = (a.fake.binds(), b.fake.binds());
    assert_eq!((at_a.len(), at_b.len()), (1, 1));
    assert_eq!(at_a[0], at_b[0], "the same bind, takeover included");
    assert!(at_b[0].takeover);
    assert_binder_id(&at_b[0]);
    assert_eq!(
        metric(&gateway, "wfm_gateway_redirects_total")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&gateway, "wfm_gateway_upstream_endpoints")
            .await
            .as_deref(),
        Some("2")
    );

    // The owner is now known: the next bind of the session goes to B directly.
    let mut again = gateway.ws().await;
    assert_eq!(
        again.bind("u", &reference("s1"), false).await,
        bound("u", "s1")
    );
    assert_eq!(a.fake.binds().len(), 1);
}

#[tokio::test]
async fn replicas_that_keep_redirecting_count_as_unavailable() {
    let a = Replica::start(A).await;
    let b = Replica::start(B).await;
    *a.fake.redirect.lock().unwrap() = Some(b.url());
    *b.fake.redirect.lock().unwrap() = Some(a.url());
    let gateway = Gateway::start(config(a.url())).await;
    gateway.wait_ready(200).await;
    let mut ws = gateway.ws().await;
    assert_eq!(
        ws.bind("b", &reference("s1"), false).await["error"]["code"],
        "serviceUnavailable"
    );
    // The first try and three redirects.
    assert_eq!(a.fake.binds().len() + b.fake.binds().len(), 4);
}

#[tokio::test]
async fn a_session_that_moves_is_rebound_at_its_new_owner_without_ending() {
    let a = Replica::start(A).await;
    let b = Replica::start(B).await;
    let gateway = Gateway::start(config(a.url())).await;
    gateway.wait_ready(200).await;
    let mut ws = gateway.ws().await;
    assert_eq!(
        ws.bind("b", &reference("s2"), false).await,
        bound("b", "s2")
    );
    assert_eq!(ws.events(2).await, rendered("s2", A));

    a.fake.moved(&b.url()).await;
    assert_eq!(ws.recv().await, service_event(false));
    assert_eq!(ws.recv().await, service_event(true));
    assert_eq!(ws.events(2).await, rendered("s2", B));
    ws.assert_quiet().await;

    let (at_a, at_b) = (a.fake.binds(), b.fake.binds());
    assert_eq!((at_a.len(), at_b.len()), (1, 1));
    assert!(!at_b[0].takeover);
    assert_eq!(at_b[0].binding_id, at_a[0].binding_id);
    assert_eq!(at_b[0].binder_id, at_a[0].binder_id);
    assert_eq!(
        ws.request("u", "unbindResource", None).await["result"],
        "success"
    );
}

#[tokio::test]
async fn a_session_that_moves_to_an_unnamed_owner_is_rebound_at_any_replica() {
    let a = Replica::start(A).await;
    let b = Replica::start(B).await;
    let gateway = Gateway::start(config(a.url())).await;
    gateway.wait_ready(200).await;
    let mut ws = gateway.ws().await;
    ws.bind("b", &reference("s3"), false).await;
    assert_eq!(ws.events(2).await, rendered("s3", A));

    // A no longer owns it and knows who does only when asked.
    *a.fake.redirect.lock().unwrap() = Some(b.url());
    a.fake.moved("").await;
    assert_eq!(ws.recv().await, service_event(false));
    assert_eq!(ws.recv().await, service_event(true));
    assert_eq!(ws.events(2).await, rendered("s3", B));
    ws.assert_quiet().await;
}

#[tokio::test]
async fn a_dead_replica_s_bindings_are_rebound_at_another_manager_url() {
    let a = Replica::start(A).await;
    let b = Replica::start(B).await;
    let gateway = Gateway::start(config(format!("{},{}", a.url(), b.url()))).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&gateway, "wfm_gateway_upstream_streams")
        .await
        .as_deref()
        != Some("4")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the streams of both never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ws = gateway.ws().await;
    assert_eq!(
        ws.bind("b", &reference("s4"), false).await,
        bound("b", "s4")
    );
    let first = ws.events(2).await;
    let (dead, alive, dead_state, alive_state) = if a.fake.binds().is_empty() {
        (&b, &a, B, A)
    } else {
        (&a, &b, A, B)
    };
    assert_eq!(first, rendered("s4", dead_state));

    dead.kill();
    assert_eq!(ws.recv().await, service_event(false));
    assert_eq!(ws.recv().await, service_event(true));
    assert_eq!(ws.events(2).await, rendered("s4", alive_state));
    ws.assert_quiet().await;
    assert_eq!(alive.fake.binds().len(), 1);
    assert!(!alive.fake.binds()[0].takeover);
    // The other replica's streams kept the gateway ready throughout.
    assert_eq!(http_get(gateway.addr, "/readyz").await.0, 200);
}

// ---------------------------------------------------------------------------------------
// Discovery from NATS

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn replicas_found_in_the_wfm_nodes_bucket_take_binds_and_leave_with_their_record() {
    use prost::Message as _;
    use wfm_proto::cluster::v1 as cluster;

    let nats = Nats::start().await;
    let b = Replica::start(B).await;
    // The only seed listens nowhere: nothing but discovery can make the gateway ready.
    let dead_seed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut config = config(format!("http://{dead_seed}"));
    config.nats_url = Some(nats.url.clone());
    let gateway = Gateway::start(config).await;
    // The bucket appears after the gateway started watching for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let nodes = nats.nodes().await;

    let record = cluster::NodeRecord {
        owner: Some(cluster::Owner {
            node_id: "node-b".into(),
            incarnation: 7,
        }),
        advertise_url: b.url(),
        version: "test".into(),
        previous_incarnation: 0,
    };
    nodes
        .put("node-b", record.encode_to_vec().into())
        .await
        .unwrap();
    gateway.wait_ready(200).await;
    assert_eq!(
        metric(&gateway, "wfm_gateway_upstream_endpoints")
            .await
            .as_deref(),
        Some("2")
    );
    let mut ws = gateway.ws().await;
    assert_eq!(
        ws.bind("b", &reference("s5"), false).await,
        bound("b", "s5")
    );
    assert_eq!(ws.events(2).await, rendered("s5", B));
    assert_eq!(b.fake.binds().len(), 1);

    // The replica leaves: its streams close, and the client hears the manager is gone.
    nodes.delete("node-b").await.unwrap();
    assert_eq!(ws.recv().await, service_event(false));
    gateway.wait_ready(503).await;
    assert_eq!(
        metric(&gateway, "wfm_gateway_upstream_endpoints")
            .await
            .as_deref(),
        Some("1")
    );

    // It comes back: the client is rebound there.
    nodes
        .put("node-b", record.encode_to_vec().into())
        .await
        .unwrap();
    assert_eq!(ws.recv().await, service_event(true));
    assert_eq!(ws.events(2).await, rendered("s5", B));
    drop(nats);
}
