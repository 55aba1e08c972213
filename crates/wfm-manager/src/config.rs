//! Settings of the workflow-manager service.

use std::time::Duration;

use wfm_engine::Profile;
use wfm_reference::SigningKey;

/// Everything `serve` needs besides its listener.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Signs and verifies session resource references.
    pub signing_key: SigningKey,
    /// How long a newly issued reference stays valid.
    pub reference_ttl: Duration,
    /// The profile used when `CreateSession` names none.
    pub default_profile: Profile,
    /// Reported by `GetServiceInfo`.
    pub vendor: String,
    /// Reported by `GetServiceInfo`.
    pub version: String,
}

impl ManagerConfig {
    /// Defaults around `signing_key`: 12-hour references (an agent's shift), the default
    /// profile, and this crate's version.
    pub fn new(signing_key: SigningKey) -> Self {
        Self {
            signing_key,
            reference_ttl: Duration::from_secs(12 * 60 * 60),
            default_profile: Profile::default(),
            vendor: "wfm".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}
