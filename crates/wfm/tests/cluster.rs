//! Cluster mode with real processes: `wfm manager` replicas on a NATS JetStream server (or a
//! three-node cluster), `wfm gateway`s in front, an Interaction Processor that repairs gaps
//! with snapshots, and MediaBar clients on real WebSockets. Crashes (`kill -9`), rolling
//! restarts (SIGTERM), pauses past the lease (SIGSTOP), the loss of a NATS node, forwarding
//! of every RPC, the single binder across gateways, and a session's timer across a crash.
//!
//! `WFM_CLUSTER_SESSIONS` overrides the number of sessions of the crash test (1,000).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use process::cluster::{
    Gateway, Ip, Load, MediaBar, Model, Replica, log_dir, print_percentiles, replicas, settle,
    start_all, state_mismatch, view_of,
};
use process::nats::{NatsCluster, NatsServer};
use prost::Message as _;
use tonic::Code;
use wfm_proto::v1 as pb;

/// Binds and creates at most this many at once.
const CONCURRENCY: usize = 32;

/// Creates `count` sessions `<prefix>-<i>`, session `i` at replica `i % replicas`.
async fn create_all(ip: &Arc<Ip>, prefix: &str, count: usize, replicas: usize) -> Vec<Model> {
    futures_util::stream::iter(0..count)
        .map(|i| {
            let ip = Arc::clone(ip);
            let id = format!("{prefix}-{i}");
            async move { ip.create(&id, i % replicas).await }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

/// One MediaBar client per session, bound through the gateway on `port`, in order.
async fn bind_all(port: u16, models: &[Model]) -> Vec<MediaBar> {
    futures_util::stream::iter(models.iter().map(|m| m.reference.clone()))
        .map(|reference| async move { MediaBar::bound(port, &reference).await })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

/// The sum of `name` over the running `replicas`.
async fn total(replicas: &[&Replica], name: &str) -> f64 {
    let mut sum = 0.0;
    for replica in replicas {
        sum += replica.metric(name).await;
    }
    sum
}

/// Polls `condition` every 50 ms until it holds, failing with `what` after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every replica has applied `more` updates beyond `from` (in total).
async fn progress(replicas: &[&Replica], from: f64, more: f64) {
    eventually(Duration::from_secs(60), "the load progressing", || async {
        total(replicas, "wfm_manager_updates_applied_total").await >= from + more
    })
    .await;
}

fn sessions_for_crash_test() -> usize {
    std::env::var("WFM_CLUSTER_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn killing_an_owner_moves_its_sessions_and_every_client_recovers_its_full_state() {
    let count = sessions_for_crash_test();
    let dir = log_dir("kill");
    let nats = NatsServer::single().await;
    let mut replicas = replicas(3, &nats.url(), 1, &dir).await;
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let gateway = Gateway::start(&urls, &nats.url(), &dir).await;
    let ip = Ip::new(&urls);
    let models = create_all(&ip, "kill", count, 3).await;
    let clients = bind_all(gateway.port, &models).await;
    let load = Load::start(&ip, models.clone(), Duration::from_secs(2));
    let all: Vec<&Replica> = replicas.iter().collect();
    progress(&all, 0.0, count as f64).await;

    // Replica r0 created, and owns, every third session.
    let affected: Vec<usize> = (0..count).filter(|i| models[*i].home == 0).collect();
    let killed = Instant::now();
    replicas[0].kill();
    let recovered = |i: &usize| {
        let seen = clients[*i].seen.lock().unwrap();
        seen.available.iter().find(|at| **at > killed).copied()
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let waiting: Vec<&str> = affected
            .iter()
            .filter(|i| recovered(i).is_none())
            .map(|i| models[*i].id.as_str())
            .collect();
        if waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} affected clients not available again within 45 s: {:?}...",
            waiting.len(),
            affected.len(),
            &waiting[..waiting.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover: Vec<Duration> = affected
        .iter()
        .filter_map(recovered)
        .map(|at| at - killed)
        .collect();
    let survivors: Vec<&Replica> = replicas[1..].iter().collect();
    let applied = total(&survivors, "wfm_manager_updates_applied_total").await;
    progress(&survivors, applied, count as f64).await;

    let models = load.stop().await;
    settle(&ip, &models, &clients, Duration::from_secs(45)).await;
    print_percentiles("failover", failover, affected.len());
    let takeovers = total(&survivors, "wfm_manager_cluster_takeovers_total").await;
    println!(
        "sessions={count} affected={} takeovers={takeovers} gaps={} recreations={} retries={}",
        affected.len(),
        ip.gaps.load(std::sync::atomic::Ordering::Relaxed),
        ip.recreations.load(std::sync::atomic::Ordering::Relaxed),
        ip.retries.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        takeovers >= affected.len() as f64,
        "{takeovers} takeovers for {} sessions of the dead replica",
        affected.len()
    );
    assert_eq!(
        ip.recreations.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no session is lost: records are written before CreateSession answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_rolling_restart_under_load_loses_nothing_and_needs_no_resync() {
    const SESSIONS: usize = 300;
    let dir = log_dir("rolling");
    let nats = NatsServer::single().await;
    let mut replicas = replicas(3, &nats.url(), 1, &dir).await;
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let gateway = Gateway::start(&urls, &nats.url(), &dir).await;
    let ip = Ip::new(&urls);
    let models = create_all(&ip, "roll", SESSIONS, 3).await;
    let clients = bind_all(gateway.port, &models).await;
    let load = Load::start(&ip, models, Duration::from_secs(1));
    progress(&replicas.iter().collect::<Vec<_>>(), 0.0, SESSIONS as f64).await;

    let mut resyncs = 0.0;
    for i in 0..replicas.len() {
        let metrics = replicas[i].metrics().await;
        resyncs += process::cluster::sample(&metrics, "wfm_manager_resyncs_total");
        replicas[i].terminate().await;
        let exposition_gone = replicas[i].metrics().await.is_empty();
        assert!(exposition_gone, "{} still serves metrics", replicas[i].node);
        replicas[i].spawn();
        replicas[i]
            .ready_by(Instant::now() + Duration::from_secs(30))
            .await;
        // Updates keep being applied with the replica back before the next one goes.
        let running: Vec<&Replica> = replicas.iter().collect();
        let applied = total(&running, "wfm_manager_updates_applied_total").await;
        progress(&running, applied, SESSIONS as f64 / 2.0).await;
    }
    let models = load.stop().await;
    settle(&ip, &models, &clients, Duration::from_secs(30)).await;
    let running: Vec<&Replica> = replicas.iter().collect();
    resyncs += total(&running, "wfm_manager_resyncs_total").await;
    let gaps = ip.gaps.load(std::sync::atomic::Ordering::Relaxed);
    let recreations = ip.recreations.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "rolling restart: gaps={gaps} recreations={recreations} resyncs={resyncs} retries={}",
        ip.retries.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(gaps, 0, "a graceful handoff loses no acknowledged update");
    assert_eq!(recreations, 0, "no session is lost");
    assert_eq!(resyncs, 0.0, "no binder needed a resync");
}

/// `GetSession` at `replica` only, retried while it answers `UNAVAILABLE`.
async fn get_at(replica: &Replica, id: &str, within: Duration) -> pb::GetSessionResponse {
    let deadline = Instant::now() + within;
    let mut client = replica.client();
    loop {
        let request = pb::GetSessionRequest {
            session_id: id.into(),
        };
        match client.get_session(request).await {
            Ok(response) => return response.into_inner(),
            Err(status) => assert!(
                Instant::now() < deadline,
                "GetSession {id} at {}: {status:?}",
                replica.node
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_paused_owner_resumed_after_its_sessions_moved_applies_and_persists_nothing() {
    const SESSIONS: usize = 20;
    let dir = log_dir("fencing");
    let nats = NatsServer::single().await;
    let replicas = replicas(3, &nats.url(), 1, &dir).await;
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let gateway = Gateway::start(&urls, &nats.url(), &dir).await;
    let ip = Ip::new(&urls);
    // Every session is created, and owned, at r0.
    let mut models = futures_util::stream::iter(0..SESSIONS)
        .map(|i| {
            let ip = Arc::clone(&ip);
            async move { ip.create(&format!("fence-{i}"), 0).await }
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for model in &mut models {
        ip.step(model).await;
    }
    let clients = bind_all(gateway.port, &models).await;
    settle(&ip, &models, &clients, Duration::from_secs(20)).await;

    let (old, new) = (&replicas[0], [&replicas[1], &replicas[2]]);
    let applied_before = old.metric("wfm_manager_updates_applied_total").await;
    let refusals_before = old
        .metric("wfm_manager_cluster_fencing_refusals_total")
        .await;
    old.signal("STOP");
    let paused = Instant::now();
    // Another replica takes each session over once r0's node record expires.
    for model in &models {
        get_at(new[0], &model.id, Duration::from_secs(30)).await;
    }
    println!("taken over {:?} after the pause", paused.elapsed());
    let takeovers = total(&new, "wfm_manager_cluster_takeovers_total").await;
    assert!(
        takeovers >= SESSIONS as f64,
        "{takeovers} takeovers for {SESSIONS} sessions"
    );
    // The new owners apply an update to each.
    for model in &mut models {
        model.home = 1;
        ip.step(model).await;
    }
    old.signal("CONT");

    // Updates sent straight to the resumed replica are forwarded (or refused), never
    // applied there.
    let mut direct = old.client();
    for model in &mut models {
        let mut next = model.clone();
        next.home = 0;
        match ip.try_step(&mut next, &mut direct).await {
            Ok(()) => *model = next,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                model.home = 1;
                ip.step(model).await;
            }
        }
    }
    eventually(
        Duration::from_secs(10),
        "r0 dropping the moved sessions",
        || async { old.metric("wfm_manager_sessions").await == 0.0 },
    )
    .await;
    assert_eq!(
        old.metric("wfm_manager_updates_applied_total").await,
        applied_before,
        "the resumed replica applied updates itself"
    );
    let refusals = old
        .metric("wfm_manager_cluster_fencing_refusals_total")
        .await;
    assert!(
        refusals > refusals_before,
        "the resumed replica was not refused by the fence ({refusals})"
    );
    // Its persister wrote nothing over the new owners' records.
    let jetstream = async_nats::jetstream::new(nats.connect().await);
    let bucket = jetstream.get_key_value("wfm_sessions").await.unwrap();
    for model in &models {
        let value = bucket.get(&model.id).await.unwrap().expect("a record");
        let record = wfm_proto::cluster::v1::SessionRecord::decode(value).unwrap();
        let owner = record.owner.unwrap_or_default();
        assert_ne!(owner.node_id, "r0", "{}: the record names r0", model.id);
        // Write-behind: the record catches up with the owner shortly.
        let _ = record.last_sequence;
    }
    settle(&ip, &models, &clients, Duration::from_secs(20)).await;
    for model in &models {
        let key = model.id.clone();
        eventually(Duration::from_secs(5), "the record catching up", || {
            let bucket = bucket.clone();
            let key = key.clone();
            let sequence = model.sequence;
            async move {
                let Ok(Some(value)) = bucket.get(&key).await else {
                    return false;
                };
                let record = wfm_proto::cluster::v1::SessionRecord::decode(value).unwrap();
                record.last_sequence == sequence && record.owner.is_some_and(|o| o.node_id != "r0")
            }
        })
        .await;
    }
    // No client saw an event the old owner made up: each saw only the views the IP's
    // updates produce, which alternate between the two states of the channel.
    for client in &clients {
        let seen = client.seen.lock().unwrap();
        let distinct: std::collections::BTreeSet<&String> = seen.events.iter().collect();
        assert!(distinct.len() <= 4, "unexpected events: {:?}", seen.events);
    }
}

// A session's timer survives its owner: time-boxed after-call work ends at the new owner
// when it would have ended at the old one, counted from when the agent entered it, not from
// the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_taken_over_session_ends_its_after_call_work_on_the_old_owners_schedule() {
    const ACW_SECS: u64 = 6;
    let dir = log_dir("timers");
    let profiles = dir.join("boxed.toml");
    std::fs::write(
        &profiles,
        format!(
            "default = \"boxed\"\n[profiles.boxed]\noptions = {{ acw_timeout_secs = {ACW_SECS} }}\n"
        ),
    )
    .unwrap();
    let nats = NatsServer::single().await;
    let with_profiles =
        |node: &str| Replica::new(node, &nats.url(), 1, &dir).with_profiles(profiles.clone());
    let mut replicas = start_all(vec![with_profiles("r0"), with_profiles("r1")]).await;
    let entered = Instant::now();
    replicas[0]
        .client()
        .create_session(pb::CreateSessionRequest {
            session_id: "acw-1".into(),
            agent_id: "agent-acw-1".into(),
            channels: vec![pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: pb::AgentState::AfterCallWork.into(),
                pending: pb::PendingState::Ready.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    // Let the write-behind persist land, then crash the owner.
    tokio::time::sleep(Duration::from_millis(500)).await;
    replicas[0].kill();
    let voice = |session: &pb::GetSessionResponse| {
        session
            .state
            .as_ref()
            .and_then(|s| s.channels.first())
            .map(|c| c.state)
    };
    let taken = get_at(&replicas[1], "acw-1", Duration::from_secs(30)).await;
    let taken_at = Instant::now();
    assert_eq!(
        voice(&taken),
        Some(pb::AgentState::AfterCallWork.into()),
        "taken over {:?} after entering after-call work, before its {ACW_SECS} s box ran out",
        taken_at - entered
    );
    eventually(
        Duration::from_secs(ACW_SECS + 5),
        "the new owner ending the after-call work",
        || async {
            let session = get_at(&replicas[1], "acw-1", Duration::from_secs(5)).await;
            voice(&session) == Some(pb::AgentState::Ready.into())
        },
    )
    .await;
    let ended = entered.elapsed();
    println!(
        "taken over after {:?}, after-call work ended after {ended:?}",
        taken_at - entered
    );
    assert!(
        ended >= Duration::from_secs(ACW_SECS) - Duration::from_millis(200),
        "ended early: {ended:?}"
    );
    // Counted from the takeover it would end a box after it: a second of margin.
    assert!(
        ended + Duration::from_secs(1) < (taken_at - entered) + Duration::from_secs(ACW_SECS),
        "the box was counted from the takeover: ended {ended:?} after entering it"
    );
}

// Kill a NATS node under load. When the stream leader of `wfm_nodes` was on it, every
// replica's lease lapses during the election (docs/cluster.md, "A lapse in a NATS outage"):
// the replicas re-acquire their own sessions, and no peer takes them over meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn losing_a_nats_node_under_load_loses_no_update() {
    const SESSIONS: usize = 150;
    let dir = log_dir("nats-loss");
    let mut nats = NatsCluster::three().await;
    let replicas = replicas(3, &nats.urls(), 3, &dir).await;
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let gateway = Gateway::start(&urls, &nats.urls(), &dir).await;
    let ip = Ip::new(&urls);
    let models = create_all(&ip, "js", SESSIONS, 3).await;
    let clients = bind_all(gateway.port, &models).await;
    let load = Load::start(&ip, models, Duration::from_secs(1));
    let all: Vec<&Replica> = replicas.iter().collect();
    progress(&all, 0.0, SESSIONS as f64).await;
    nats.kill(0);
    let applied = total(&all, "wfm_manager_updates_applied_total").await;
    progress(&all, applied, 2.0 * SESSIONS as f64).await;
    let models = load.stop().await;
    settle(&ip, &models, &clients, Duration::from_secs(45)).await;
    println!(
        "nats node loss: gaps={} recreations={} retries={}",
        ip.gaps.load(std::sync::atomic::Ordering::Relaxed),
        ip.recreations.load(std::sync::atomic::Ordering::Relaxed),
        ip.retries.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(
        ip.recreations.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no session is lost"
    );
}

/// The responses of a `PushUpdates` stream at `client` carrying `requests`.
async fn push(
    client: &mut process::cluster::Client,
    requests: Vec<pb::ApplyUpdateRequest>,
) -> Vec<pb::PushUpdatesResponse> {
    let count = requests.len();
    let mut responses = client
        .push_updates(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while out.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), responses.message())
            .await
            .expect("a push response in time")
            .unwrap()
            .expect("the stream stays open");
        out.push(next);
    }
    out
}

fn channel_update(id: &str, sequence: u64, state: pb::AgentState) -> pb::ApplyUpdateRequest {
    pb::ApplyUpdateRequest {
        session_id: id.into(),
        sequence,
        update: Some(pb::CtiUpdate {
            kind: Some(pb::cti_update::Kind::Channel(pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: state.into(),
                ..Default::default()
            })),
        }),
    }
}

/// The next message of a `BindSession` stream.
async fn next_bind(
    stream: &mut tonic::Streaming<pb::BindSessionResponse>,
) -> pb::bind_session_response::Kind {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a bind message in time")
        .unwrap()
        .and_then(|m| m.kind)
        .expect("a message")
}

/// A bind stream message with `id` masked; a state event's context (a map) in key order.
fn render(kind: &pb::bind_session_response::Kind, id: &str) -> String {
    let text = match kind {
        pb::bind_session_response::Kind::StateUpdated(event) => {
            let context: std::collections::BTreeMap<_, _> = event.context.iter().collect();
            let capabilities: Vec<_> = event
                .capabilities
                .iter()
                .map(|c| (c.name.as_str(), c.enabled))
                .collect();
            format!("{} {context:?} {capabilities:?}", event.target)
        }
        other => format!("{other:?}"),
    };
    text.replace(id, "<id>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn push_updates_and_bind_session_at_a_replica_that_does_not_own_the_session() {
    let dir = log_dir("forwarding");
    let nats = NatsServer::single().await;
    let replicas = replicas(2, &nats.url(), 1, &dir).await;
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    let ip = Ip::new(&urls);
    let (mut owner, mut other) = (replicas[0].client(), replicas[1].client());
    // Two sessions owned by r0: one driven at r0, one at r1; the answers must match.
    let here = ip.create("push-here", 0).await;
    let there = ip.create("push-away", 0).await;
    let script = |id: &str| {
        let mut unknown_call = channel_update(id, 3, pb::AgentState::Ready);
        unknown_call.update = Some(pb::CtiUpdate {
            kind: Some(pb::cti_update::Kind::InteractionChanged(
                pb::InteractionChange {
                    interaction_id: "nope".into(),
                    ..Default::default()
                },
            )),
        });
        vec![
            channel_update(id, 1, pb::AgentState::NotReady),
            channel_update(id, 1, pb::AgentState::NotReady),
            channel_update(id, 5, pb::AgentState::Ready),
            channel_update(id, 2, pb::AgentState::Ready),
            unknown_call,
            channel_update("nobody", 1, pb::AgentState::Ready),
        ]
    };
    let at_owner = push(&mut owner, script(&here.id)).await;
    let forwarded_before = replicas[1]
        .metric("wfm_manager_cluster_forwarded_calls_total")
        .await;
    let at_other = push(&mut other, script(&there.id)).await;
    let same = |responses: &[pb::PushUpdatesResponse], id: &str| {
        format!("{responses:?}").replace(id, "<id>")
    };
    assert_eq!(same(&at_other, &there.id), same(&at_owner, &here.id));
    let codes: Vec<Option<i32>> = at_other
        .iter()
        .map(|r| match &r.result {
            Some(pb::push_updates_response::Result::Error(e)) => Some(e.code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            None,
            None,
            Some(Code::FailedPrecondition as i32),
            None,
            Some(Code::NotFound as i32),
            Some(Code::NotFound as i32),
        ]
    );
    let forwarded = replicas[1]
        .metric("wfm_manager_cluster_forwarded_calls_total")
        .await;
    assert!(
        forwarded >= forwarded_before + 5.0,
        "r1 forwarded {forwarded}"
    );
    assert_eq!(replicas[1].metric("wfm_manager_sessions").await, 0.0);

    // BindSession: one session bound at its owner, one at the other replica.
    let bind = |reference: &str, takeover: bool| pb::BindSessionRequest {
        resource_reference: reference.into(),
        takeover,
    };
    let mut bound_here = owner
        .bind_session(bind(&here.reference, false))
        .await
        .unwrap()
        .into_inner();
    let mut bound_there = other
        .bind_session(bind(&there.reference, false))
        .await
        .unwrap()
        .into_inner();
    let view = GetViews {
        owner: &mut owner,
        other: &mut other,
    };
    let (expected_here, expected_there) = view.of(&here.id, &there.id).await;
    let mut first_here = Vec::new();
    let mut first_there = Vec::new();
    for _ in 0..expected_here.len() {
        first_here.push(render(&next_bind(&mut bound_here).await, &here.id));
        first_there.push(render(&next_bind(&mut bound_there).await, &there.id));
    }
    assert_eq!(first_there, first_here);
    assert_eq!(expected_there.len(), expected_here.len());

    // The same update at each gives the same event.
    for (client, id, stream) in [
        (&mut owner, &here.id, &mut bound_here),
        (&mut other, &there.id, &mut bound_there),
    ] {
        client
            .apply_update(channel_update(id, 3, pb::AgentState::NotReady))
            .await
            .unwrap();
        let _ = stream;
    }
    let event_here = render(&next_bind(&mut bound_here).await, &here.id);
    let event_there = render(&next_bind(&mut bound_there).await, &there.id);
    assert_eq!(event_there, event_here);

    // A second binder is refused alike, wherever it asks.
    for (mut client, reference) in [
        (owner.clone(), &there.reference),
        (other.clone(), &here.reference),
        (owner.clone(), &here.reference),
        (other.clone(), &there.reference),
    ] {
        let refused = client
            .bind_session(bind(reference, false))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("already bound"), "{refused:?}");
    }
    // A forged reference binds nothing anywhere.
    for mut client in [owner.clone(), other.clone()] {
        let forged = client
            .bind_session(bind("v1.forged.reference", false))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(forged.code(), Code::Unauthenticated, "{forged:?}");
    }
    // Takeover through the other replica tells each first binder the same.
    let mut taken_here = other
        .bind_session(bind(&here.reference, true))
        .await
        .unwrap()
        .into_inner();
    let mut taken_there = owner
        .bind_session(bind(&there.reference, true))
        .await
        .unwrap()
        .into_inner();
    let unbound_here = render(&next_bind(&mut bound_here).await, &here.id);
    let unbound_there = render(&next_bind(&mut bound_there).await, &there.id);
    assert_eq!(unbound_there, unbound_here);
    assert!(
        unbound_here.contains("Unbound") && unbound_here.contains("reason: TakenOver"),
        "{unbound_here}"
    );
    let _ = (
        next_bind(&mut taken_here).await,
        next_bind(&mut taken_there).await,
    );

    // EndSession through the other replica ends the stream bound there alike.
    for id in [&here.id, &there.id] {
        other
            .end_session(pb::EndSessionRequest {
                session_id: id.clone(),
            })
            .await
            .unwrap();
    }
    let mut ends = Vec::new();
    for (stream, id) in [(&mut taken_here, &here.id), (&mut taken_there, &there.id)] {
        loop {
            let kind = next_bind(stream).await;
            if matches!(kind, pb::bind_session_response::Kind::Unbound(_)) {
                ends.push(render(&kind, id));
                break;
            }
        }
    }
    assert_eq!(ends[0], ends[1]);
    assert!(ends[0].contains("reason: SessionEnded"), "{}", ends[0]);
    for id in [&here.id, &there.id] {
        let gone = other
            .get_session(pb::GetSessionRequest {
                session_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
}

struct GetViews<'a> {
    owner: &'a mut process::cluster::Client,
    other: &'a mut process::cluster::Client,
}

impl GetViews<'_> {
    /// GetSession of `here` at the owner and of `there` at the other replica.
    async fn of(self, here: &str, there: &str) -> (Vec<pb::StateUpdated>, Vec<pb::StateUpdated>) {
        let get = |id: &str| pb::GetSessionRequest {
            session_id: id.into(),
        };
        let a = self
            .owner
            .get_session(get(here))
            .await
            .unwrap()
            .into_inner();
        let b = self
            .other
            .get_session(get(there))
            .await
            .unwrap()
            .into_inner();
        (a.view_state, b.view_state)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn one_binder_wins_across_two_gateways_and_takeover_crosses_gateways() {
    let dir = log_dir("binder");
    let nats = NatsServer::single().await;
    let replicas = replicas(2, &nats.url(), 1, &dir).await;
    let urls: Vec<String> = replicas.iter().map(Replica::url).collect();
    // Each gateway knows one replica to begin with; they find the other in NATS.
    let first = Gateway::start(&urls[..1], &nats.url(), &dir).await;
    let second = Gateway::start(&urls[1..], &nats.url(), &dir).await;
    let ip = Ip::new(&urls);
    for round in 0..5 {
        let model = ip.create(&format!("race-{round}"), round % 2).await;
        let (mut a, mut b) = (
            MediaBar::connect(first.port).await,
            MediaBar::connect(second.port).await,
        );
        let (to_a, to_b) = tokio::join!(
            a.bind(&model.reference, false),
            b.bind(&model.reference, false)
        );
        let won = |r: &serde_json::Value| r["result"] == "success";
        assert!(
            won(&to_a) ^ won(&to_b),
            "exactly one bind wins: {to_a} / {to_b}"
        );
        let (winner, mut loser, lost) = if won(&to_a) {
            (a, b, to_b)
        } else {
            (b, a, to_a)
        };
        assert_eq!(lost["result"], "failure", "{lost}");
        assert_eq!(lost["error"]["code"], "alreadyBound", "{lost}");

        // The loser takes the session over through its own gateway.
        let taken = loser.bind(&model.reference, true).await;
        assert_eq!(taken["result"], "success", "{taken}");
        eventually(
            Duration::from_secs(10),
            "the winner told it was taken over",
            || {
                let told = winner.seen.lock().unwrap().unbound.clone();
                async move { told == ["takenOver"] }
            },
        )
        .await;
        let mut model = model;
        ip.step(&mut model).await;
        let session = ip.get(&model.id).await.unwrap();
        assert_eq!(state_mismatch(&model, &session), None);
        let expected = view_of(&session);
        eventually(Duration::from_secs(10), "the new binder's view", || {
            let view = loser.view();
            let expected = expected.clone();
            async move { view == expected }
        })
        .await;
        // The old binder hears nothing more.
        let events_then = winner.seen.lock().unwrap().events.len();
        ip.step(&mut model).await;
        let expected = view_of(&ip.get(&model.id).await.unwrap());
        eventually(
            Duration::from_secs(10),
            "the new binder's next view",
            || {
                let view = loser.view();
                let expected = expected.clone();
                async move { view == expected }
            },
        )
        .await;
        assert_eq!(winner.seen.lock().unwrap().events.len(), events_then);
    }
}
