//! Measures the manager's memory per idle session and per idle binding on `Attach`.
//!
//! `cargo run --release -p wfm-manager --example bind_rss -- [SESSIONS] [ATTACH_STREAMS]`
//!
//! The manager runs in a child process (this example re-executed with `serve`) so that its
//! resident set holds only server state; the parent is the Interaction Processor and the
//! gateway. Figures are RSS deltas divided by the session count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use wfm_manager::ManagerConfig;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_reference::SigningKey;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve().await;
    }
    let sessions: usize = args.get(1).map_or(Ok(10_000), |a| a.parse())?;
    let streams: usize = args.get(2).map_or(Ok(4), |a| a.parse())?;

    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
    let addr = line.trim().to_string();
    let pid = child.id();
    let mut client = WorkflowManagerClient::connect(format!("http://{addr}")).await?;
    settle().await;
    let base = rss_kib(pid)?;

    let mut references = Vec::with_capacity(sessions);
    for index in 0..sessions {
        let created = client
            .create_session(pb::CreateSessionRequest {
                session_id: format!("s{index}"),
                agent_id: format!("agent{index}"),
                channels: vec![pb::Channel {
                    channel_id: "voice".into(),
                    media: pb::Media::Voice.into(),
                    state: pb::AgentState::Ready.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await?
            .into_inner();
        references.push(created.resource_reference);
    }
    settle().await;
    let created = rss_kib(pid)?;

    let mut senders = Vec::new();
    let mut inbound = Vec::new();
    for _ in 0..streams {
        let (tx, rx) = mpsc::unbounded_channel();
        inbound.push(
            client
                .attach(UnboundedReceiverStream::new(rx))
                .await?
                .into_inner(),
        );
        senders.push(tx);
    }
    for (index, reference) in references.iter().enumerate() {
        senders[index % streams].send(pb::AttachRequest {
            kind: Some(pb::attach_request::Kind::Bind(pb::AttachBind {
                binding_id: index as u64,
                resource_reference: reference.clone(),
                takeover: false,
            })),
        })?;
    }
    // Every bind answers with a result and two view-state events; drain them all.
    let mut bound = 0;
    for stream in &mut inbound {
        while bound < sessions {
            let Some(message) = stream.message().await? else {
                break;
            };
            if let Some(pb::attach_response::Kind::BindResult(result)) = message.kind {
                anyhow::ensure!(result.code == 0, "bind refused: {}", result.message);
                bound += 1;
                if bound % (sessions / streams).max(1) == 0 {
                    break;
                }
            }
        }
    }
    settle().await;
    let bound_rss = rss_kib(pid)?;
    child.kill()?;

    let per = |delta_kib: u64| delta_kib as f64 * 1024.0 / sessions as f64;
    println!("sessions {sessions}, attach streams {streams}, binds acknowledged {bound}");
    println!("manager RSS: base {base} KiB, created {created} KiB, bound {bound_rss} KiB");
    println!(
        "per idle session (unbound): {:.0} B",
        per(created.saturating_sub(base))
    );
    println!(
        "per binding on Attach:      {:.0} B",
        per(bound_rss.saturating_sub(created))
    );
    println!(
        "per idle bound session:     {:.0} B",
        per(bound_rss.saturating_sub(base))
    );
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let config = ManagerConfig::new(SigningKey::generate()?);
    wfm_manager::serve(listener, config, CancellationToken::new()).await?;
    Ok(())
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}
