//! The rebinder: one task that rebinds lost bindings when they are due, sends parked binds
//! once their owner's endpoint connects, and retries unbinds a full queue refused.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Phase, Table, Upstream, fail_bind, unix_now};
use crate::errors::{GatewayError, UnboundReason};

impl Upstream {
    /// The manager cannot take a bind now: a client's bind fails with
    /// `serviceUnavailable`, a rebind waits for the rebinder's next try.
    pub(super) fn unavailable(&self, table: &mut Table, id: u64, now: Instant) {
        table.parked.remove(&id);
        let Some(route) = table.routes.get_mut(&id) else {
            return;
        };
        route.parked = None;
        match route.phase {
            Phase::Binding => {
                if let Some(route) = table.routes.remove(&id) {
                    fail_bind(&route.conn, id, GatewayError::ServiceUnavailable);
                }
            }
            Phase::Rebinding { grace_until } => {
                route.phase = Phase::Lost {
                    retry_at: now + self.config.rebind_retry,
                    grace_until,
                };
                table.lost.insert(id);
                self.rebind_wake.notify_one();
            }
            Phase::Bound | Phase::Lost { .. } => {}
        }
    }

    pub(super) async fn run_rebinder(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let next = self.sweep();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.rebind_wake.notified() => {}
                () = wait => {}
            }
        }
    }

    /// Retries unsent unbinds, sends parked binds whose endpoint has connected, and
    /// rebinds the lost bindings that are due; returns when the next one will be.
    fn sweep(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut guard = self.table();
        let table = &mut *guard;
        for (stream, id) in std::mem::take(&mut table.unsent_unbinds) {
            self.send_unbind(table, stream, id);
        }
        let mut next = (!table.unsent_unbinds.is_empty()).then(|| now + self.config.rebind_retry);
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        let parked: Vec<u64> = table.parked.iter().copied().collect();
        for id in parked {
            let Some((endpoint, until)) = table.routes.get(&id).and_then(|r| r.parked) else {
                table.parked.remove(&id);
                continue;
            };
            if let Some(slot) = table.slot_of(endpoint, id)
                && self.send_bind(table, id, slot)
            {
                table.parked.remove(&id);
            } else if until <= now {
                tracing::debug!(binding_id = id, "the owner replica did not connect in time");
                if let Some(route) = table.routes.get(&id)
                    && table.owners.get(&route.session) == Some(endpoint)
                {
                    let session = route.session.clone();
                    table.owners.remove(&session);
                }
                self.unavailable(table, id, now);
            } else {
                soonest(until);
            }
        }
        if table.lost.is_empty() || table.any_slot(0).is_none() {
            return next;
        }
        let mut expired = Vec::new();
        let ids: Vec<u64> = table.lost.iter().copied().collect();
        for id in ids {
            let Some(route) = table.routes.get_mut(&id) else {
                table.lost.remove(&id);
                continue;
            };
            let Phase::Lost {
                retry_at,
                grace_until,
            } = route.phase
            else {
                table.lost.remove(&id);
                continue;
            };
            if retry_at > now {
                soonest(retry_at);
                continue;
            }
            if self
                .config
                .signing_key
                .verify(&route.reference, unix_now())
                .is_err()
            {
                expired.push(id);
                continue;
            }
            route.phase = Phase::Rebinding { grace_until };
            route.redirects = 0;
            let session = route.session.clone();
            let sent = table
                .pick(&session, id)
                .is_some_and(|slot| self.send_bind(table, id, slot));
            if sent {
                table.lost.remove(&id);
            } else if let Some(route) = table.routes.get_mut(&id) {
                let retry_at = now + self.config.rebind_retry;
                route.phase = Phase::Lost {
                    retry_at,
                    grace_until,
                };
                soonest(retry_at);
            }
        }
        for id in expired {
            self.end(table, id, UnboundReason::Expired);
        }
        next
    }
}
