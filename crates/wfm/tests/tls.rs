//! Transport security of the real binary: plaintext off loopback is refused at start in
//! one line naming `--insecure-plaintext` (and allowed with it), and SIGHUP reloads the
//! certificate, which new connections then see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use std::time::{Duration, Instant};

use process::{Reaper, free_port, refusal, wfm};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use wfm_tls::testing::{TestCa, TestDir};
use wfm_tls::{ClientFiles, ClientTls};

const KEY: &str = "0123456789abcdef0123456789abcdef-tls-test";

fn without_tls_env(command: &mut std::process::Command) -> &mut std::process::Command {
    for env in [
        "WFM_INSECURE_PLAINTEXT",
        "WFM_TLS_CERT",
        "WFM_TLS_KEY",
        "WFM_CLIENT_CA",
    ] {
        command.env_remove(env);
    }
    command
}

#[test]
fn plaintext_off_loopback_is_refused_at_start_naming_the_flag() {
    let flag = "error: invalid setting --insecure-plaintext (WFM_INSECURE_PLAINTEXT, \
                `insecure_plaintext` in the config file) = \"false\": needed to serve plaintext on";
    let manager = refusal(without_tls_env(&mut wfm("manager")).args(["--listen", "0.0.0.0:50999"]));
    assert_eq!(manager.lines().count(), 1, "{manager}");
    assert!(
        manager.starts_with(&format!(
            "{flag} 0.0.0.0:50999 (`listen`), which is not loopback"
        )),
        "{manager}"
    );
    let metrics =
        refusal(without_tls_env(&mut wfm("manager")).args(["--metrics-listen", "0.0.0.0:9999"]));
    assert!(
        metrics.starts_with(&format!("{flag} 0.0.0.0:9999 (`metrics_listen`)")),
        "{metrics}"
    );
    let gateway = refusal(without_tls_env(&mut wfm("gateway")).args([
        "--listen",
        "[::]:8999",
        "--signing-key",
        KEY,
    ]));
    assert_eq!(gateway.lines().count(), 1, "{gateway}");
    assert!(
        gateway.starts_with(&format!("{flag} [::]:8999 (`listen`)")),
        "{gateway}"
    );
}

async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the {what} never listened on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn insecure_plaintext_from_the_environment_allows_a_wildcard_listen() {
    let (port, metrics) = (free_port(), free_port());
    let mut command = wfm("manager");
    without_tls_env(&mut command)
        .env("WFM_INSECURE_PLAINTEXT", "true")
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = Reaper(command.spawn().unwrap());
    wait_listening(port, "manager").await;
    child.terminate();
    let exit = child
        .exit_by(Instant::now() + Duration::from_secs(10), "manager")
        .await;
    assert!(exit.success(), "{exit}");
}

/// The leaf certificate a new TLS connection to `port` is served.
async fn served(tls: &ClientTls, port: u16) -> Option<Vec<u8>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.current())
        .connect(name, tcp)
        .await
        .ok()?;
    Some(stream.get_ref().1.peer_certificates()?[0].to_vec())
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn metrics(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections() {
    let ca = TestCa::new("wfm binary test ca");
    let dir = TestDir::new("binary");
    let ca_path = dir.write("ca.crt", ca.pem());
    let (cert, key) = dir.write_cert("server", &ca.issue(&["localhost"], None));
    let (port, metrics_port) = (free_port(), free_port());
    let mut command = wfm("manager");
    without_tls_env(&mut command)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        // An hour: only SIGHUP can explain a reload within this test.
        .args(["--tls-poll-ms", "3600000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = Reaper(command.spawn().unwrap());
    let client = ClientTls::load(ClientFiles {
        ca: ca_path,
        identity: None,
    })
    .unwrap();
    wait_listening(metrics_port, "manager's metrics listener").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        if let Some(cert) = served(&client, port).await {
            break cert;
        }
        assert!(Instant::now() < deadline, "no TLS on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let renewed = ca.issue(&["localhost"], None);
    dir.write_cert("server", &renewed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        served(&client, port).await,
        Some(before),
        "reloaded before SIGHUP"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while served(&client, port).await != Some(der(&renewed.cert)) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics(metrics_port).await;
    assert!(
        text.contains("\nwfm_manager_tls_reloads_total 1\n"),
        "{text}"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "SIGHUP stopped the process"
    );
    child.terminate();
    let exit = child
        .exit_by(Instant::now() + Duration::from_secs(10), "manager")
        .await;
    assert!(exit.success(), "{exit}");
}
