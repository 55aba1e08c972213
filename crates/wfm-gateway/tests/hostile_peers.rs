//! Slow and hostile peers of the gateway: each is cut off, and what it can make the gateway
//! hold is bounded (docs/security.md, "Slow and hostile peers").
//! - a TCP connection that sends nothing is closed by the header read deadline;
//! - a slowloris upgrade (headers a byte at a time) is closed by the same deadline;
//! - a WebSocket client that never reads: its queue stays bounded by conflation, and the
//!   unanswered ping closes it, releasing its binding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pb::InteractionState as I;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wfm_gateway::GatewayStats;
use wfm_proto::v1 as pb;
use wfm_telemetry::metrics::Registry;

/// Far beyond every cut-off these tests configure: only a gateway that never cuts the peer
/// off fails them, however loaded the machine is.
const GENEROUS: Duration = Duration::from_secs(60);

/// Reads (and discards) until the peer closes; `true` when it did before `within`. A reset
/// counts as closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn metric(registry: &Registry, series: &str) -> f64 {
    wfm_telemetry::metrics::sample(&registry.render(), series)
        .unwrap_or_else(|| panic!("no {series} in the gateway's metrics"))
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_by_the_header_deadline() {
    let stack =
        Stack::start_with(|config| config.header_read_timeout = Duration::from_secs(1)).await;
    let mut silent = TcpStream::connect(stack.gateway.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, GENEROUS).await,
        "a silent connection was never closed"
    );
    // The gateway still serves everyone else.
    assert_eq!(http_get(stack.gateway.addr, "/healthz").await.0, 200);
}

#[tokio::test]
async fn a_slowloris_upgrade_is_closed_before_its_headers_end() {
    let stack =
        Stack::start_with(|config| config.header_read_timeout = Duration::from_secs(1)).await;
    let mut slow = TcpStream::connect(stack.gateway.addr).await.unwrap();
    let head = format!(
        "GET /mediabar/v1 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        stack.gateway.addr
    );
    // The request line and some headers, then an endless header a byte at a time: the
    // headers never end, so only the deadline can stop it.
    let dribble = head
        .bytes()
        .chain(b"X-Pad: ".iter().copied())
        .chain(std::iter::repeat(b'a'));
    let deadline = Instant::now() + GENEROUS;
    let mut cut_off = false;
    for byte in dribble {
        if Instant::now() >= deadline {
            break;
        }
        if slow.write_all(&[byte]).await.is_err() {
            cut_off = true;
            break;
        }
        // A closed connection answers the next write with a reset, or reads as closed.
        if closed_within(&mut slow, Duration::from_millis(100)).await {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a slowloris upgrade was never cut off");
    assert_eq!(http_get(stack.gateway.addr, "/healthz").await.0, 200);
}

#[tokio::test]
async fn a_client_that_never_reads_stays_bounded_and_is_then_closed() {
    let registry = Registry::new();
    let stats = Arc::new(GatewayStats::new(&registry));
    let mut stack = Stack::start_with(|config| {
        config.stats = Arc::clone(&stats);
        // Pings go out soon; the pong deadline leaves time to fill the queue first.
        config.ping_interval = Duration::from_secs(1);
        config.pong_timeout = Duration::from_secs(30);
    })
    .await;
    let reference = stack.session("s1").await;
    let mut ws = Ws::connect(stack.gateway.addr, Some(4096)).await;
    let bound = ws.bind("b1", &reference, false).await;
    assert_eq!(bound["result"], json!("success"), "{bound}");
    stack
        .apply("s1", 1, created(call("c1", I::Connected)))
        .await;
    // From here on the client reads nothing, not even pings.

    // Far more events than any queue bound: a call held and retrieved over and over.
    let mut sequence = 2;
    let mut peak_queued = 0.0f64;
    let deadline = Instant::now() + GENEROUS;
    while metric(&registry, "wfm_gateway_events_conflated_total") < 500.0 {
        assert!(Instant::now() < deadline, "events were never conflated");
        for _ in 0..100 {
            let state = if sequence % 2 == 0 {
                I::Held
            } else {
                I::Connected
            };
            stack.apply("s1", sequence, changed("c1", state)).await;
            sequence += 1;
        }
        peak_queued = peak_queued.max(metric(&registry, "wfm_gateway_queued_messages"));
    }
    // The session has three targets (session, channel, call): conflated, at most one
    // state each waits, plus the few control replies of the bind.
    assert!(
        peak_queued <= 8.0,
        "{peak_queued} messages queued for one client"
    );

    // The unanswered ping closes it, and its binding is released for the agent's next tab.
    let deadline = Instant::now() + GENEROUS;
    while metric(&registry, "wfm_gateway_connections") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the client that never reads was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.wait_bound("s1", false).await;
    drop(ws);
}

/// The idle cut-off is for connections that never bind; it must not catch an honest
/// client whose session ends after it was bound longer than the idle timeout.
#[tokio::test]
async fn a_client_bound_longer_than_the_idle_timeout_may_bind_again_when_its_session_ends() {
    let mut stack = Stack::start_with(|config| config.idle_timeout = Duration::from_secs(1)).await;
    let first = stack.session("s1").await;
    let mut ws = stack.ws().await;
    let bound = ws.bind("b1", &first, false).await;
    assert_eq!(bound["result"], json!("success"), "{bound}");
    // Bound, and quiet, for longer than the idle timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack
        .client
        .end_session(pb::EndSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap();
    let second = stack.session("s2").await;
    let deadline = Instant::now() + GENEROUS;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.recv())
            .await
            .expect("no resourceUnbound");
        if frame["event"] == json!("resourceUnbound") {
            break;
        }
    }
    let again = ws.bind("b2", &second, false).await;
    assert_eq!(again["result"], json!("success"), "{again}");
}
