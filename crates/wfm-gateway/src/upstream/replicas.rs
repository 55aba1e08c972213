//! Routing to replicas: the endpoints a binding can be sent to, made from the seeds, from
//! NATS and from the owner URLs replicas name, and the redirects and moves that follow a
//! session to its owner.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{MAX_REDIRECTS, Phase, Slot, Table, Upstream};
use crate::endpoints;
use crate::errors::GatewayError;
use crate::settings::is_manager_url;

impl Upstream {
    /// The endpoint of `url`, made (or made active again) and started if need be; `None`
    /// if `url` cannot be a manager endpoint or there are too many.
    fn endpoint(self: &Arc<Self>, table: &mut Table, url: &str) -> Option<usize> {
        let endpoint = match table.endpoints.find(url) {
            Some(known) if table.is_active(known) => return Some(known),
            Some(known) => known,
            None => {
                let url = url.trim();
                if !is_manager_url(url) {
                    tracing::warn!(url, "manager url ignored: not an http:// or https:// url");
                    return None;
                }
                let channel = endpoints::channel(url, &self.config).ok()?;
                let Some(endpoint) = table.endpoints.insert(url, channel) else {
                    tracing::warn!(
                        url,
                        max = endpoints::MAX_ENDPOINTS,
                        "manager url ignored: too many endpoints"
                    );
                    return None;
                };
                endpoint
            }
        };
        allocate(table, endpoint, self.config.upstream_streams);
        if let Some(started) = table.endpoints.get(endpoint) {
            tracing::info!(url = %started.url, "manager endpoint added");
            self.spawn_streams(started);
        }
        self.count_endpoints(table);
        Some(endpoint)
    }

    fn count_endpoints(&self, table: &Table) {
        self.config
            .stats
            .upstream_endpoints
            .set(table.endpoints.active() as i64);
    }

    /// A replica found in NATS: bind there from now on.
    pub(crate) fn discovered(self: &Arc<Self>, url: &str) {
        let mut table = self.table();
        self.endpoint(&mut table, url);
    }

    /// A replica gone from NATS: close its streams, whose bindings then rebind elsewhere,
    /// unless it is one of the `manager_url` seeds. Seed or not, the sessions it owned are
    /// forgotten and the binds parked for it are released at once.
    pub(crate) fn departed(&self, url: &str) {
        let mut table = self.table();
        let Some(index) = table.endpoints.find(url) else {
            return;
        };
        table.owners.forget_endpoint(index);
        // Binds parked for this endpoint (redirected to a replica that then died) would
        // otherwise wait out the whole request timeout for a connection that never comes:
        // they are retried now at a live replica, which takes the dead one's sessions over.
        let now = Instant::now();
        let stranded: Vec<u64> = table
            .parked
            .iter()
            .copied()
            .filter(|id| {
                table
                    .routes
                    .get(id)
                    .and_then(|route| route.parked)
                    .is_some_and(|(endpoint, _)| endpoint == index)
            })
            .collect();
        for id in stranded {
            self.unavailable(&mut table, id, now);
        }
        let Some(endpoint) = table.endpoints.get_mut(index) else {
            return;
        };
        if endpoint.seed || !endpoint.active {
            return;
        }
        endpoint.active = false;
        endpoint.retire.cancel();
        tracing::info!(url = %endpoint.url, "manager endpoint retired");
        self.count_endpoints(&table);
    }

    /// Sends a bind that a replica refused as not the owner to the owner at `url`, or
    /// counts the manager as unavailable past [`MAX_REDIRECTS`].
    pub(super) fn redirect(self: &Arc<Self>, table: &mut Table, id: u64, url: &str, now: Instant) {
        let Some(route) = table.routes.get_mut(&id) else {
            return;
        };
        route.redirects = route.redirects.saturating_add(1);
        let (redirects, session) = (route.redirects, route.session.clone());
        let owner = if redirects <= MAX_REDIRECTS {
            self.endpoint(table, url)
        } else {
            None
        };
        let Some(owner) = owner else {
            tracing::info!(
                binding_id = id,
                owner = url,
                redirects,
                "redirect not followed: the manager counts as unavailable"
            );
            self.unavailable(table, id, now);
            return;
        };
        self.config.stats.redirects.inc();
        table.owners.insert(&session, owner);
        self.dispatch(table, id, owner, now);
    }

    /// The session moved to another replica: the client hears the manager is unavailable,
    /// and its binding is bound again at once, at `url` when given.
    pub(super) fn moved(self: &Arc<Self>, table: &mut Table, id: u64, url: &str, now: Instant) {
        let Some(route) = table.routes.get(&id) else {
            return;
        };
        let session = route.session.clone();
        if matches!(route.phase, Phase::Binding) {
            // Moved before the bind was answered: as a redirect of that bind.
            if url.is_empty() {
                self.unavailable(table, id, now);
            } else {
                self.redirect(table, id, url, now);
            }
            return;
        }
        tracing::info!(binding_id = id, session_id = %session, owner = url, "session moved to another replica; rebinding");
        self.lose(table, id, now, now, GatewayError::ServiceUnavailable);
        let owner = if url.is_empty() {
            None
        } else {
            self.endpoint(table, url)
        };
        let Some(owner) = owner else {
            table.owners.remove(&session);
            self.rebind_wake.notify_one();
            return;
        };
        table.owners.insert(&session, owner);
        if let Some(route) = table.routes.get_mut(&id)
            && let Phase::Lost { grace_until, .. } = route.phase
        {
            route.phase = Phase::Rebinding { grace_until };
            route.redirects = 0;
            table.lost.remove(&id);
            self.dispatch(table, id, owner, now);
        }
    }

    /// Sends a binding's bind to `endpoint`, or parks it until the endpoint connects.
    fn dispatch(&self, table: &mut Table, id: u64, endpoint: usize, now: Instant) {
        if let Some(slot) = table.slot_of(endpoint, id)
            && self.send_bind(table, id, slot)
        {
            return;
        }
        if let Some(route) = table.routes.get_mut(&id) {
            route.stream = None;
            route.parked = Some((endpoint, now + self.config.request_timeout));
            table.parked.insert(id);
            self.rebind_wake.notify_one();
        }
    }
}

/// Adds `count` empty stream slots for `endpoint` and marks it active with a fresh retire
/// token; its stream tasks are started by the caller.
pub(super) fn allocate(table: &mut Table, endpoint: usize, count: usize) {
    let first = table.slots.len();
    table.slots.extend((0..count).map(|_| Slot {
        endpoint,
        stream: None,
    }));
    if let Some(active) = table.endpoints.get_mut(endpoint) {
        active.slots = (first..first + count).collect();
        active.retire = CancellationToken::new();
        active.active = true;
    }
}
