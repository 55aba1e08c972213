//! The simulator as a cluster's Interaction Processor, over real gRPC on loopback: a lost
//! acknowledged update comes back as a gap and is repaired with a snapshot; a replica
//! answering UNAVAILABLE is skipped and the update applied once; a replica that stops
//! leaves the run to the next one, which no longer knows the sessions and gets them again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use wfm_manager::ManagerConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_proto::v1::workflow_manager_server::{WorkflowManager, WorkflowManagerServer};
use wfm_reference::SigningKey;
use wfm_sim::resilient::{Manager, ManagerUrls, RecoveryCounts, RetryPolicy, Session};
use wfm_sim::run::Player;
use wfm_sim::scenario::Scenario;

/// A server on loopback, stopped by its token.
struct Server {
    url: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .unwrap();
    }
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// A real, single-process workflow manager.
async fn manager() -> Server {
    let (listener, url) = listener().await;
    let config = ManagerConfig::new(SigningKey::generate().unwrap());
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        wfm_manager::serve(listener, config, token).await.unwrap();
    });
    Server { url, stop, task }
}

/// What the fake replica does to one `ApplyUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Acknowledges it without passing it on: a replica that died before persisting it.
    Lose,
    /// Passes it on, then answers UNAVAILABLE: the acknowledgement is lost.
    Unavailable,
}

/// A replica in front of a real manager that passes every call on, except that the
/// `ApplyUpdate` numbered `fault_at` (counting from 1) suffers `fault`.
struct FakeReplica {
    upstream: WorkflowManagerClient<Channel>,
    fault: Fault,
    fault_at: usize,
    /// Every `ApplyUpdate` received: its sequence and whether it was a snapshot.
    received: Mutex<Vec<(u64, bool)>>,
}

/// A status built afresh from one received from upstream, with what the manager puts in a
/// gap (its rich details and the expected-sequence trailer).
fn relay(status: &Status) -> Status {
    let mut out = Status::with_details(
        status.code(),
        status.message(),
        status.details().to_vec().into(),
    );
    let key = wfm_manager::error::EXPECTED_SEQUENCE_KEY;
    if let Some(value) = status.metadata().get(key) {
        out.metadata_mut().insert(key, value.clone());
    }
    out
}

type Stream<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl WorkflowManager for FakeReplica {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let mut upstream = self.upstream.clone();
        upstream
            .create_session(request.into_inner())
            .await
            .map_err(|s| relay(&s))
    }

    async fn apply_update(
        &self,
        request: Request<pb::ApplyUpdateRequest>,
    ) -> Result<Response<pb::UpdateAck>, Status> {
        let request = request.into_inner();
        let snapshot = matches!(
            request.update.as_ref().and_then(|u| u.kind.as_ref()),
            Some(pb::cti_update::Kind::Snapshot(_))
        );
        let count = {
            let mut received = self.received.lock().unwrap();
            received.push((request.sequence, snapshot));
            received.len()
        };
        if count == self.fault_at && self.fault == Fault::Lose {
            return Ok(Response::new(pb::UpdateAck {
                session_id: request.session_id,
                sequence: request.sequence,
                ..Default::default()
            }));
        }
        let mut upstream = self.upstream.clone();
        let answer = upstream
            .apply_update(request)
            .await
            .map_err(|s| relay(&s))?;
        if count == self.fault_at && self.fault == Fault::Unavailable {
            return Err(Status::unavailable("replica stopping"));
        }
        Ok(answer)
    }

    type PushUpdatesStream = Stream<pb::PushUpdatesResponse>;

    async fn push_updates(
        &self,
        _: Request<Streaming<pb::ApplyUpdateRequest>>,
    ) -> Result<Response<Self::PushUpdatesStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let mut upstream = self.upstream.clone();
        upstream
            .end_session(request.into_inner())
            .await
            .map_err(|s| relay(&s))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let mut upstream = self.upstream.clone();
        upstream
            .get_session(request.into_inner())
            .await
            .map_err(|s| relay(&s))
    }

    type BindSessionStream = Stream<pb::BindSessionResponse>;

    async fn bind_session(
        &self,
        _: Request<pb::BindSessionRequest>,
    ) -> Result<Response<Self::BindSessionStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    type AttachStream = Stream<pb::AttachResponse>;

    async fn attach(
        &self,
        _: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    type ReceiveCommandsStream = Stream<pb::Command>;

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
        Err(Status::unimplemented("not in this fake"))
    }
}

/// Starts a fake replica in front of `upstream`; returns it with a handle to what it saw.
async fn fake(
    upstream: &str,
    fault: Fault,
    fault_at: usize,
) -> (Server, std::sync::Arc<FakeReplica>) {
    let (listener, url) = listener().await;
    let replica = std::sync::Arc::new(FakeReplica {
        upstream: WorkflowManagerClient::connect(upstream.to_string())
            .await
            .unwrap(),
        fault,
        fault_at,
        received: Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let token = stop.clone();
    let service = WorkflowManagerServer::from_arc(std::sync::Arc::clone(&replica));
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                token.cancelled_owned(),
            )
            .await
            .unwrap();
    });
    (Server { url, stop, task }, replica)
}

/// Retries fast, so that tests do not wait.
const FAST: RetryPolicy = RetryPolicy {
    min_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(50),
    max_retries: 10,
};

fn replicas(urls: &[&str]) -> Manager {
    let urls: ManagerUrls = urls.join(",").parse().unwrap();
    Manager::new(&urls, FAST).unwrap()
}

fn scenario(name: &str) -> Scenario {
    wfm_sim::library::scenarios()
        .unwrap()
        .into_iter()
        .find(|s| s.origin.ends_with(name))
        .unwrap()
}

/// Creates `session_id` for `scenario`'s channels.
async fn session(manager: &Manager, scenario: &Scenario, session_id: &str) -> Session {
    Session::create(
        manager.clone(),
        pb::CreateSessionRequest {
            session_id: session_id.into(),
            agent_id: format!("agent-{session_id}"),
            channels: scenario.channels.clone(),
            profile: scenario.profile.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Pushes steps `from..to` of `scenario`.
async fn push(player: &mut Player, scenario: &Scenario, steps: std::ops::Range<usize>) {
    for step in &scenario.steps[steps] {
        if let Some(update) = &step.update {
            player.push(update).await.unwrap();
        }
    }
}

/// The state a manager at `url` holds for `session_id`, and its last applied sequence.
async fn held(url: &str, session_id: &str) -> (pb::Snapshot, u64) {
    let mut client = WorkflowManagerClient::connect(url.to_string())
        .await
        .unwrap();
    let session = client
        .get_session(pb::GetSessionRequest {
            session_id: session_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (session.state.unwrap_or_default(), session.last_sequence)
}

/// What `scenario` leaves behind when nothing fails: played on a fresh manager.
async fn expected_state(scenario: &Scenario) -> pb::Snapshot {
    let reference = manager().await;
    let manager = replicas(&[&reference.url]);
    let mut player = Player::new(session(&manager, scenario, "reference").await, 0.0);
    push(&mut player, scenario, 0..scenario.steps.len()).await;
    let (state, _) = held(&reference.url, "reference").await;
    reference.stop().await;
    state
}

fn updates(scenario: &Scenario) -> usize {
    scenario.steps.iter().filter(|s| s.update.is_some()).count()
}

#[tokio::test]
async fn a_lost_acknowledged_update_comes_back_as_a_gap_and_is_repaired_with_a_snapshot() {
    let scenario = scenario("02-consult-transfer.toml");
    assert!(updates(&scenario) >= 5);
    let real = manager().await;
    // The third update is acknowledged and lost; the fourth meets the gap.
    let (fake, replica) = fake(&real.url, Fault::Lose, 3).await;
    let manager = replicas(&[&fake.url]);
    let mut player = Player::new(session(&manager, &scenario, "gap").await, 0.0);
    push(&mut player, &scenario, 0..scenario.steps.len()).await;

    let received = replica.received.lock().unwrap().clone();
    let expected_gap = received[2].0;
    assert_eq!(received[3], (expected_gap + 1, false), "{received:?}");
    assert_eq!(
        received[4],
        (expected_gap, true),
        "a snapshot at the expected sequence follows the refused update: {received:?}"
    );
    assert_eq!(
        received[5],
        (expected_gap + 1, false),
        "numbering continues after it"
    );
    assert!(
        received[5..]
            .windows(2)
            .all(|w| w[1].0 == w[0].0 + 1 && !w[1].1)
    );
    assert_eq!(
        manager.recovery().counts(),
        RecoveryCounts {
            retries: 0,
            resyncs: 1,
            recreations: 0
        }
    );

    let (state, last) = held(&real.url, "gap").await;
    assert_eq!(state, expected_state(&scenario).await);
    assert_eq!(last + 1, player.session().next_sequence());
    fake.stop().await;
    real.stop().await;
}

#[tokio::test]
async fn an_unavailable_replica_is_skipped_and_the_update_applied_once() {
    let scenario = scenario("02-consult-transfer.toml");
    let real = manager().await;
    // The second update reaches the manager, but its acknowledgement is lost.
    let (fake, replica) = fake(&real.url, Fault::Unavailable, 2).await;
    let manager = replicas(&[&fake.url, &real.url]);
    let mut player = Player::new(session(&manager, &scenario, "unavailable").await, 0.0);
    push(&mut player, &scenario, 0..scenario.steps.len()).await;

    // The fake saw the first two; the retry and the rest went to the next replica.
    assert_eq!(replica.received.lock().unwrap().len(), 2);
    assert_eq!(
        manager.recovery().counts(),
        RecoveryCounts {
            retries: 1,
            resyncs: 0,
            recreations: 0
        }
    );
    let (state, last) = held(&real.url, "unavailable").await;
    // Applied once: the manager's sequence is the number of updates, with no snapshot.
    assert_eq!(last, updates(&scenario) as u64);
    assert_eq!(state, expected_state(&scenario).await);
    fake.stop().await;
    real.stop().await;
}

#[tokio::test]
async fn when_a_replica_stops_mid_run_the_next_one_gets_every_session_again() {
    let scenarios = [
        scenario("02-consult-transfer.toml"),
        scenario("04-conference.toml"),
        scenario("08-chat-while-held.toml"),
    ];
    let first = manager().await;
    let second = manager().await;
    let manager = replicas(&[&first.url, &second.url]);
    let mut players = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        let session = session(&manager, scenario, &format!("failover-{index}")).await;
        let mut player = Player::new(session, 0.0);
        push(&mut player, scenario, 0..scenario.steps.len() / 2).await;
        players.push(player);
    }
    first.stop().await;
    for (player, scenario) in players.iter_mut().zip(&scenarios) {
        push(
            player,
            scenario,
            scenario.steps.len() / 2..scenario.steps.len(),
        )
        .await;
    }

    let counts = manager.recovery().counts();
    assert_eq!(counts.recreations, scenarios.len() as u64, "{counts:?}");
    assert!(counts.retries >= 1, "{counts:?}");
    for (index, (player, scenario)) in players.iter().zip(&scenarios).enumerate() {
        let (state, _) = held(&second.url, &format!("failover-{index}")).await;
        assert_eq!(state, expected_state(scenario).await, "{}", scenario.origin);
        player.session().end().await.unwrap();
    }
    second.stop().await;
}
