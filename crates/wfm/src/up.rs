//! `wfm up`: the whole stack in one process on embedded defaults: in-memory state, loopback
//! ports, a generated signing key, demo agents replaying the scenario library (and carrying
//! out the page's commands on a simulated CTI platform), and the MediaBar demo page.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::task::JoinSet;
use wfm_gateway::DemoSession;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;
use wfm_sim::stack::{Stack, StackOptions};

/// The demo agents' profile: the built-in rules, with reason codes and dispositions for the
/// page's pickers.
const DEMO_PROFILES: &str = include_str!("../../../profiles/demo.toml");

/// Options of `wfm up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// The manager's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    manager_listen: SocketAddr,
    /// The gateway's address: the demo page and the MediaBar WebSocket.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway_listen: SocketAddr,
    /// Demo agents replaying the scenario library.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// A profile file for the manager (default: the embedded demo profile,
    /// `profiles/demo.toml`).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Demo agents start logged out and only do what the page asks (no scripted replay).
    #[arg(long)]
    no_replay: bool,
}

/// Runs the stack until ctrl-c or SIGTERM.
pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    // The replay plays the IP alone; scenarios that send commands need a MediaBar.
    let mut scenarios = wfm_sim::library::scenarios()?;
    scenarios.retain(|scenario| !scenario.sends_commands());
    let demo = wfm_gateway::DemoDirectory::default();
    let options = StackOptions {
        manager: args.manager_listen,
        gateway: args.gateway_listen,
        profiles: args.profiles.as_deref(),
        profile_text: Some(("profiles/demo.toml", DEMO_PROFILES)),
        demo: Some(demo.clone()),
    };
    let stack = Stack::start(options).await?;
    let manager = WorkflowManagerClient::connect(stack.manager_url.clone())
        .await
        .context("cannot reach the in-process manager")?;
    let manager = wfm_sim::resilient::Manager::from(manager);

    // The demo agents' Interaction Processor: one command stream for all their sessions.
    let routes = wfm_sim::processor::Routes::default();
    let mut agents = JoinSet::new();
    agents.spawn(wfm_sim::processor::serve(
        manager.clone(),
        wfm_sim::demo::PROCESSOR_ID.to_string(),
        routes.clone(),
    ));
    let mut listed = Vec::new();
    for index in 1..=args.agents {
        let (agent, session) = wfm_sim::demo::create(&manager, index).await?;
        listed.push(DemoSession {
            agent_id: agent.agent_id.clone(),
            session_id: agent.session_id.clone(),
            reference: agent.reference.clone(),
        });
        let scenarios = scenarios.clone();
        let commands = routes.add(&agent.session_id);
        let replay = !args.no_replay;
        agents.spawn(async move {
            let played =
                wfm_sim::demo::play(session, &scenarios, index - 1, replay, commands).await;
            if let Err(error) = played {
                tracing::error!(%error, agent = %agent.agent_id, "demo agent stopped");
            }
        });
    }
    demo.publish(listed.clone());

    let page = format!("http://{}/", stack.gateway_addr);
    println!("Workflow Manager stack is up.\n");
    println!("  demo page           {page}");
    println!("  MediaBar WebSocket  {}", stack.mediabar_url());
    println!(
        "  manager gRPC        {}   (try: grpcurl -plaintext {} list)",
        stack.manager_url,
        stack.manager_url.trim_start_matches("http://")
    );
    if let Some(first) = listed.first() {
        println!(
            "\n  open the page bound to an agent: {page}?session={}",
            first.session_id
        );
    }
    for agent in &listed {
        println!("    {}  session {}", agent.agent_id, agent.session_id);
    }
    println!("\nPress Ctrl-C to stop.");

    wfm_telemetry::shutdown_signal().await;
    println!("stopping…");
    agents.shutdown().await;
    stack.stop().await;
    Ok(())
}
