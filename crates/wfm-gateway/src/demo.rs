//! Demo mode: the MediaBar demo page, and the list of demo sessions it offers. The list
//! carries session references, so it exists only when the process that owns the sessions
//! (`wfm up`) hands the gateway a [`DemoDirectory`]; a deployed gateway has none.

use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

/// The demo page: plain HTML, CSS and JS, no build step and no CDN.
pub(crate) const PAGE: &str = include_str!("../assets/mediabar.html");

/// The MediaBar client library the page imports: the single-file ES module built from
/// `clients/mediabar` (its `dist` is committed, so the gateway needs no Node to build).
pub(crate) const CLIENT: &str = include_str!("../../../clients/mediabar/dist/mediabar.js");

/// One demo agent's session as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoSession {
    /// The agent id.
    pub agent_id: String,
    /// The session id.
    pub session_id: String,
    /// The session resource reference to bind with.
    pub reference: String,
}

/// The demo sessions, shared between their owner and the gateway.
#[derive(Debug, Clone, Default)]
pub struct DemoDirectory(Arc<RwLock<Vec<DemoSession>>>);

impl DemoDirectory {
    /// Replaces the listed sessions.
    pub fn publish(&self, sessions: Vec<DemoSession>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = sessions;
    }

    /// The listed sessions.
    pub fn list(&self) -> Vec<DemoSession> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
