//! The gateway over TLS, end to end with real servers on 127.0.0.1:0: it attaches to a
//! manager that requires client certificates, with the `gateway` role, and serves
//! `wss://` to a MediaBar client; plaintext is refused on its TLS port, and a replaced
//! certificate reaches new connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tonic::transport::Endpoint;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_tls::testing::{TestCa, TestDir};
use wfm_tls::{ClientFiles, ClientTls, RoleMap, ServerFiles, ServerTls};

use common::{Gateway, Manager, Ws, bound, create, gateway_config, manager_config};

const DOMAIN: &str = "spiffe://wfm.test";

struct Fixture {
    ca: TestCa,
    dir: TestDir,
    manager: Manager,
    gateway: Gateway,
    stats: Arc<wfm_gateway::GatewayStats>,
}

/// A manager requiring client certificates, and a gateway reaching it with its own.
async fn start() -> Fixture {
    let ca = TestCa::new("wfm test ca");
    let dir = TestDir::new("gateway");
    let ca_path = dir.write("ca.crt", ca.pem());
    let (cert, key) = dir.write_cert(
        "manager",
        &ca.issue(
            &["localhost", "127.0.0.1"],
            Some(&format!("{DOMAIN}/manager")),
        ),
    );
    let mut config = manager_config();
    config.tls = Some(
        ServerTls::load(
            ServerFiles {
                cert,
                key,
                client_ca: Some(ca_path.clone()),
            },
            &[b"h2"],
        )
        .unwrap(),
    );
    config.roles = RoleMap::parse(&[
        format!("{DOMAIN}/ip=ip"),
        format!("{DOMAIN}/gateway/*=gateway"),
    ])
    .unwrap();
    let manager = Manager::start_with(config).await;

    let mut config = gateway_config(manager.addr);
    config.manager_url = format!("https://127.0.0.1:{}", manager.addr.port());
    let identity = dir.write_cert(
        "gateway-client",
        &ca.issue(&[], Some(&format!("{DOMAIN}/gateway/1"))),
    );
    config.manager_tls = Some(
        ClientTls::load(ClientFiles {
            ca: ca_path,
            identity: Some(identity),
        })
        .unwrap(),
    );
    let (cert, key) = dir.write_cert("gateway", &ca.issue(&["localhost"], None));
    config.tls = Some(
        ServerTls::load(
            ServerFiles {
                cert,
                key,
                client_ca: None,
            },
            &[b"http/1.1"],
        )
        .unwrap(),
    );
    config.tls_poll = Duration::from_millis(100);
    let stats = Arc::clone(&config.stats);
    let gateway = Gateway::start(config).await;
    Fixture {
        ca,
        dir,
        manager,
        gateway,
        stats,
    }
}

impl Fixture {
    /// The Interaction Processor's client, with an `ip` certificate.
    fn ip(&self) -> common::Client {
        let identity = self
            .dir
            .write_cert("ip", &self.ca.issue(&[], Some(&format!("{DOMAIN}/ip"))));
        let tls = ClientTls::load(ClientFiles {
            ca: self.dir.path().join("ca.crt"),
            identity: Some(identity),
        })
        .unwrap();
        let channel =
            Endpoint::from_shared(format!("https://127.0.0.1:{}", self.manager.addr.port()))
                .unwrap()
                .connect_with_connector_lazy(wfm_tls::Connector::new(
                    Some(tls),
                    Duration::from_secs(5),
                ));
        WorkflowManagerClient::new(channel)
    }

    /// A TLS connection to the gateway, trusting the test CA.
    async fn tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in wfm_tls::pem::certificates(&self.dir.path().join("ca.crt")).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(self.gateway.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// A MediaBar client over `wss://`.
    async fn wss(&self) -> Ws<tokio_rustls::client::TlsStream<TcpStream>> {
        let url = format!("wss://localhost:{}/mediabar/v1", self.gateway.addr.port());
        let (stream, _) = tokio_tungstenite::client_async(url, self.tls().await)
            .await
            .unwrap();
        Ws::over(stream)
    }

    /// The gateway's leaf certificate as a new connection is served it.
    async fn served(&self) -> Vec<u8> {
        let stream = self.tls().await;
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }
}

#[tokio::test]
async fn the_gateway_binds_through_mutual_tls_and_serves_wss() {
    let fixture = start().await;
    let mut ip = fixture.ip();
    let created = create(&mut ip, "s1").await;
    // Ready means an Attach stream is up: the manager accepted the gateway's certificate
    // and its role allows Attach. /readyz is served over TLS too, so poll by WebSocket.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ws = loop {
        let mut ws = fixture.wss().await;
        let response = ws.bind("b", &created.resource_reference, false).await;
        if response == bound("b", "s1") {
            break ws;
        }
        assert!(
            Instant::now() < deadline,
            "never bound over mutual TLS: {response}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        ws.events(2).await,
        ["s1: session.login", "s1.voice: channel.login"]
    );

    // Plaintext on the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut plain = TcpStream::connect(fixture.gateway.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext was answered: {answer:?}"
    );
}

#[tokio::test]
async fn a_replaced_gateway_certificate_reaches_new_connections() {
    let fixture = start().await;
    let before = fixture.served().await;
    let renewed = fixture.ca.issue(&["localhost"], None);
    fixture.dir.write_cert("gateway", &renewed);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = fixture.served().await;
        if now != before {
            use rustls::pki_types::pem::PemObject as _;
            let expected =
                rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert.as_bytes()).unwrap();
            assert_eq!(now, expected.to_vec());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fixture.stats.tls_reloads() >= 1);
}
