//! One soak slot: a live session with its bound MediaBar client, and the churn acted on it
//! (updates, end and recreate, reconnect, takeover, malformed frames). At the end the slot
//! compares what its client shows and what its IP reported with the manager's `GetSession`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use wfm_proto::v1 as pb;

use super::Tally;
use crate::mediabar::{ClientError, MediaBarClient};
use crate::resilient::{Manager, Session};

/// What a slot is told to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The next CTI update of the session's call flow.
    Update,
    /// End the session (its client must be told) and create a new one for the same client.
    EndAndRecreate,
    /// Close the client, connect a new one and bind it.
    Reconnect,
    /// A second client binds with takeover; the first must be told `takenOver`.
    Takeover,
    /// A text frame that is not JSON: `invalidJson`.
    InvalidJson,
    /// JSON with an unknown `messageType`: `invalidMessage`.
    UnknownType,
    /// A message over the gateway's 16 KiB message limit but under its 64 KiB frame limit:
    /// `messageTooLarge`, and the connection stays open.
    Oversized,
}

/// A message to a slot.
#[derive(Debug)]
pub enum Command {
    /// Do this.
    Act(Action),
    /// Stop churning, check the final state, and answer.
    Finish(oneshot::Sender<Verdict>),
}

/// The outcome of a slot's final check.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Whether the slot had a live session to check.
    pub checked: bool,
    /// The manager's CTI state differs from what the IP reported (`GetSession.state`).
    pub lost: Option<String>,
    /// The client's view of some target differs from `GetSession.view_state`.
    pub stale: Option<String>,
}

/// What every slot shares.
pub struct Context {
    /// The manager, with retries.
    pub manager: Manager,
    /// The gateway's MediaBar URL.
    pub mediabar_url: String,
    /// Counts actions and errors.
    pub tally: Arc<Tally>,
    /// Bounds concurrent session set-ups, so that start-up does not flood the stack.
    pub setup: Semaphore,
}

/// How long a client waits for a notice (unbound, coreError) or to settle.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

struct Live {
    session: Session,
    client: MediaBarClient,
    generation: u64,
    step: u64,
}

/// Runs slot `index`: opens its session, reports on `ready` whether it is bound, then acts on
/// commands until told to finish (or its channel closes).
pub async fn run(
    context: Arc<Context>,
    index: usize,
    mut commands: mpsc::Receiver<Command>,
    ready: mpsc::UnboundedSender<bool>,
) {
    let opened = {
        let _permit = context.setup.acquire().await;
        open(&context, index, 0).await
    };
    let _ = ready.send(opened.is_ok());
    let mut live = match opened {
        Ok(live) => Some(live),
        Err(kind) => {
            context.tally.error(&kind);
            None
        }
    };
    loop {
        let command = match live.as_mut() {
            // Reading between commands keeps the client current, as a toolbar is.
            Some(current) => tokio::select! {
                command = commands.recv() => command,
                read = current.client.pump(Instant::now() + Duration::from_secs(3600)) => {
                    if let Err(error) = read {
                        context.tally.error(&format!("client lost: {error}"));
                        live = reconnect_or_drop(&context, live.take()).await;
                    }
                    continue;
                }
            },
            None => commands.recv().await,
        };
        match command {
            Some(Command::Act(action)) => {
                if let Some(current) = live.take() {
                    live = act(&context, index, current, action).await;
                }
            }
            Some(Command::Finish(answer)) => {
                let verdict = match live {
                    Some(current) => check(&context, current).await,
                    None => Verdict::default(),
                };
                let _ = answer.send(verdict);
                return;
            }
            None => return,
        }
    }
}

fn session_request(index: usize, generation: u64) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_id: format!("soak-{}-{index}-{generation}", std::process::id()),
        agent_id: format!("soak-agent-{index}"),
        channels: vec![pb::Channel {
            channel_id: "voice".into(),
            media: pb::Media::Voice.into(),
            state: pb::AgentState::Ready.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Creates session `generation` of slot `index` and binds a fresh client to it; the error
/// is the kind to count.
async fn open(context: &Context, index: usize, generation: u64) -> Result<Live, String> {
    let session = Session::create(context.manager.clone(), session_request(index, generation))
        .await
        .map_err(|status| format!("create: {:?}", status.code()))?;
    let client = connect_and_bind(context, session.reference()).await?;
    Ok(Live {
        session,
        client,
        generation,
        step: 0,
    })
}

/// A new client bound to `reference`. An `alreadyBound` right after this slot's own client
/// went away is the documented reload race (the gateway has not yet released the old
/// binding): bind again with takeover, as a MediaBar does.
async fn connect_and_bind(context: &Context, reference: &str) -> Result<MediaBarClient, String> {
    let mut client = connect(context).await?;
    match client.bind(reference, false).await {
        Ok(_) => Ok(client),
        Err(ClientError::Refused { code, .. }) if code == "alreadyBound" => {
            context.tally.count(&context.tally.reload_races);
            client
                .bind(reference, true)
                .await
                .map_err(|e| format!("bind: {}", kind_of(&e)))?;
            Ok(client)
        }
        Err(e) => Err(format!("bind: {}", kind_of(&e))),
    }
}

/// A new client. Bounded in time: a gateway out of descriptors leaves the connection in its
/// accept backlog, unanswered, and the slot would wait forever.
async fn connect(context: &Context) -> Result<MediaBarClient, String> {
    match tokio::time::timeout(
        NOTICE_TIMEOUT,
        MediaBarClient::connect_lean(&context.mediabar_url),
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(format!("connect: {}", kind_of(&error))),
        Err(_) => Err("connect: timeout".into()),
    }
}

/// A short, stable name for a client error, for the error table.
fn kind_of(error: &ClientError) -> String {
    match error {
        ClientError::WebSocket(_) => "websocket error".into(),
        ClientError::Closed => "closed by the gateway".into(),
        ClientError::Refused { code, .. } => format!("refused {code}"),
        ClientError::Timeout(_) => "timeout".into(),
    }
}

async fn reconnect_or_drop(context: &Context, live: Option<Live>) -> Option<Live> {
    let mut live = live?;
    match connect_and_bind(context, live.session.reference()).await {
        Ok(client) => {
            live.client = client;
            Some(live)
        }
        Err(kind) => {
            context.tally.error(&kind);
            None
        }
    }
}

/// The `step`-th update of a session's call flow: a call arrives, is answered, held,
/// retrieved and ended, and the agent's state flips; every step changes the view.
fn nth_update(step: u64) -> pb::cti_update::Kind {
    use pb::cti_update::Kind;
    let call = format!("call-{}", step / 6);
    let change = |state: pb::InteractionState| {
        Kind::InteractionChanged(pb::InteractionChange {
            interaction_id: call.clone(),
            state: Some(state.into()),
            ..Default::default()
        })
    };
    match step % 6 {
        0 => Kind::InteractionCreated(pb::Interaction {
            interaction_id: call.clone(),
            channel_id: "voice".into(),
            direction: pb::Direction::Inbound.into(),
            state: pb::InteractionState::Alerting.into(),
            ..Default::default()
        }),
        1 | 3 => change(pb::InteractionState::Connected),
        2 => change(pb::InteractionState::Held),
        4 => change(pb::InteractionState::Ended),
        _ => {
            let state = if (step / 6).is_multiple_of(2) {
                pb::AgentState::NotReady
            } else {
                pb::AgentState::Ready
            };
            Kind::Channel(pb::Channel {
                channel_id: "voice".into(),
                media: pb::Media::Voice.into(),
                state: state.into(),
                ..Default::default()
            })
        }
    }
}

/// Does `action`; the slot's session afterwards, `None` when it could not be kept.
async fn act(context: &Context, index: usize, mut live: Live, action: Action) -> Option<Live> {
    let tally = &context.tally;
    match action {
        Action::Update => {
            tally.count(&tally.updates);
            let update = nth_update(live.step);
            live.step += 1;
            if let Err(status) = live.session.push(&update).await {
                tally.error(&format!("update: {:?}", status.code()));
            }
            Some(live)
        }
        Action::EndAndRecreate => {
            tally.count(&tally.ends);
            if let Err(status) = live.session.end().await {
                tally.error(&format!("end: {:?}", status.code()));
            }
            match live.client.unbound(NOTICE_TIMEOUT).await {
                Ok(Some(reason)) if reason == "sessionEnded" => {}
                Ok(other) => tally.error(&format!("end notice: {other:?}")),
                Err(error) => tally.error(&format!("end notice: {}", kind_of(&error))),
            }
            let generation = live.generation + 1;
            let session =
                match Session::create(context.manager.clone(), session_request(index, generation))
                    .await
                {
                    Ok(session) => session,
                    Err(status) => {
                        tally.error(&format!("create: {:?}", status.code()));
                        return None;
                    }
                };
            // The same connection binds again, as a toolbar does for the agent's next session.
            if let Err(error) = live.client.bind(session.reference(), false).await {
                tally.error(&format!("rebind: {}", kind_of(&error)));
                let client = connect_and_bind(context, session.reference()).await;
                live.client = client.map_err(|kind| tally.error(&kind)).ok()?;
            }
            Some(Live {
                session,
                client: live.client,
                generation,
                step: 0,
            })
        }
        Action::Reconnect => {
            tally.count(&tally.reconnects);
            live.client.close().await;
            match connect_and_bind(context, live.session.reference()).await {
                Ok(client) => Some(Live { client, ..live }),
                Err(kind) => {
                    tally.error(&kind);
                    None
                }
            }
        }
        Action::Takeover => {
            tally.count(&tally.takeovers);
            let mut second = match connect(context).await {
                Ok(client) => client,
                Err(kind) => {
                    tally.error(&kind);
                    return Some(live);
                }
            };
            if let Err(error) = second.bind(live.session.reference(), true).await {
                tally.error(&format!("takeover bind: {}", kind_of(&error)));
                return Some(live);
            }
            match live.client.unbound(NOTICE_TIMEOUT).await {
                Ok(Some(reason)) if reason == "takenOver" => {}
                Ok(other) => tally.error(&format!("takeover notice: {other:?}")),
                Err(error) => tally.error(&format!("takeover notice: {}", kind_of(&error))),
            }
            live.client.close().await;
            Some(Live {
                client: second,
                ..live
            })
        }
        Action::InvalidJson | Action::UnknownType | Action::Oversized => {
            tally.count(&tally.malformed);
            let (frame, expected) = match action {
                Action::InvalidJson => ("{\"messageType\": coreRequest".to_string(), "invalidJson"),
                Action::UnknownType => (
                    r#"{"messageType":"coreBanana","requestId":"soak"}"#.to_string(),
                    "invalidMessage",
                ),
                _ => (
                    format!(
                        r#"{{"messageType":"coreRequest","requestId":"soak","request":"getServices","data":{{"pad":"{}"}}}}"#,
                        "x".repeat(32 * 1024)
                    ),
                    "messageTooLarge",
                ),
            };
            match live.client.send_raw(frame).await {
                Ok(code) if code == expected => Some(live),
                Ok(code) => {
                    tally.error(&format!("malformed: {code} instead of {expected}"));
                    Some(live)
                }
                Err(error) => {
                    tally.error(&format!("malformed {expected}: {}", kind_of(&error)));
                    reconnect_or_drop(context, Some(live)).await
                }
            }
        }
    }
}

/// Compares the client's view and the IP's model with `GetSession`.
async fn check(context: &Context, mut live: Live) -> Verdict {
    let session_id = live.session.session_id().to_string();
    let got = context
        .manager
        .call(|mut client| {
            let request = pb::GetSessionRequest {
                session_id: session_id.clone(),
            };
            async move { Ok(client.get_session(request).await?.into_inner()) }
        })
        .await;
    let view = match got {
        Ok(view) => view,
        Err(status) => {
            return Verdict {
                checked: true,
                lost: Some(format!("{session_id}: GetSession: {status}")),
                stale: None,
            };
        }
    };
    let lost = model_difference(&live.session, view.state.as_ref())
        .map(|difference| format!("{session_id}: {difference}"));
    let expect: BTreeMap<String, Vec<String>> = view
        .view_state
        .iter()
        .map(|target| {
            let path = target
                .target
                .strip_prefix(session_id.as_str())
                .unwrap_or(&target.target)
                .trim_start_matches('.')
                .to_string();
            let enabled = target
                .capabilities
                .iter()
                .filter(|c| c.enabled)
                .map(|c| c.name.clone())
                .collect();
            (path, enabled)
        })
        .collect();
    let stale = match live.client.settle(&expect, NOTICE_TIMEOUT).await {
        Ok(differences) if differences.is_empty() => None,
        Ok(differences) => Some(format!(
            "{session_id}: {} target(s) differ:\n{}",
            differences.len(),
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )),
        Err(error) => Some(format!("{session_id}: client: {error}")),
    };
    Verdict {
        checked: true,
        lost,
        stale,
    }
}

/// How the manager's state differs from the IP's model, if it does: each channel's agent
/// state and each live interaction's state.
fn model_difference(session: &Session, manager: Option<&pb::Snapshot>) -> Option<String> {
    let channels = |items: &[pb::Channel]| {
        let mut v: Vec<(String, i32)> = items
            .iter()
            .map(|c| (c.channel_id.clone(), c.state))
            .collect();
        v.sort();
        v
    };
    let interactions = |items: &[pb::Interaction]| {
        let ended = i32::from(pb::InteractionState::Ended);
        let mut v: Vec<(String, i32)> = items
            .iter()
            .filter(|i| i.state != ended)
            .map(|i| (i.interaction_id.clone(), i.state))
            .collect();
        v.sort();
        v
    };
    let mine = session.state();
    let (their_channels, their_interactions) = manager
        .map(|s| (channels(&s.channels), interactions(&s.interactions)))
        .unwrap_or_default();
    let (my_channels, my_interactions) =
        (channels(mine.channels()), interactions(mine.interactions()));
    (my_channels != their_channels || my_interactions != their_interactions).then(|| {
        format!(
            "IP reported channels {my_channels:?} interactions {my_interactions:?}, \
             the manager holds {their_channels:?} {their_interactions:?}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_flow_changes_state_at_every_step() {
        use pb::cti_update::Kind;
        let kinds: Vec<&'static str> = (0..6)
            .map(|step| match nth_update(step) {
                Kind::InteractionCreated(_) => "created",
                Kind::InteractionChanged(_) => "changed",
                Kind::Channel(_) => "channel",
                Kind::Snapshot(_) => "snapshot",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "created", "changed", "changed", "changed", "changed", "channel"
            ]
        );
        // Each cycle's call has its own id, so that an ended call is never reused.
        assert!(
            matches!(nth_update(6), Kind::InteractionCreated(i) if i.interaction_id == "call-1")
        );
    }
}
