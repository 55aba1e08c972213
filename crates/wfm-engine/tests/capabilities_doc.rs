//! Keeps `docs/capabilities.md` and the engine in step: the per-kind capability lists and
//! their order, the option names and defaults, and what each feature switch removes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use wfm_engine::{Capability, Options, Switch, TargetKind};

const DOC: &str = include_str!("../../../docs/capabilities.md");

const KIND_HEADING: &str = "## Target kind: ";

/// The rows of the first table after the level-2 heading `heading`, as trimmed cells, without
/// the header and separator rows.
fn table(heading: &str) -> Vec<Vec<String>> {
    let mut lines = DOC.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "no heading {heading:?} in the doc");
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| !l.starts_with("## "))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_start_matches('|')
                .trim_end_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() >= 2, "no table under {heading:?}");
    // Header, then the `| --- |` separator.
    assert!(
        rows[1]
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':')),
        "malformed table under {heading:?}"
    );
    rows.into_iter().skip(2).collect()
}

/// The names in backticks in `cell`, in order.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// `cell` holding exactly one name in backticks.
fn single_name(cell: &str) -> &str {
    let spans = code_spans(cell);
    assert_eq!(spans.len(), 1, "expected one `name` in {cell:?}");
    assert_eq!(cell, format!("`{}`", spans[0]), "extra text in {cell:?}");
    spans[0]
}

#[test]
fn the_doc_has_one_table_per_target_kind_and_no_other() {
    let documented: Vec<&str> = DOC
        .lines()
        .filter_map(|l| l.strip_prefix(KIND_HEADING))
        .map(str::trim)
        .collect();
    let kinds: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(documented, kinds);
}

#[test]
fn each_kind_lists_its_catalogue_in_order() {
    for kind in TargetKind::ALL {
        let heading = format!("{KIND_HEADING}{}", kind.as_str());
        let documented: Vec<String> = table(&heading)
            .iter()
            .map(|row| single_name(&row[0]).to_string())
            .collect();
        let code: Vec<&str> = kind.catalogue().iter().map(Capability::name).collect();
        assert_eq!(documented, code, "{heading}");
        for row in table(&heading) {
            assert_eq!(row.len(), 4, "{heading}: {row:?}");
            assert!(!row[1].is_empty(), "{heading}: {} has no rule", row[0]);
            assert!(!row[3].is_empty(), "{heading}: {} cites no anchor", row[0]);
        }
    }
}

#[test]
fn the_affected_by_column_names_real_options_and_exactly_the_right_switches() {
    let options: BTreeSet<String> = Options::default()
        .describe()
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    let mut options_mentioned = BTreeSet::new();
    for kind in TargetKind::ALL {
        let heading = format!("{KIND_HEADING}{}", kind.as_str());
        for row in table(&heading) {
            let cap = Capability::from_name(single_name(&row[0])).unwrap();
            let named = code_spans(&row[2]);
            if named.is_empty() {
                assert_eq!(row[2], "—", "{heading}: {cap}");
            }
            let mut switches = BTreeSet::new();
            for name in named {
                match (Switch::from_name(name), options.contains(name)) {
                    (Some(_), true) => panic!("{name} is both a switch and an option"),
                    (Some(switch), false) => {
                        switches.insert(switch.name());
                    }
                    (None, true) => {
                        options_mentioned.insert(name.to_string());
                    }
                    (None, false) => panic!("{heading}: {cap} names unknown {name:?}"),
                }
            }
            let removing: BTreeSet<&str> = Switch::ALL
                .iter()
                .filter(|s| s.capabilities().contains(cap))
                .map(|s| s.name())
                .collect();
            assert_eq!(switches, removing, "{heading}: switches affecting {cap}");
        }
    }
    assert_eq!(
        options_mentioned, options,
        "every option affects some capability"
    );
}

#[test]
fn options_and_defaults_match_the_code() {
    let documented: Vec<(String, String)> = table("## Options")
        .iter()
        .map(|row| {
            assert_eq!(row.len(), 3, "{row:?}");
            (
                single_name(&row[0]).to_string(),
                single_name(&row[1]).to_string(),
            )
        })
        .collect();
    let code: Vec<(String, String)> = Options::default()
        .describe()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn switches_and_what_they_remove_match_the_code() {
    let documented: Vec<(String, Vec<String>)> = table("## Feature switches")
        .iter()
        .map(|row| {
            assert_eq!(row.len(), 3, "{row:?}");
            (
                single_name(&row[0]).to_string(),
                code_spans(&row[1])
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            )
        })
        .collect();
    let code: Vec<(String, Vec<String>)> = Switch::ALL
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                s.capabilities()
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn every_capability_named_anywhere_in_the_doc_exists() {
    let unknown: Vec<&str> = code_spans(DOC)
        .into_iter()
        .filter(|span| {
            (span.starts_with("session.")
                || span.starts_with("channel.")
                || span.starts_with("interaction."))
                && Capability::from_name(span).is_none()
        })
        .collect();
    assert!(unknown.is_empty(), "unknown capabilities: {unknown:?}");
}
