//! A gateway that stops reading its Attach stream: the manager's memory stays bounded, and
//! once the gateway reads again every binding ends with exactly GetSession's view.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use pb::AgentState as A;
use pb::InteractionState as I;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;

const SESSIONS: usize = 1_000;
const UPDATES_PER_SESSION: u64 = 100;

/// What a client knows of one session: target → enabled capability names.
type View = BTreeMap<String, Vec<String>>;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn metric(manager: &Manager, series: &str) -> f64 {
    wfm_telemetry::metrics::sample(&manager.stats.registry().render(), series)
        .unwrap_or_else(|| panic!("no {series} on /metrics"))
}

/// The CTI update `k` (1-based) of a session: calls come, connect, hold and end, and the
/// agent state flips between them, so every update changes the view.
fn nth_update(k: u64) -> pb::cti_update::Kind {
    let call = |n: u64| format!("call-{n}");
    match k % 5 {
        1 => created(common::call(&call(k), I::Alerting)),
        2 => changed(&call(k - 1), I::Connected),
        3 => changed(&call(k - 2), I::Held),
        4 => changed(&call(k - 3), I::Ended),
        _ if (k / 5).is_multiple_of(2) => agent(A::Ready),
        _ => agent(A::NotReady),
    }
}

/// Applies one Attach message to the client's picture of each binding (binding id − 1 is
/// the session index); returns true for a bind result.
fn apply(views: &mut [View], names: &[String], message: pb::AttachResponse) -> bool {
    let index = usize::try_from(message.binding_id).unwrap() - 1;
    match message.kind.expect("message without kind") {
        Kind::BindResult(result) => {
            assert_eq!(result.code, 0, "{}", result.message);
            true
        }
        Kind::State(state) => {
            let ended = state
                .context
                .iter()
                .any(|e| e.key == "state" && e.value == "ended");
            if ended && state.enabled == 0 {
                views[index].remove(&state.target);
            } else {
                let enabled = (0..names.len())
                    .filter(|bit| state.enabled & (1 << bit) != 0)
                    .map(|bit| names[bit].clone())
                    .collect();
                views[index].insert(state.target, enabled);
            }
            false
        }
        other => panic!("unexpected message {other:?}"),
    }
}

async fn manager_view(client: &mut Client, session: &str) -> View {
    let response = client
        .get_session(pb::GetSessionRequest {
            session_id: session.into(),
        })
        .await
        .unwrap()
        .into_inner();
    response
        .view_state
        .into_iter()
        .map(|event| {
            let enabled = event
                .capabilities
                .into_iter()
                .filter(|c| c.enabled)
                .map(|c| c.name)
                .collect();
            (event.target, enabled)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_leaves_memory_bounded_and_then_gets_every_final_state() {
    let manager = Manager::start().await;
    let mut ip = manager.client().await;
    // Its own connection, so that its stalled stream holds no other stream's window.
    let mut gateway = manager.client().await;
    let sessions: Vec<String> = (0..SESSIONS).map(|i| format!("s{i}")).collect();
    let mut references = Vec::new();
    for session in &sessions {
        references.push(create(&mut ip, session).await.resource_reference);
    }

    let Attach {
        commands,
        mut stream,
        names,
    } = attach(&mut gateway).await;
    for (index, reference) in references.iter().enumerate() {
        commands
            .send(pb::AttachRequest {
                kind: Some(pb::attach_request::Kind::Bind(pb::AttachBind {
                    binding_id: index as u64 + 1,
                    resource_reference: reference.clone(),
                    takeover: false,
                    ..Default::default()
                })),
            })
            .unwrap();
    }
    let mut views = vec![View::new(); SESSIONS];
    let mut bound = 0;
    while bound < SESSIONS || views.iter().any(|v| v.len() < 2) {
        let message = next(&mut stream).await.expect("attach stream ended");
        bound += usize::from(apply(&mut views, &names, message));
    }

    // The gateway stops reading. The IP pushes 100,000 updates.
    let before = resident_bytes();
    let (updates, rx) = tokio::sync::mpsc::channel(1024);
    let mut acks = ip
        .push_updates(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let sender = tokio::spawn({
        let sessions = sessions.clone();
        async move {
            for k in 1..=UPDATES_PER_SESSION {
                for session in &sessions {
                    updates
                        .send(update(session, k, nth_update(k)))
                        .await
                        .unwrap();
                }
            }
        }
    });
    let total = SESSIONS as u64 * UPDATES_PER_SESSION;
    for _ in 0..total {
        let response = next(&mut acks).await.expect("push stream ended");
        assert!(
            matches!(
                response.result,
                Some(pb::push_updates_response::Result::Ack(_))
            ),
            "{response:?}"
        );
    }
    sender.await.unwrap();
    let grown = resident_bytes().saturating_sub(before);
    let queued = metric(&manager, "wfm_manager_stream_queued_events");
    // At most the stream's bound, plus one resynchronised session's targets.
    assert!(queued <= 4096.0 + 8.0, "{queued} events queued");
    assert!(metric(&manager, "wfm_manager_stream_overflows_total") >= 1.0);
    // With the bound lifted, this run queued 152,277 events and grew by 25 MB; bounded it
    // grows by about 6 MB (the IP's own stream, the queue and allocator slack).
    assert!(grown < 12 << 20, "resident memory grew by {grown} bytes");

    // The gateway reads again: every binding converges on the manager's own view.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
            Ok(message) => {
                let message = message.unwrap().expect("attach stream ended");
                apply(&mut views, &names, message);
            }
            Err(_) => break,
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never went quiet"
        );
    }
    let mut differing = HashMap::new();
    for (index, session) in sessions.iter().enumerate() {
        let want = manager_view(&mut ip, session).await;
        if views[index] != want {
            differing.insert(session.clone(), (views[index].clone(), want));
        }
    }
    assert!(
        differing.is_empty(),
        "{} sessions differ, e.g. {:?}",
        differing.len(),
        differing.iter().next()
    );
    assert!(metric(&manager, "wfm_manager_resyncs_total") >= 1.0);
    assert_eq!(metric(&manager, "wfm_manager_stream_queued_events"), 0.0);
}
