//! Open WebSocket connections per client address, so that one host cannot take every
//! connection the gateway allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The open connections of each client address.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection of an address; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Admitted {
    addresses: Arc<Addresses>,
    address: IpAddr,
}

impl Addresses {
    /// Admits one more connection from `address` unless it has `limit` open already;
    /// `limit` 0 admits every one.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr, limit: usize) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if limit != 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(Admitted {
            addresses: Arc::clone(self),
            address,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .addresses
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            // Forgotten when idle, so that the map holds only addresses with connections.
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_and_a_place_again_when_one_closes() {
        let addresses = Arc::new(Addresses::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = addresses.admit(a, 2).unwrap();
        let _second = addresses.admit(a, 2).unwrap();
        assert!(addresses.admit(a, 2).is_none());
        assert!(
            addresses.admit(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(addresses.admit(a, 2).is_some());
        assert!((0..100).all(|_| addresses.admit(a, 0).map(std::mem::forget).is_some()));
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let addresses = Arc::new(Addresses::default());
        drop(addresses.admit("10.0.0.1".parse().unwrap(), 5));
        assert!(addresses.open.lock().unwrap().is_empty());
    }
}
