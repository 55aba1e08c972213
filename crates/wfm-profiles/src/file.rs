//! The profile file format and its complete validation.
//!
//! ```toml
//! default = "site"                 # profile for sessions that name none and match no group
//!
//! [groups]                         # agent group -> profile
//! vip-desk = "vip"
//!
//! [profiles.site]
//! extends = "default"              # optional; "default" is the built-in profile
//! options = { logout_requires_not_ready = true }
//! switches = { recording = false }
//! reasons = { not_ready = ["break", "lunch"], not_ready_required = true, logout = ["end_of_shift"], wrap_up = ["resolved", "sale"] }
//!
//! [[profiles.site.rules]]
//! name = "no-vip-blind-transfer"
//! capability = "interaction.singleStepTransfer"
//! when = 'interaction.data.tier == "vip"'
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use wfm_engine::{Capability, CustomRule, Options, Profile, ReasonCodes, Switch, limits};

use crate::cel::{self, Scope};

/// One problem in a profile file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )
    }
}

/// Every problem found in a profile file; a file with any problem is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl LoadError {
    /// The file at `path` could not be read at all.
    pub fn io(path: &Path, error: &std::io::Error) -> Self {
        LoadError {
            diagnostics: vec![Diagnostic {
                origin: path.display().to_string(),
                line: 1,
                column: 1,
                message: format!("cannot read: {error}"),
            }],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDto {
    default: Option<Spanned<String>>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    profiles: BTreeMap<String, Spanned<ProfileDto>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDto {
    extends: Option<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    options: OptionsDto,
    #[serde(default)]
    switches: BTreeMap<String, Spanned<bool>>,
    reasons: Option<ReasonsDto>,
    show_monitoring: Option<bool>,
    #[serde(default)]
    rules: Vec<RuleDto>,
}

/// Reason codes; a profile that lists none inherits its base's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonsDto {
    #[serde(default)]
    not_ready: Vec<Spanned<String>>,
    #[serde(default)]
    not_ready_required: bool,
    #[serde(default)]
    logout: Vec<Spanned<String>>,
    #[serde(default)]
    logout_required: bool,
    /// Dispositions offered in wrap-up (required with `mandatory_disposition`).
    #[serde(default)]
    wrap_up: Vec<Spanned<String>>,
}

/// Option overrides; the names are the engine's option names (checked by a test).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionsDto {
    logout_requires_not_ready: Option<bool>,
    reject_alerting: Option<bool>,
    transfer_on_alerting: Option<bool>,
    max_conference_parties: Option<Spanned<i64>>,
    mandatory_disposition: Option<bool>,
    dial_during_other_media: Option<bool>,
    single_step_transfer_in_consult: Option<bool>,
    acw_timeout_secs: Option<Spanned<i64>>,
    max_wrap_up_extensions: Option<Spanned<i64>>,
    drop_requires_controller: Option<bool>,
    max_channel_capacity: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDto {
    name: Spanned<String>,
    capability: Spanned<String>,
    when: Spanned<String>,
}

/// The validated content of a file.
pub(crate) struct Parsed {
    pub(crate) profiles: BTreeMap<String, Arc<Profile>>,
    pub(crate) default: String,
    pub(crate) groups: BTreeMap<String, String>,
}

/// Turns byte offsets into positioned diagnostics.
struct Reporter<'a> {
    origin: &'a str,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.diagnostics.push(Diagnostic {
            origin: self.origin.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    fn span(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.at(span.start, message);
    }
}

const MIN_PARTIES: i64 = 2;
const MAX_PARTIES: i64 = 64;

pub(crate) fn parse(origin: &str, text: &str) -> Result<Parsed, LoadError> {
    let mut report = Reporter {
        origin,
        text,
        diagnostics: Vec::new(),
    };
    let dto: FileDto = match toml::from_str(text) {
        Ok(dto) => dto,
        Err(error) => {
            let offset = error.span().map_or(0, |s| s.start);
            report.at(offset, error.message().trim().to_string());
            return Err(LoadError {
                diagnostics: report.diagnostics,
            });
        }
    };

    let builtin = Profile::default();
    let mut built: BTreeMap<String, Arc<Profile>> = BTreeMap::new();
    built.insert(builtin.name().to_string(), Arc::new(builtin));
    if let Some(reserved) = dto.profiles.get(Profile::DEFAULT_NAME) {
        report.span(
            reserved.span(),
            "the profile name \"default\" is reserved for the built-in profile",
        );
    }
    let mut builder = Builder {
        dtos: &dto.profiles,
        built: &mut built,
        in_cycle: HashSet::new(),
        report: &mut report,
    };
    for name in dto.profiles.keys() {
        builder.build(name, &mut Vec::new());
    }

    let default = match &dto.default {
        Some(name) if !built.contains_key(name.get_ref()) => {
            report.span(
                name.span(),
                format!("default names unknown profile {:?}", name.get_ref()),
            );
            String::new()
        }
        Some(name) => name.get_ref().clone(),
        None => Profile::DEFAULT_NAME.to_string(),
    };
    let mut groups = BTreeMap::new();
    for (group, profile) in &dto.groups {
        if built.contains_key(profile.get_ref()) {
            groups.insert(group.clone(), profile.get_ref().clone());
        } else {
            report.span(
                profile.span(),
                format!(
                    "group {group:?} maps to unknown profile {:?}",
                    profile.get_ref()
                ),
            );
        }
    }

    if report.diagnostics.is_empty() {
        Ok(Parsed {
            profiles: built,
            default,
            groups,
        })
    } else {
        report.diagnostics.sort_by_key(|d| (d.line, d.column));
        report.diagnostics.dedup();
        Err(LoadError {
            diagnostics: report.diagnostics,
        })
    }
}

/// Builds profiles in dependency order.
struct Builder<'a, 'r> {
    dtos: &'a BTreeMap<String, Spanned<ProfileDto>>,
    built: &'a mut BTreeMap<String, Arc<Profile>>,
    /// Members of a reported cycle, so that the cycle is reported once.
    in_cycle: HashSet<String>,
    report: &'a mut Reporter<'r>,
}

impl Builder<'_, '_> {
    /// Builds profile `name` after its base, reporting cycles, and records it in `built`.
    /// Returns `None` when it cannot be built; its problems are already reported.
    fn build(&mut self, name: &str, chain: &mut Vec<String>) -> Option<Arc<Profile>> {
        if let Some(done) = self.built.get(name) {
            return Some(done.clone());
        }
        if self.in_cycle.contains(name) {
            return None;
        }
        let dtos = self.dtos;
        let dto = dtos.get(name)?.get_ref();
        if chain.iter().any(|n| n == name) {
            chain.push(name.to_string());
            let span = dto.extends.as_ref().map_or(0..0, Spanned::span);
            self.report
                .span(span, format!("extends cycle: {}", chain.join(" -> ")));
            self.in_cycle.extend(chain.iter().cloned());
            chain.pop();
            return None;
        }
        let report = &mut *self.report;
        let base_name = dto
            .extends
            .as_ref()
            .map_or(Profile::DEFAULT_NAME, |e| e.get_ref().as_str());
        chain.push(name.to_string());
        let base = if base_name == Profile::DEFAULT_NAME || dtos.contains_key(base_name) {
            self.build(base_name, chain)
        } else {
            if let Some(extends) = &dto.extends {
                report.span(
                    extends.span(),
                    format!("profile {name:?} extends unknown profile {base_name:?}"),
                );
            }
            None
        };
        chain.pop();
        let base = base?;
        let report = &mut *self.report;

        let options = options(base.options(), &dto.options, report);
        let mut off: Vec<Switch> = Switch::ALL
            .into_iter()
            .filter(|s| !base.is_on(*s))
            .collect();
        for (key, on) in &dto.switches {
            match Switch::from_name(key) {
                Some(switch) => {
                    off.retain(|s| *s != switch);
                    if !*on.get_ref() {
                        off.push(switch);
                    }
                }
                None => {
                    let known: Vec<&str> = Switch::ALL.iter().map(|s| s.name()).collect();
                    report.span(
                        on.span(),
                        format!("unknown switch {key:?}; known: {}", known.join(", ")),
                    );
                }
            }
        }
        let mut rules = base.rules().to_vec();
        let mut names: HashSet<&str> = HashSet::new();
        for rule in &dto.rules {
            if !names.insert(rule.name.get_ref())
                || base.rules().iter().any(|r| &r.name == rule.name.get_ref())
            {
                report.span(
                    rule.name.span(),
                    format!("rule name {:?} is used twice", rule.name.get_ref()),
                );
            }
            if let Some(compiled) = compile_rule(rule, report) {
                rules.push(compiled);
            }
        }
        let reasons = reasons(base.reasons(), dto.reasons.as_ref(), report);
        let profile = Arc::new(
            Profile::new(name, options, &off)
                .with_rules(rules)
                .with_reasons(reasons)
                .with_show_monitoring(dto.show_monitoring.unwrap_or(base.show_monitoring())),
        );
        self.built.insert(name.to_string(), profile.clone());
        Some(profile)
    }
}

fn options(base: &Options, dto: &OptionsDto, report: &mut Reporter<'_>) -> Options {
    let mut options = base.clone();
    let OptionsDto {
        logout_requires_not_ready,
        reject_alerting,
        transfer_on_alerting,
        max_conference_parties,
        mandatory_disposition,
        dial_during_other_media,
        single_step_transfer_in_consult,
        acw_timeout_secs,
        max_wrap_up_extensions,
        drop_requires_controller,
        max_channel_capacity,
    } = dto;
    let set = |target: &mut bool, value: &Option<bool>| {
        if let Some(value) = value {
            *target = *value;
        }
    };
    set(
        &mut options.logout_requires_not_ready,
        logout_requires_not_ready,
    );
    set(&mut options.reject_alerting, reject_alerting);
    set(&mut options.transfer_on_alerting, transfer_on_alerting);
    set(&mut options.mandatory_disposition, mandatory_disposition);
    set(
        &mut options.dial_during_other_media,
        dial_during_other_media,
    );
    set(
        &mut options.single_step_transfer_in_consult,
        single_step_transfer_in_consult,
    );
    set(
        &mut options.drop_requires_controller,
        drop_requires_controller,
    );
    if let Some(parties) = max_conference_parties {
        match u32::try_from(*parties.get_ref()) {
            Ok(value) if (MIN_PARTIES..=MAX_PARTIES).contains(parties.get_ref()) => {
                options.max_conference_parties = value;
            }
            _ => report.span(
                parties.span(),
                format!(
                    "max_conference_parties must be between {MIN_PARTIES} and {MAX_PARTIES}, got {}",
                    parties.get_ref()
                ),
            ),
        }
    }
    // A day of after-call work, and ten extensions, are far past any site's policy.
    let mut bounded = |value: &Option<Spanned<i64>>, name: &str, max: u32, target: &mut u32| {
        if let Some(value) = value {
            match u32::try_from(*value.get_ref()) {
                Ok(v) if v <= max => *target = v,
                _ => report.span(
                    value.span(),
                    format!(
                        "{name} must be between 0 and {max}, got {}",
                        value.get_ref()
                    ),
                ),
            }
        }
    };
    bounded(
        acw_timeout_secs,
        "acw_timeout_secs",
        86_400,
        &mut options.acw_timeout_secs,
    );
    bounded(
        max_wrap_up_extensions,
        "max_wrap_up_extensions",
        10,
        &mut options.max_wrap_up_extensions,
    );
    if let Some(capacity) = max_channel_capacity {
        match u32::try_from(*capacity.get_ref()) {
            Ok(value) if (1..=i64::from(limits::MAX_CAPACITY)).contains(capacity.get_ref()) => {
                options.max_channel_capacity = value;
            }
            _ => report.span(
                capacity.span(),
                format!(
                    "max_channel_capacity must be between 1 and {}, got {}",
                    limits::MAX_CAPACITY,
                    capacity.get_ref()
                ),
            ),
        }
    }
    options
}

/// The reason codes of `dto`, or `base`'s when it lists none. A code is a non-empty
/// free-text field within the engine's text limit, listed once, without the comma that
/// separates codes in the view context.
fn reasons(base: &ReasonCodes, dto: Option<&ReasonsDto>, report: &mut Reporter<'_>) -> ReasonCodes {
    let Some(dto) = dto else {
        return base.clone();
    };
    let mut check = |codes: &[Spanned<String>], what: &str| -> Vec<String> {
        let mut seen = HashSet::new();
        let mut kept = Vec::with_capacity(codes.len());
        for code in codes {
            let text = code.get_ref();
            if text.is_empty() || text.contains(',') || text.len() > limits::MAX_TEXT {
                report.span(
                    code.span(),
                    format!(
                        "{what} reason code {text:?} must be 1 to {} bytes without a comma",
                        limits::MAX_TEXT
                    ),
                );
            } else if !seen.insert(text.as_str()) {
                report.span(
                    code.span(),
                    format!("{what} reason code {text:?} is listed twice"),
                );
            } else {
                kept.push(text.clone());
            }
        }
        kept
    };
    let not_ready = check(&dto.not_ready, "not-ready");
    let logout = check(&dto.logout, "logout");
    let wrap_up = check(&dto.wrap_up, "wrap-up");
    ReasonCodes::new(
        not_ready,
        dto.not_ready_required,
        logout,
        dto.logout_required,
    )
    .with_wrap_up(wrap_up)
}

fn compile_rule(rule: &RuleDto, report: &mut Reporter<'_>) -> Option<CustomRule> {
    let Some(capability) = Capability::from_name(rule.capability.get_ref()) else {
        report.span(
            rule.capability.span(),
            format!("unknown capability {:?}", rule.capability.get_ref()),
        );
        return None;
    };
    let scope = match capability.name().split('.').next() {
        Some("session") => Scope::Session,
        Some("channel") => Scope::Channel,
        _ => Scope::Interaction,
    };
    let source = rule.when.get_ref();
    match cel::compile(source, scope) {
        Ok(condition) => Some(CustomRule {
            name: rule.name.get_ref().clone(),
            capability,
            expression: source.clone(),
            condition: Arc::new(condition),
        }),
        Err(error) => {
            let span = rule.when.span();
            report.at(
                expression_offset(report.text, span, error.offset),
                format!("in `when`: {}", error.message),
            );
            None
        }
    }
}

/// Where byte `offset` of a string value's content lies in the file. Exact for strings
/// without escapes on one line (literal `'...'` strings are the natural choice for CEL);
/// otherwise the start of the value.
fn expression_offset(text: &str, span: Range<usize>, offset: usize) -> usize {
    let raw = text.get(span.clone()).unwrap_or("");
    let simple = (raw.starts_with('\'') || raw.starts_with('"'))
        && !raw.starts_with("'''")
        && !raw.starts_with("\"\"\"")
        && !raw.contains('\\')
        && !raw.contains('\n');
    if simple {
        span.start + 1 + offset
    } else {
        span.start
    }
}
