//! The loaded profiles of a manager, and how a session's profile is chosen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wfm_engine::Profile;

use crate::file::{self, LoadError};

/// A profile name that no profile has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?}")]
pub struct UnknownProfile(pub String);

/// Named profiles, the default, and the agent-group mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSet {
    profiles: BTreeMap<String, Arc<Profile>>,
    default: String,
    groups: BTreeMap<String, String>,
}

impl Default for ProfileSet {
    /// Only the built-in `default` profile.
    fn default() -> Self {
        let builtin = Profile::default();
        Self {
            default: builtin.name().to_string(),
            profiles: BTreeMap::from([(builtin.name().to_string(), Arc::new(builtin))]),
            groups: BTreeMap::new(),
        }
    }
}

impl ProfileSet {
    /// Loads and validates the profile file at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::io(path, &e))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Validates `text`; `origin` names the file in diagnostics.
    pub fn parse(origin: &str, text: &str) -> Result<Self, LoadError> {
        let parsed = file::parse(origin, text)?;
        Ok(Self {
            profiles: parsed.profiles,
            default: parsed.default,
            groups: parsed.groups,
        })
    }

    /// The profile named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.get(name)
    }

    /// Every profile, by name.
    pub fn profiles(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.profiles.values()
    }

    /// The profile for a new session: the one `requested` by name, else the one mapped to
    /// the agent's `group`, else the default.
    pub fn select(&self, requested: &str, group: &str) -> Result<Arc<Profile>, UnknownProfile> {
        let name = if !requested.is_empty() {
            requested
        } else {
            self.groups
                .get(group)
                .map_or(self.default.as_str(), String::as_str)
        };
        self.profiles
            .get(name)
            .cloned()
            .ok_or_else(|| UnknownProfile(name.to_string()))
    }
}
