//! Transport security with real servers on 127.0.0.1:0 and real TLS: plaintext and
//! untrusted or missing client certificates are refused, each role makes only its calls
//! (PERMISSION_DENIED naming the role needed), and certificates reload from disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Endpoint;
use wfm_manager::ManagerConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_reference::SigningKey;
use wfm_tls::testing::{TestCa, TestDir};
use wfm_tls::{ClientFiles, ClientTls, RoleMap, ServerFiles, ServerTls};

use common::{KEY, Manager, create_request};

const DOMAIN: &str = "spiffe://wfm.test";

struct Fixture {
    ca: TestCa,
    dir: TestDir,
    manager: Manager,
}

/// A manager with mutual TLS, the roles of docs/security.md's example, polling its files
/// every 100 ms.
async fn start() -> Fixture {
    let ca = TestCa::new("wfm test ca");
    let dir = TestDir::new("manager");
    let ca_path = dir.write("ca.crt", ca.pem());
    let server = ca.issue(
        &["localhost", "127.0.0.1"],
        Some(&format!("{DOMAIN}/manager")),
    );
    let (cert, key) = dir.write_cert("server", &server);
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap());
    config.tls = Some(
        ServerTls::load(
            ServerFiles {
                cert,
                key,
                client_ca: Some(ca_path),
            },
            &[b"h2"],
        )
        .unwrap(),
    );
    config.roles = RoleMap::parse(&[
        format!("{DOMAIN}/ip=ip"),
        format!("{DOMAIN}/gateway/*=gateway"),
        format!("{DOMAIN}/ops=ops"),
        format!("{DOMAIN}/manager=peer"),
    ])
    .unwrap();
    config.tls_poll = Duration::from_millis(100);
    config.handshake_timeout = Duration::from_secs(2);
    let manager = Manager::start_with(config).await;
    Fixture { ca, dir, manager }
}

impl Fixture {
    /// A client presenting a certificate of `ca` for `uri` (none if `None`).
    fn client_of(&self, ca: &TestCa, uri: Option<&str>) -> common::Client {
        let identity = uri.map(|uri| {
            let stem = format!("client-{}", uri.replace([':', '/'], "_"));
            self.dir.write_cert(&stem, &ca.issue(&[], Some(uri)))
        });
        let tls = ClientTls::load(ClientFiles {
            ca: self.dir.path().join("ca.crt"),
            identity,
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

    fn client(&self, uri: &str) -> common::Client {
        self.client_of(&self.ca, Some(uri))
    }
}

async fn info(client: &mut common::Client) -> Result<pb::ServiceInfo, tonic::Status> {
    client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn plaintext_and_missing_or_untrusted_client_certificates_are_refused() {
    let fixture = start().await;
    let mut trusted = fixture.client(&format!("{DOMAIN}/ops"));
    assert_eq!(
        info(&mut trusted).await.unwrap().service_type,
        "WorkflowManager"
    );

    let plaintext = Endpoint::from_shared(format!("http://{}", fixture.manager.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect_lazy();
    let error = info(&mut WorkflowManagerClient::new(plaintext))
        .await
        .unwrap_err();
    assert_ne!(error.code(), Code::Ok);

    let mut anonymous = fixture.client_of(&fixture.ca, None);
    assert!(info(&mut anonymous).await.is_err(), "no client certificate");
    let other = TestCa::new("another ca");
    let mut untrusted = fixture.client_of(&other, Some(&format!("{DOMAIN}/ip")));
    assert!(
        info(&mut untrusted).await.is_err(),
        "a certificate of another CA"
    );
    let metrics = fixture.manager.stats.registry().render();
    let failures =
        wfm_telemetry::metrics::sample(&metrics, "wfm_manager_tls_handshake_failures_total");
    assert!(failures >= Some(1.0), "{metrics}");
}

#[tokio::test]
async fn each_role_makes_only_its_calls_and_a_refusal_names_the_role_needed() {
    let fixture = start().await;
    let mut ip = fixture.client(&format!("{DOMAIN}/ip"));
    let mut gateway = fixture.client(&format!("{DOMAIN}/gateway/eu-1"));
    let mut ops = fixture.client(&format!("{DOMAIN}/ops"));
    let mut stranger = fixture.client(&format!("{DOMAIN}/stranger"));
    let mut peer = fixture.client(&format!("{DOMAIN}/manager"));

    // ip: creates, updates and ends; may not read or bind.
    let created = ip
        .create_session(create_request("s1", "agent-1"))
        .await
        .unwrap()
        .into_inner();
    let denied = ip
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        format!("this call needs the `ops` role; the client certificate {DOMAIN}/ip has `ip`")
    );
    let bind = ip
        .bind_session(pb::BindSessionRequest {
            resource_reference: created.resource_reference.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bind.code(), Code::PermissionDenied);
    assert!(
        bind.message()
            .starts_with("this call needs the `gateway` role"),
        "{bind:?}"
    );

    // gateway: binds; may not create.
    let denied = gateway
        .create_session(create_request("s2", "agent-2"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        format!(
            "this call needs the `ip` role; the client certificate {DOMAIN}/gateway/eu-1 has `gateway`"
        )
    );
    let mut bound = gateway
        .bind_session(pb::BindSessionRequest {
            resource_reference: created.resource_reference.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        common::next(&mut bound).await.is_some(),
        "the bind streams its state"
    );

    // ops: reads; may not end.
    let session = ops
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.agent_id, "agent-1");
    let denied = ops
        .end_session(pb::EndSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // No role: only the open calls (service info, health).
    assert!(info(&mut stranger).await.is_ok());
    let denied = stranger
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        denied.message(),
        format!(
            "this call needs the `ops` role; the client certificate {DOMAIN}/stranger has no role"
        )
    );

    // peer: anything.
    peer.get_session(pb::GetSessionRequest {
        session_id: "s1".into(),
    })
    .await
    .unwrap();
    peer.end_session(pb::EndSessionRequest {
        session_id: "s1".into(),
    })
    .await
    .unwrap();
    let metrics = fixture.manager.stats.registry().render();
    let denied = wfm_telemetry::metrics::sample(&metrics, "wfm_manager_calls_denied_total");
    assert_eq!(denied, Some(5.0), "five calls refused above");
}

/// The leaf certificate a new TLS connection to `port` is served.
async fn served_certificate(fixture: &Fixture, uri: &str) -> Vec<u8> {
    let stem = "probe";
    let (cert, key) = fixture
        .dir
        .write_cert(stem, &fixture.ca.issue(&[], Some(uri)));
    let tls = ClientTls::load(ClientFiles {
        ca: fixture.dir.path().join("ca.crt"),
        identity: Some((cert, key)),
    })
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(fixture.manager.addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.current())
        .connect(name, tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_and_a_bad_one_is_refused() {
    let fixture = start().await;
    let uri = format!("{DOMAIN}/ops");
    let mut open = fixture.client(&uri);
    assert!(info(&mut open).await.is_ok());
    let before = served_certificate(&fixture, &uri).await;

    let renewed = fixture.ca.issue(
        &["localhost", "127.0.0.1"],
        Some(&format!("{DOMAIN}/manager")),
    );
    fixture.dir.write_cert("server", &renewed);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = served_certificate(&fixture, &uri).await;
        if now == der(&renewed.cert) {
            break;
        }
        assert_eq!(now, before, "neither the old nor the new certificate");
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fixture.manager.stats.tls_reloads() >= 1);
    // The connection opened before the reload carries on.
    assert!(info(&mut open).await.is_ok());

    // A key that is no key: refused, counted, and the renewed certificate stays.
    fixture.dir.write("server.key", "not a key\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fixture.manager.stats.tls_reload_failures() == 0 {
        assert!(Instant::now() < deadline, "the bad key was never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_certificate(&fixture, &uri).await, der(&renewed.cert));
    let metrics = fixture.manager.stats.registry().render();
    let failures =
        wfm_telemetry::metrics::sample(&metrics, "wfm_manager_tls_reload_failures_total");
    assert!(failures >= Some(1.0), "{metrics}");
}
