//! Keeps docs/profiles.md in step with the code: its option, switch and variable tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wfm_engine::{Options, Profile, Switch};
use wfm_profiles::cel::VARIABLES;

const DOC: &str = include_str!("../../../docs/profiles.md");

/// The rows of the table under `heading`: each row's cells without backticks.
fn table(heading: &str) -> Vec<Vec<String>> {
    let section = DOC
        .split(&format!("## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no section {heading}"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect()
        })
        .collect()
}

#[test]
fn the_options_table_lists_every_option_with_its_default() {
    let documented: Vec<(String, String)> = table("Options")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let code: Vec<(String, String)> = Options::default()
        .describe()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn the_switches_table_lists_every_switch_and_what_it_removes() {
    let rows = table("Switches");
    let builtin = Profile::default();
    let code: Vec<Vec<String>> = Switch::ALL
        .iter()
        .map(|s| {
            let removed: Vec<&str> = s.capabilities().iter().map(|c| c.name()).collect();
            vec![
                s.name().to_string(),
                builtin.is_on(*s).to_string(),
                removed.join(", "),
            ]
        })
        .collect();
    assert_eq!(rows, code);
}

#[test]
fn the_variables_table_lists_every_variable_a_rule_can_use() {
    let documented: Vec<String> = table("Rule variables")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let code: Vec<String> = VARIABLES
        .iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    assert_eq!(documented, code);
}
