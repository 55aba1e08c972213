//! The gateway's per-client limits: connections per address, and bind attempts per
//! connection per minute; each refusal is the documented one, and is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The status line of a WebSocket upgrade from this host, and the socket, kept open.
async fn upgrade(addr: std::net::SocketAddr) -> (String, tokio::net::TcpStream) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        wfm_gateway::MEDIABAR_PATH
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut head))
        .await
        .expect("answered")
        .unwrap();
    (String::from_utf8_lossy(&head[9..12]).into_owned(), tcp)
}

#[tokio::test]
async fn connections_beyond_max_connections_get_503_and_health_still_answers() {
    let stack = Stack::start_with(|config| config.max_connections = 2).await;
    let addr = stack.gateway.addr;
    let (first, _a) = upgrade(addr).await;
    let (second, _b) = upgrade(addr).await;
    let (third, _c) = upgrade(addr).await;
    assert_eq!(
        [first.as_str(), second.as_str(), third.as_str()],
        ["101", "101", "503"]
    );
    // Probes and scrapes are not WebSocket connections: they are still answered.
    let (health, _) = http_get(addr, "/healthz").await;
    assert_eq!(health, 200);
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("wfm_gateway_connections_refused_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_address_gets_at_most_its_share_of_connections() {
    let stack = Stack::start_with(|config| config.max_connections_per_address = 2).await;
    let addr = stack.gateway.addr;
    let (first, _a) = upgrade(addr).await;
    let (second, b) = upgrade(addr).await;
    let (third, _c) = upgrade(addr).await;
    assert_eq!(
        [first.as_str(), second.as_str(), third.as_str()],
        ["101", "101", "503"]
    );
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("wfm_gateway_connections_per_address_refused_total 1"),
        "{metrics}"
    );
    // A place is freed when a connection closes.
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, socket) = upgrade(addr).await;
        if status == "101" {
            drop(socket);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bind_attempts_beyond_the_per_minute_budget_are_rate_limited() {
    let mut stack = Stack::start_with(|config| config.max_binds_per_minute = 2).await;
    let reference = stack.session("s1").await;
    let mut ws = stack.ws().await;
    // Two attempts with a forged reference spend the budget...
    for id in ["a", "b"] {
        let refused = ws.bind(id, "forged", false).await;
        assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
    }
    // ...so even a genuine reference is refused now, with the documented error.
    assert_eq!(
        ws.bind("c", &reference, false).await,
        failure(
            "c",
            "bindResource",
            "rateLimited",
            "bind attempts are limited to 2 a minute on one connection"
        )
    );
    // Another connection has its own budget.
    let mut other = stack.ws().await;
    let bound = other.bind("d", &reference, false).await;
    assert_eq!(bound, common::bound("d", "s1"));
    let (_, metrics) = http_get(stack.gateway.addr, "/metrics").await;
    assert!(
        metrics.contains("wfm_gateway_binds_refused_total 1"),
        "{metrics}"
    );
}
