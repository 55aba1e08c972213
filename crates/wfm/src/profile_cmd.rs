//! `wfm profile check` and `wfm profile explain`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use wfm_engine::{
    Capability, Id, Profile, Session, SessionState, TargetExplanation, Verdict, explain,
};
use wfm_profiles::ProfileSet;
use wfm_proto::v1 as pb;

use crate::snapshot;

/// Validates a profile file; the error lists every problem as `file:line:col: message`.
pub(crate) fn check(path: &Path) -> anyhow::Result<String> {
    let set = ProfileSet::load(path).map_err(|e| anyhow!("{e}"))?;
    let names: Vec<&str> = set.profiles().map(|p| p.name()).collect();
    Ok(format!(
        "{}: ok ({} profiles: {})\n",
        path.display(),
        names.len(),
        names.join(", ")
    ))
}

/// Where the session state to explain comes from.
pub(crate) enum Source<'a> {
    /// A snapshot file.
    Snapshot(&'a Path),
    /// A live session of a running manager.
    Session { id: &'a str, manager: &'a str },
}

/// Explains every capability of a session under a profile.
pub(crate) async fn run_explain(
    profiles: Option<&Path>,
    profile: Option<&str>,
    source: Source<'_>,
) -> anyhow::Result<String> {
    let set = match profiles {
        Some(path) => ProfileSet::load(path).map_err(|e| anyhow!("{e}"))?,
        None => ProfileSet::default(),
    };
    let (session_id, state, live_profile) = match source {
        Source::Snapshot(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (id, state) = snapshot::parse(&path.display().to_string(), &text)?;
            (id, state, None)
        }
        Source::Session { id, manager } => fetch(id, manager).await?,
    };
    let name = profile.or(live_profile.as_deref()).unwrap_or("");
    let chosen = set.select(name, "")?;
    // Validates the state exactly as the manager would before explaining it.
    let session =
        Session::new(session_id, Arc::clone(&chosen), state).context("invalid session state")?;
    Ok(render(
        session.id(),
        &chosen,
        &explain(session.state(), &chosen),
    ))
}

async fn fetch(id: &str, manager: &str) -> anyhow::Result<(Id, SessionState, Option<String>)> {
    let mut client =
        pb::workflow_manager_client::WorkflowManagerClient::connect(manager.to_string())
            .await
            .with_context(|| format!("cannot reach the manager at {manager}"))?;
    let response = client
        .get_session(pb::GetSessionRequest {
            session_id: id.to_string(),
        })
        .await
        .map_err(|status| anyhow!("GetSession {id}: {}", status.message()))?
        .into_inner();
    let snapshot = response.state.unwrap_or_default();
    let state = wfm_manager::convert::state(snapshot.channels, snapshot.interactions)?;
    Ok((Id::parse("session id", id)?, state, Some(response.profile)))
}

/// The widest capability name, so that the reasons line up in one column.
const NAME_WIDTH: usize = {
    let mut widest = 0;
    let mut i = 0;
    while i < Capability::ALL.len() {
        let len = Capability::ALL[i].name().len();
        if len > widest {
            widest = len;
        }
        i += 1;
    }
    widest
};

fn render(session: &Id, profile: &Profile, targets: &[TargetExplanation]) -> String {
    let mut out = format!("profile {}\n", profile.name());
    for target in targets {
        // Values read as labels on their own, except the ones that need their key to mean
        // anything (a bare "3" or "true"). Attached data (`data.*`) is left out: it decides
        // nothing unless a custom rule reads it, and that rule's line names it.
        let labels: Vec<String> = target
            .context
            .entries()
            .filter(|(key, _)| !key.starts_with("data."))
            .map(|(key, value)| match key.as_ref() {
                "participants" => format!("{value} parties"),
                "reasons" | "reason_required" => format!("{key} {value}"),
                _ => value.to_string(),
            })
            .collect();
        let _ = writeln!(
            out,
            "\n{}  ({}: {})",
            target.target.render(session),
            target.kind.as_str(),
            labels.join(", ")
        );
        for entry in &target.capabilities {
            let (status, why) = match &entry.verdict {
                Verdict::Enabled => ("enabled", format!("state rule: {}", entry.state_rule)),
                Verdict::StateRule => (
                    "disabled",
                    format!("state rule needs: {}", entry.state_rule),
                ),
                Verdict::Option(option) => ("disabled", format!("option {option} forbids it")),
                Verdict::SwitchedOff(switch) => {
                    ("absent", format!("switch {} is off", switch.name()))
                }
                Verdict::CustomRule(rule) => (
                    "disabled",
                    format!("custom rule {:?}: {}", rule.name, rule.expression),
                ),
            };
            let _ = writeln!(
                out,
                "  {status:<9}{:<width$}  {why}",
                entry.capability.name(),
                width = NAME_WIDTH
            );
        }
    }
    out
}
