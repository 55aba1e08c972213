//! SIGTERM to a real `wfm gateway` process: readiness turns false first, then bound
//! clients are told and closed, and the process exits within its grace period.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The gateway's own fixtures: a real manager, and a WebSocket client that validates every
// frame against the AsyncAPI contract.
#[path = "../../wfm-gateway/tests/common/mod.rs"]
mod common;
mod process;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use process::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_false_then_tells_clients_then_exits_within_grace() {
    let manager = Manager::start().await;
    let mut client = manager.client().await;
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let drain = Duration::from_millis(1_500);
    let child = wfm("gateway")
        .args(["--listen", &addr.to_string()])
        .args(["--manager-url", &format!("http://{}", manager.addr)])
        .args(["--drain-delay-ms", &drain.as_millis().to_string()])
        .args(["--shutdown-grace-secs", "5"])
        .env("WFM_SIGNING_KEY", std::str::from_utf8(KEY).unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start wfm gateway");
    let mut child = Reaper(child);
    let gateway = Gateway {
        addr,
        shutdown: tokio_util::sync::CancellationToken::new(),
        task: tokio::spawn(async { Ok(()) }),
    };
    gateway.wait_ready(200).await;

    let reference = create(&mut client, "term").await.resource_reference;
    let mut ws = gateway.ws().await;
    ws.bind("b", &reference, false).await;
    ws.events(2).await;

    let signalled = Instant::now();
    child.terminate();

    // 1. Readiness goes false while the client is still connected and told nothing.
    gateway.wait_ready(503).await;
    assert!(
        signalled.elapsed() < drain,
        "readiness turned false only after the drain delay"
    );
    assert_eq!(http_get(addr, "/healthz").await.0, 200, "still alive");
    // 2. Then the client is told, and closed with 1001.
    assert_eq!(ws.recv().await, unbound_event("term", "serverShutdown"));
    assert!(
        signalled.elapsed() >= drain,
        "clients were told before the drain delay"
    );
    assert_eq!(
        ws.expect_close().await,
        (1001, "server shutting down".to_string())
    );
    // 3. The binding is released on the manager, and the process exits in time.
    wait_bound(&mut client, "term", false).await;
    let deadline = signalled + Duration::from_secs(5);
    let exit = child.exit_by(deadline, "gateway").await;
    assert!(exit.success(), "exit status {exit}");
    manager.stop().await;
}

#[test]
fn a_bad_setting_stops_the_process_with_one_line_naming_it() {
    let stderr = refusal(
        wfm("gateway")
            .args(["--max-message-bytes", "12"])
            .env("WFM_SIGNING_KEY", std::str::from_utf8(KEY).unwrap()),
    );
    assert_eq!(
        stderr,
        "error: invalid setting --max-message-bytes (WFM_GATEWAY_MAX_MESSAGE_BYTES, \
         `max_message_bytes` in the config file) = \"12\": must be at least 1024"
    );

    let key_file = std::env::temp_dir().join(format!("wfm-gw-key-{}", std::process::id()));
    std::fs::write(&key_file, "too-short\n").unwrap();
    let stderr = refusal(
        wfm("gateway")
            .arg("--signing-key-file")
            .arg(&key_file)
            .env_remove("WFM_SIGNING_KEY"),
    );
    let _ = std::fs::remove_file(&key_file);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--signing-key-file (WFM_SIGNING_KEY_FILE")
            && stderr.contains("at least 32 bytes")
            && !stderr.contains("too-short"),
        "{stderr}"
    );
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_config_file() {
    let config = std::env::temp_dir().join(format!("wfm-gw-layers-{}.toml", std::process::id()));
    std::fs::write(&config, "max_message_bytes = 100\n").unwrap();
    // Each layer gives a value too small, so the error says which layer won.
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut command = wfm("gateway");
        command
            .arg("--config")
            .arg(&config)
            .env("WFM_SIGNING_KEY", std::str::from_utf8(KEY).unwrap())
            .env_remove("WFM_GATEWAY_MAX_MESSAGE_BYTES");
        if let Some(value) = env {
            command.env("WFM_GATEWAY_MAX_MESSAGE_BYTES", value);
        }
        if let Some(value) = flag {
            command.args(["--max-message-bytes", value]);
        }
        refusal(&mut command)
    };
    let expected = |value: &str| {
        format!(
            "error: invalid setting --max-message-bytes (WFM_GATEWAY_MAX_MESSAGE_BYTES, \
             `max_message_bytes` in the config file) = \"{value}\": must be at least 1024"
        )
    };
    let from_file = run(None, None);
    let from_env = run(Some("200"), None);
    let from_flag = run(Some("200"), Some("300"));
    let _ = std::fs::remove_file(&config);
    assert_eq!(from_file, expected("100"));
    assert_eq!(from_env, expected("200"));
    assert_eq!(from_flag, expected("300"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_files_limit_upgrades_beyond_the_derived_cap_get_503_and_health_answers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let manager = Manager::start().await;
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // 256 descriptors: the derived cap is 256 - 128 = 128 connections.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec \"$0\" gateway --listen {addr} --manager-url http://{}",
            manager.addr
        ))
        .arg(env!("CARGO_BIN_EXE_wfm"))
        .env("WFM_SIGNING_KEY", std::str::from_utf8(KEY).unwrap())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start wfm gateway");
    let _child = Reaper(child);
    let gateway = Gateway {
        addr,
        shutdown: tokio_util::sync::CancellationToken::new(),
        task: tokio::spawn(async { Ok(()) }),
    };
    gateway.wait_ready(200).await;

    let upgrade = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        wfm_gateway::MEDIABAR_PATH
    );
    let mut held = Vec::new();
    let (mut upgraded, mut refused) = (0, 0);
    for _ in 0..160 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut head))
            .await
            .expect("every upgrade is answered, none hangs")
            .unwrap();
        match &head[9..12] {
            b"101" => upgraded += 1,
            b"503" => refused += 1,
            other => panic!("unexpected status {:?}", String::from_utf8_lossy(other)),
        }
        held.push(tcp);
    }
    assert_eq!(upgraded, 128, "the cap derived from the limit");
    assert_eq!(refused, 32);
    assert_eq!(
        http_get(addr, "/healthz").await.0,
        200,
        "health still answers"
    );
}
