//! Cluster mode in process: replicas sharing one JetStream server answer any session with
//! the same results and errors as its owner. (Crashes, pauses and rolling restarts are
//! tested with real processes in `crates/wfm/tests/cluster_*.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::nats::Nats;
use common::{KEY, Manager, agent, create_request, update};
use tokio::net::TcpListener;
use tonic::Code;
use wfm_manager::{ClusterConfig, ManagerConfig};
use wfm_proto::v1 as pb;
use wfm_reference::SigningKey;

async fn replica(nats: &Nats, node: &str) -> Manager {
    let (listener, config) = replica_config(nats, node, Default::default()).await;
    Manager::start_on(listener, config).await
}

async fn replica_config(
    nats: &Nats,
    node: &str,
    security: wfm_tls::NatsSecurity,
) -> (TcpListener, ManagerConfig) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap());
    config.cluster = Some(ClusterConfig {
        nats_url: nats.url(),
        node_id: node.to_string(),
        advertise_url: format!("http://{addr}"),
        lease_ttl: Duration::from_millis(2000),
        replicas: 1,
        nats: security,
    });
    (listener, config)
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_replica_reaches_a_tls_only_nats_with_its_ca_and_not_without() {
    use wfm_tls::testing::{TestCa, TestDir};
    let ca = TestCa::new("wfm test nats ca");
    let dir = TestDir::new("nats-tls");
    let (cert, key) = dir.write_cert("nats", &ca.issue(&["localhost", "127.0.0.1"], None));
    let ca_file = dir.write("nats-ca.pem", ca.pem());
    let nats = Nats::start_tls(&cert, &key);

    let trusted = wfm_tls::NatsSecurity {
        creds: None,
        ca: Some(ca_file),
    };
    let (listener, config) = replica_config(&nats, "a", trusted).await;
    let manager = Manager::start_on(listener, config).await;
    let mut client = manager.client().await;
    let created = client
        .create_session(create_request("s1", "agent-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.next_sequence, 1,
        "persisted through the TLS connection"
    );

    // Without the CA the server's certificate is not trusted: the replica does not start,
    // and says why, rather than serving sessions it cannot persist.
    let (listener, config) = replica_config(&nats, "b", Default::default()).await;
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        wfm_manager::serve(listener, config, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("a replica that cannot reach NATS gives up at start");
    let error = stopped
        .expect_err("started without trusting the NATS server")
        .to_string();
    assert!(
        error.contains("cannot connect to NATS") && error.contains("certificate"),
        "{error}"
    );
}

fn expected_sequence(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get(wfm_manager::error::EXPECTED_SEQUENCE_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn every_call_works_at_a_replica_that_does_not_own_the_session() {
    let nats = Nats::start();
    let owner = replica(&nats, "a").await;
    let other = replica(&nats, "b").await;
    let (mut at_owner, mut at_other) = (owner.client().await, other.client().await);

    let created = at_owner
        .create_session(create_request("s1", "agent-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.next_sequence, 1);

    // The same agent asking the other replica gets the same session re-issued.
    let again = at_other
        .create_session(create_request("s1", "agent-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.next_sequence, 1);
    assert_eq!(again.view_state, created.view_state);
    // Another agent is refused the same way by either.
    let refused = at_other
        .create_session(create_request("s1", "agent-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);

    let ack = at_other
        .apply_update(update("s1", 1, agent(pb::AgentState::NotReady)))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    let repeat = at_other
        .apply_update(update("s1", 1, agent(pb::AgentState::NotReady)))
        .await
        .unwrap()
        .into_inner();
    assert!(repeat.duplicate);

    let gap = at_other
        .apply_update(update("s1", 5, agent(pb::AgentState::Ready)))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition);
    assert_eq!(expected_sequence(&gap).as_deref(), Some("2"));
    let gap_at_owner = at_owner
        .apply_update(update("s1", 5, agent(pb::AgentState::Ready)))
        .await
        .unwrap_err();
    assert_eq!(gap_at_owner.message(), gap.message());

    let get = |session: &str| pb::GetSessionRequest {
        session_id: session.into(),
    };
    let seen_there = at_other.get_session(get("s1")).await.unwrap().into_inner();
    let seen_here = at_owner.get_session(get("s1")).await.unwrap().into_inner();
    assert_eq!(seen_there, seen_here);
    assert_eq!(seen_there.last_sequence, 1);

    let unknown = at_other.get_session(get("nobody")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    at_other
        .end_session(pb::EndSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap();
    let ended = at_owner.get_session(get("s1")).await.unwrap_err();
    assert_eq!(ended.code(), Code::NotFound);
    let ended = at_other.get_session(get("s1")).await.unwrap_err();
    assert_eq!(ended.code(), Code::NotFound);
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_replica_shut_down_hands_its_sessions_over_with_nothing_lost() {
    let nats = Nats::start();
    let leaving = replica(&nats, "a").await;
    let staying = replica(&nats, "b").await;
    let mut at_leaving = leaving.client().await;
    at_leaving
        .create_session(create_request("s1", "agent-1"))
        .await
        .unwrap();
    for (sequence, state) in [(1, pb::AgentState::NotReady), (2, pb::AgentState::Ready)] {
        at_leaving
            .apply_update(update("s1", sequence, agent(state)))
            .await
            .unwrap();
    }
    // Straight away: the write-behind persist may not have happened yet; the handoff
    // writes the final state itself.
    leaving.shutdown.cancel();
    leaving.task.await.unwrap().unwrap();
    let metrics = leaving.stats.registry().render();
    assert!(
        metrics.contains("wfm_manager_cluster_handoffs_total 1"),
        "{metrics}"
    );

    let mut at_staying = staying.client().await;
    let seen = at_staying
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.last_sequence, 2, "no update lost, so no gap");
    let next = at_staying
        .apply_update(update("s1", 3, agent(pb::AgentState::NotReady)))
        .await
        .unwrap()
        .into_inner();
    assert!(!next.duplicate);
}

/// A fake NATS server that announces `version` and answers pings, as an old server would.
async fn old_nats(version: &'static str) -> String {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"old\",\"server_name\":\"old\",\"version\":\"{version}\",\"proto\":1,\"headers\":true,\"max_payload\":1048576}}\r\n"
                );
                if write.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && write.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_replica_refuses_to_start_against_a_nats_server_older_than_2_11() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap());
    config.cluster = Some(ClusterConfig {
        nats_url: old_nats("2.9.10").await,
        node_id: "a".into(),
        advertise_url: "http://127.0.0.1:1".into(),
        lease_ttl: Duration::from_millis(2000),
        replicas: 1,
        nats: Default::default(),
    });
    let served = wfm_manager::serve(listener, config, Default::default()).await;
    let error = served.unwrap_err().to_string();
    assert!(
        error.contains("NATS server 2.9.10 is older than 2.11, the minimum for cluster mode"),
        "{error}"
    );
}

/// A replica with mutual TLS: it serves and forwards with the same certificate, whose URI
/// SAN is the `peer` role, and trusts the one CA for clients and peers alike.
async fn tls_replica(
    nats: &Nats,
    node: &str,
    dir: &wfm_tls::testing::TestDir,
    roles: &wfm_tls::RoleMap,
) -> Manager {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cert, key, ca) = (
        dir.path().join("replica.crt"),
        dir.path().join("replica.key"),
        dir.path().join("ca.crt"),
    );
    let mut config = ManagerConfig::new(SigningKey::from_bytes(KEY).unwrap());
    config.tls = Some(
        wfm_tls::ServerTls::load(
            wfm_tls::ServerFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: Some(ca.clone()),
            },
            &[b"h2"],
        )
        .unwrap(),
    );
    config.roles = roles.clone();
    config.peer_tls = Some(
        wfm_tls::ClientTls::load(wfm_tls::ClientFiles {
            ca,
            identity: Some((cert, key)),
        })
        .unwrap(),
    );
    config.cluster = Some(ClusterConfig {
        nats_url: nats.url(),
        node_id: node.to_string(),
        advertise_url: format!("https://127.0.0.1:{}", addr.port()),
        lease_ttl: Duration::from_millis(2000),
        replicas: 1,
        nats: Default::default(),
    });
    Manager::start_on(listener, config).await
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn replicas_forward_to_each_other_over_mutual_tls_as_peers() {
    use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
    let nats = Nats::start();
    let ca = wfm_tls::testing::TestCa::new("wfm cluster ca");
    let dir = wfm_tls::testing::TestDir::new("cluster");
    dir.write("ca.crt", ca.pem());
    dir.write_cert(
        "replica",
        &ca.issue(&["127.0.0.1"], Some("spiffe://wfm.test/manager")),
    );
    let ip = dir.write_cert("ip", &ca.issue(&[], Some("spiffe://wfm.test/ip")));
    let roles =
        wfm_tls::RoleMap::parse(&["spiffe://wfm.test/ip=ip", "spiffe://wfm.test/manager=peer"])
            .unwrap();
    let owner = tls_replica(&nats, "a", &dir, &roles).await;
    let other = tls_replica(&nats, "b", &dir, &roles).await;
    let client = |manager: &Manager| {
        let tls = wfm_tls::ClientTls::load(wfm_tls::ClientFiles {
            ca: dir.path().join("ca.crt"),
            identity: Some(ip.clone()),
        })
        .unwrap();
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "https://127.0.0.1:{}",
            manager.addr.port()
        ))
        .unwrap()
        .connect_with_connector_lazy(wfm_tls::Connector::new(Some(tls), Duration::from_secs(5)));
        WorkflowManagerClient::new(channel)
    };
    let (mut at_owner, mut at_other) = (client(&owner), client(&other));
    at_owner
        .create_session(create_request("s1", "agent-1"))
        .await
        .unwrap();
    // The other replica does not own s1: it forwards the update to the owner, presenting
    // its own certificate, which the owner accepts as a peer's.
    let ack = at_other
        .apply_update(update("s1", 1, agent(pb::AgentState::NotReady)))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    let metrics = other.stats.registry().render();
    let forwarded =
        wfm_telemetry::metrics::sample(&metrics, "wfm_manager_cluster_forwarded_calls_total");
    assert!(forwarded >= Some(1.0), "{metrics}");
    let seen = at_owner
        .get_session(pb::GetSessionRequest {
            session_id: "s1".into(),
        })
        .await
        .unwrap_err();
    // The ip role may not read: the owner refuses, naming the role.
    assert_eq!(seen.code(), Code::PermissionDenied);
}
