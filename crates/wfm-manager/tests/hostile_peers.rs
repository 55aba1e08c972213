//! Slow and hostile peers of the manager's gRPC port: each is cut off or bounded
//! (docs/security.md, "Slow and hostile peers").
//! - a TCP connection that sends nothing (no HTTP/2 preface) is closed;
//! - a BindSession client that never reads its stream: the outbox stays at its capacity,
//!   drops and marks the binding stale, and once the client reads again it gets every
//!   final state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use pb::InteractionState as I;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

/// Far beyond every cut-off these tests rely on: only a manager that never cuts the peer
/// off fails them, however loaded the machine is.
const GENEROUS: Duration = Duration::from_secs(60);

fn metric(manager: &Manager, series: &str) -> f64 {
    wfm_telemetry::metrics::sample(&manager.stats.registry().render(), series)
        .unwrap_or_else(|| panic!("no {series} on /metrics"))
}

fn config() -> wfm_manager::ManagerConfig {
    let mut config =
        wfm_manager::ManagerConfig::new(wfm_reference::SigningKey::from_bytes(KEY).unwrap());
    config.handshake_timeout = Duration::from_secs(1);
    config.stream_queue = 16;
    config
}

#[tokio::test]
async fn a_connection_that_sends_no_preface_is_closed() {
    let manager = Manager::start_with(config()).await;
    let mut silent = TcpStream::connect(manager.addr).await.unwrap();
    let deadline = Instant::now() + GENEROUS;
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout_at(deadline, silent.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            // The server's SETTINGS frame, sent before it has read anything.
            Ok(Ok(_)) => {}
        }
    };
    assert!(closed, "a connection that sent nothing was never closed");
    let deadline = Instant::now() + GENEROUS;
    while metric(&manager, "wfm_manager_grpc_connections") > 0.0 {
        assert!(Instant::now() < deadline, "the connection is still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The port still serves everyone else.
    let mut client = manager.client().await;
    create(&mut client, "after").await;
}

/// Target → enabled capabilities, as a binder that applied `event` would show them.
fn apply(view: &mut BTreeMap<String, Vec<String>>, event: &pb::StateUpdated) {
    let enabled = event
        .capabilities
        .iter()
        .filter(|c| c.enabled)
        .map(|c| c.name.clone())
        .collect();
    view.insert(event.target.clone(), enabled);
}

#[tokio::test]
async fn a_bind_stream_that_is_never_read_stays_at_its_capacity_and_then_catches_up() {
    let manager = Manager::start_with(config()).await;
    let mut ip = manager.client().await;
    let created = create(&mut ip, "s1").await;
    // A small HTTP/2 stream window, so that little waits in the client's own buffers and
    // the manager's outbox is what fills.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", manager.addr))
        .unwrap()
        .initial_stream_window_size(Some(4096))
        .connect()
        .await
        .unwrap();
    let mut binder = WorkflowManagerClient::new(channel);
    let mut stream = binder
        .bind_session(pb::BindSessionRequest {
            resource_reference: created.resource_reference,
            takeover: false,
        })
        .await
        .unwrap()
        .into_inner();
    wait_bound(&mut ip, "s1").await;

    // Calls come and go, so that many targets change; nobody reads the stream.
    let mut sequence = created.next_sequence;
    let deadline = Instant::now() + GENEROUS;
    let mut peak_queued = 0.0f64;
    let mut n = 0u64;
    while metric(&manager, "wfm_manager_stream_overflows_total") < 1.0 {
        assert!(Instant::now() < deadline, "the outbox never overflowed");
        for _ in 0..50 {
            let id = format!("c{}", n / 3);
            let kind = match n % 3 {
                0 => created_call(&id),
                1 => changed(&id, I::Held),
                _ => changed(&id, I::Ended),
            };
            ip.apply_update(update("s1", sequence, kind)).await.unwrap();
            sequence += 1;
            n += 1;
        }
        peak_queued = peak_queued.max(metric(&manager, "wfm_manager_stream_queued_events"));
    }
    // A few more after the overflow, which the stale binding must not queue.
    for _ in 0..300 {
        let id = format!("c{}", n / 3);
        let kind = match n % 3 {
            0 => created_call(&id),
            1 => changed(&id, I::Held),
            _ => changed(&id, I::Ended),
        };
        ip.apply_update(update("s1", sequence, kind)).await.unwrap();
        sequence += 1;
        n += 1;
        peak_queued = peak_queued.max(metric(&manager, "wfm_manager_stream_queued_events"));
    }
    // A call that is live at the end: only the resync can bring its state.
    for kind in [created_call("final"), changed("final", I::Held)] {
        ip.apply_update(update("s1", sequence, kind)).await.unwrap();
        sequence += 1;
    }
    assert!(
        peak_queued <= 16.0,
        "{peak_queued} events queued for a stream of capacity 16"
    );

    // Reading again, the binder ends with exactly the manager's view.
    let expected: BTreeMap<String, Vec<String>> = {
        let mut view = BTreeMap::new();
        let session = ip
            .get_session(pb::GetSessionRequest {
                session_id: "s1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        for event in &session.view_state {
            apply(&mut view, event);
        }
        view
    };
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + GENEROUS;
    while expected.iter().any(|(t, v)| seen.get(t) != Some(v)) {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the binder never caught up")
            .unwrap()
            .expect("the stream ended");
        if let Some(pb::bind_session_response::Kind::StateUpdated(event)) = message.kind {
            apply(&mut seen, &event);
        }
    }
}

fn created_call(id: &str) -> pb::cti_update::Kind {
    created(call(id, I::Connected))
}

async fn wait_bound(client: &mut Client, session: &str) {
    let deadline = Instant::now() + GENEROUS;
    loop {
        let bound = client
            .get_session(pb::GetSessionRequest {
                session_id: session.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .bound;
        if bound {
            return;
        }
        assert!(Instant::now() < deadline, "{session} was never bound");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
