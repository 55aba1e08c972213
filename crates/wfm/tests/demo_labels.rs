//! The demo page names every capability of the catalogue in words: each has an entry in its
//! `LABELS` table, so that no button falls back to the raw capability name.
#![allow(clippy::expect_used)]

use wfm_engine::Capability;

const PAGE: &str = include_str!("../../wfm-gateway/assets/mediabar.html");

/// The page's `LABELS = { ... };` table.
fn labels() -> &'static str {
    let start = PAGE
        .find("const LABELS = {")
        .expect("the page has a LABELS table");
    let rest = &PAGE[start..];
    let end = rest.find("};").expect("the LABELS table ends");
    &rest[..end]
}

#[test]
fn every_capability_of_the_catalogue_has_a_readable_label_on_the_demo_page() {
    let table = labels();
    let missing: Vec<&str> = Capability::ALL
        .iter()
        .map(|capability| capability.name())
        .filter(|name| !table.contains(&format!("\"{name}\": \"")))
        .collect();
    assert!(
        missing.is_empty(),
        "no label on the demo page for {missing:?}"
    );
}
