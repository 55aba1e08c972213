//! The scenario library of `scenarios/`, embedded so that `wfm up` needs no files.

use crate::scenario::{self, Scenario, ScenarioError};

/// Every scenario file of the library: its path in the repository and its text.
pub const FILES: &[(&str, &str)] = &[
    (
        "scenarios/01-inbound-call.toml",
        include_str!("../../../scenarios/01-inbound-call.toml"),
    ),
    (
        "scenarios/02-consult-transfer.toml",
        include_str!("../../../scenarios/02-consult-transfer.toml"),
    ),
    (
        "scenarios/03-consult-cancelled.toml",
        include_str!("../../../scenarios/03-consult-cancelled.toml"),
    ),
    (
        "scenarios/04-conference.toml",
        include_str!("../../../scenarios/04-conference.toml"),
    ),
    (
        "scenarios/05-alternate.toml",
        include_str!("../../../scenarios/05-alternate.toml"),
    ),
    (
        "scenarios/06-missed-call.toml",
        include_str!("../../../scenarios/06-missed-call.toml"),
    ),
    (
        "scenarios/07-not-ready-reasons.toml",
        include_str!("../../../scenarios/07-not-ready-reasons.toml"),
    ),
    (
        "scenarios/08-chat-while-held.toml",
        include_str!("../../../scenarios/08-chat-while-held.toml"),
    ),
    (
        "scenarios/09-email-disposition.toml",
        include_str!("../../../scenarios/09-email-disposition.toml"),
    ),
    (
        "scenarios/10-recording.toml",
        include_str!("../../../scenarios/10-recording.toml"),
    ),
    (
        "scenarios/11-logout.toml",
        include_str!("../../../scenarios/11-logout.toml"),
    ),
    (
        "scenarios/12-mandatory-disposition.toml",
        include_str!("../../../scenarios/12-mandatory-disposition.toml"),
    ),
    (
        "scenarios/13-third-call-beside-a-pair.toml",
        include_str!("../../../scenarios/13-third-call-beside-a-pair.toml"),
    ),
    (
        "scenarios/14-failed-call.toml",
        include_str!("../../../scenarios/14-failed-call.toml"),
    ),
    (
        "scenarios/15-per-channel-login.toml",
        include_str!("../../../scenarios/15-per-channel-login.toml"),
    ),
    (
        "scenarios/16-chat-at-capacity.toml",
        include_str!("../../../scenarios/16-chat-at-capacity.toml"),
    ),
    (
        "scenarios/17-paused-task.toml",
        include_str!("../../../scenarios/17-paused-task.toml"),
    ),
    (
        "scenarios/18-consult-for-transfer.toml",
        include_str!("../../../scenarios/18-consult-for-transfer.toml"),
    ),
    (
        "scenarios/19-consult-for-conference.toml",
        include_str!("../../../scenarios/19-consult-for-conference.toml"),
    ),
    (
        "scenarios/20-redirect-alerting.toml",
        include_str!("../../../scenarios/20-redirect-alerting.toml"),
    ),
    (
        "scenarios/21-cancel-pending-not-ready.toml",
        include_str!("../../../scenarios/21-cancel-pending-not-ready.toml"),
    ),
    (
        "scenarios/22-single-step-conference.toml",
        include_str!("../../../scenarios/22-single-step-conference.toml"),
    ),
    (
        "scenarios/23-dial-waits-for-other-work.toml",
        include_str!("../../../scenarios/23-dial-waits-for-other-work.toml"),
    ),
    (
        "scenarios/24-conference-drop-by-controller.toml",
        include_str!("../../../scenarios/24-conference-drop-by-controller.toml"),
    ),
    (
        "scenarios/25-supervisor-monitor-whisper-barge.toml",
        include_str!("../../../scenarios/25-supervisor-monitor-whisper-barge.toml"),
    ),
    (
        "scenarios/26-preview-accept.toml",
        include_str!("../../../scenarios/26-preview-accept.toml"),
    ),
    (
        "scenarios/27-preview-skip.toml",
        include_str!("../../../scenarios/27-preview-skip.toml"),
    ),
    (
        "scenarios/28-callback-call-now.toml",
        include_str!("../../../scenarios/28-callback-call-now.toml"),
    ),
    (
        "scenarios/29-chats-need-dispositions.toml",
        include_str!("../../../scenarios/29-chats-need-dispositions.toml"),
    ),
    (
        "scenarios/30-chat-signs-out-during-a-call.toml",
        include_str!("../../../scenarios/30-chat-signs-out-during-a-call.toml"),
    ),
    (
        "scenarios/31-acw-timeout-and-extension.toml",
        include_str!("../../../scenarios/31-acw-timeout-and-extension.toml"),
    ),
    (
        "scenarios/32-commands-answer-hold-wrap-up.toml",
        include_str!("../../../scenarios/32-commands-answer-hold-wrap-up.toml"),
    ),
    (
        "scenarios/33-commands-consult-transfer.toml",
        include_str!("../../../scenarios/33-commands-consult-transfer.toml"),
    ),
    (
        "scenarios/34-commands-refused.toml",
        include_str!("../../../scenarios/34-commands-refused.toml"),
    ),
];

/// The parsed library.
pub fn scenarios() -> Result<Vec<Scenario>, ScenarioError> {
    FILES
        .iter()
        .map(|(origin, text)| scenario::parse(origin, text))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_library_is_the_scenarios_directory_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("scenarios/{}", e.file_name().to_string_lossy()))
            .filter(|name| name.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = super::FILES
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(
            embedded, on_disk,
            "embed every scenario file, and only those"
        );
        assert_eq!(
            super::scenarios().map(|s| s.len()).ok(),
            Some(on_disk.len())
        );
    }
}
