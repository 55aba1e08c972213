//! A gateway facing a manager of another Attach wire version refuses its streams: it never
//! turns ready, carries no binding on them, and keeps naming its own version when it
//! retries. The manager's side of the same check is in the manager's binding tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_proto::v1::workflow_manager_server::{WorkflowManager, WorkflowManagerServer};

type Boxed<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

/// A manager that answers health and service information, and opens every `Attach`
/// stream with `first`, as a manager of another wire version would.
#[derive(Clone)]
struct OtherVersion {
    first: pb::AttachResponse,
    /// The `wfm-attach-wire` value of every `Attach` call.
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

fn refused<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not part of this test"))
}

#[tonic::async_trait]
impl WorkflowManager for OtherVersion {
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
        let wire = wfm_proto::attach_wire(request.metadata()).map(str::to_string);
        self.seen.lock().unwrap().push(wire);
        let first = futures_util::stream::iter([Ok(self.first.clone())]);
        // The stream then stays open, as a live manager's would.
        let stream = futures_util::StreamExt::chain(first, futures_util::stream::pending());
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
            vendor: "other".into(),
            version: "0.0.1".into(),
            service_type: "WorkflowManager".into(),
        }))
    }
}

/// Starts the manager of another version; returns its address and what it saw.
async fn other_manager(first: pb::AttachResponse) -> (std::net::SocketAddr, OtherVersion) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = OtherVersion {
        first,
        seen: Arc::default(),
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<WorkflowManagerServer<OtherVersion>>()
        .await;
    let server = Server::builder()
        .add_service(health)
        .add_service(WorkflowManagerServer::new(service.clone()));
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    (addr, service)
}

async fn assert_refused(first: pb::AttachResponse) {
    let (addr, manager) = other_manager(first).await;
    let gateway = Gateway::start(gateway_config(addr)).await;
    // The gateway opens a stream, refuses it, and retries with its own version.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while manager.seen.lock().unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway stopped retrying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = wfm_proto::ATTACH_WIRE_VERSION.to_string();
    assert!(
        manager
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|wire| wire.as_deref() == Some(want.as_str())),
        "{:?}",
        manager.seen.lock().unwrap()
    );
    assert_eq!(http_get(gateway.addr, "/readyz").await.0, 503);
    let (_, metrics) = http_get(gateway.addr, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "wfm_gateway_upstream_streams 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_manager_that_opens_without_a_catalogue_is_refused() {
    // Wire version 1 answered binds straight away, with no catalogue first.
    assert_refused(pb::AttachResponse {
        binding_id: 1,
        kind: Some(Kind::BindResult(pb::BindResult {
            code: 0,
            message: String::new(),
            session_id: "s1".into(),
            ..Default::default()
        })),
    })
    .await;
}

#[tokio::test]
async fn a_manager_of_a_newer_wire_version_is_refused() {
    assert_refused(pb::AttachResponse {
        binding_id: 0,
        kind: Some(Kind::Catalogue(pb::Catalogue {
            wire_version: wfm_proto::ATTACH_WIRE_VERSION + 1,
            names: vec!["session.login".into()],
        })),
    })
    .await;
}
