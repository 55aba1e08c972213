//! Session resource references: the opaque token an Interaction Processor hands to the
//! MediaBar so that it can bind to its workflow session.
//!
//! A reference names the session and its agent, carries an expiry, and is signed with
//! HMAC-SHA256, so it cannot be guessed, forged, extended or moved to another session.
//! Both the manager and the gateway verify it; only the manager issues it.
//!
//! Format: `v1.<b64url session id>.<b64url agent id>.<expiry unix seconds>.<b64url mac>`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest accepted signing key, in bytes (the HMAC-SHA256 block-size guidance).
pub const MIN_KEY_LEN: usize = 32;

/// Longest reference accepted for parsing; anything longer is malformed on sight.
const MAX_REFERENCE_LEN: usize = 1024;

const VERSION: &str = "v1";

/// Why a signing key or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The configured key is too short to be safe.
    #[error("signing key must be at least {MIN_KEY_LEN} bytes, got {0}")]
    KeyTooShort(usize),
    /// The operating system could not provide randomness for an ephemeral key.
    #[error("cannot generate a signing key: {0}")]
    Entropy(String),
    /// Not a reference at all, or signed with another key. One variant for both, so a
    /// caller learns nothing about which part was wrong.
    #[error("invalid session reference")]
    Invalid,
    /// Well signed but past its expiry.
    #[error("session reference has expired")]
    Expired,
}

/// The verified content of a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The session it binds to.
    pub session_id: String,
    /// The agent the session belongs to.
    pub agent_id: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
}

/// The secret that signs and verifies references.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// A key from configured bytes, at least [`MIN_KEY_LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReferenceError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(ReferenceError::KeyTooShort(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// A random key from the operating system, for single-process deployments and tests.
    pub fn generate() -> Result<Self, ReferenceError> {
        let mut bytes = vec![0u8; MIN_KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| ReferenceError::Entropy(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Signs a reference to `session_id` of `agent_id`, valid until `expires_at` (unix seconds).
    pub fn issue(&self, session_id: &str, agent_id: &str, expires_at: u64) -> String {
        let session = B64.encode(session_id);
        let agent = B64.encode(agent_id);
        let payload = format!("{VERSION}.{session}.{agent}.{expires_at}");
        let mac = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", B64.encode(mac))
    }

    /// Verifies `reference` at time `now` (unix seconds) and returns what it names.
    pub fn verify(&self, reference: &str, now: u64) -> Result<Claims, ReferenceError> {
        if reference.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::Invalid);
        }
        let (payload, mac) = reference.rsplit_once('.').ok_or(ReferenceError::Invalid)?;
        let mac = B64.decode(mac).map_err(|_| ReferenceError::Invalid)?;
        // The signature is checked before the payload is trusted, in constant time.
        self.mac(payload)
            .verify_slice(&mac)
            .map_err(|_| ReferenceError::Invalid)?;

        let mut parts = payload.split('.');
        let (Some(VERSION), Some(session), Some(agent), Some(expiry), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ReferenceError::Invalid);
        };
        let text = |part: &str| {
            B64.decode(part)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(ReferenceError::Invalid)
        };
        let claims = Claims {
            session_id: text(session)?,
            agent_id: text(agent)?,
            expires_at: expiry.parse().map_err(|_| ReferenceError::Invalid)?,
        };
        if now >= claims.expires_at {
            return Err(ReferenceError::Expired);
        }
        Ok(claims)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, and ours are at least MIN_KEY_LEN.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        mac
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; MIN_KEY_LEN]).unwrap()
    }

    #[test]
    fn a_reference_verifies_to_its_claims_until_it_expires() {
        let reference = key(1).issue("s-1", "agent 7", 1_000);
        let claims = key(1).verify(&reference, 999).unwrap();
        assert_eq!(
            claims,
            Claims {
                session_id: "s-1".into(),
                agent_id: "agent 7".into(),
                expires_at: 1_000
            }
        );
        assert_eq!(
            key(1).verify(&reference, 1_000),
            Err(ReferenceError::Expired)
        );
    }

    #[test]
    fn another_key_or_any_tampering_is_invalid() {
        let reference = key(1).issue("s-1", "a", 1_000);
        assert_eq!(key(2).verify(&reference, 0), Err(ReferenceError::Invalid));

        let extended = reference.replacen(".1000.", ".9999.", 1);
        assert_ne!(extended, reference);
        assert_eq!(key(1).verify(&extended, 0), Err(ReferenceError::Invalid));

        let other_session = key(1).issue("s-2", "a", 1_000);
        let (_, mac) = reference.rsplit_once('.').unwrap();
        let (payload, _) = other_session.rsplit_once('.').unwrap();
        assert_eq!(
            key(1).verify(&format!("{payload}.{mac}"), 0),
            Err(ReferenceError::Invalid)
        );
    }

    #[test]
    fn malformed_input_is_invalid_without_panicking() {
        for junk in [
            "",
            ".",
            "v1",
            "v1.a.b.c.d.e",
            "not base64!",
            &"x".repeat(5000),
        ] {
            assert_eq!(
                key(1).verify(junk, 0),
                Err(ReferenceError::Invalid),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_and_generated_keys_differ() {
        assert_eq!(
            SigningKey::from_bytes(b"short").err(),
            Some(ReferenceError::KeyTooShort(5))
        );
        let a = SigningKey::generate().unwrap().issue("s", "a", 10);
        let b = SigningKey::generate().unwrap().issue("s", "a", 10);
        assert_ne!(a, b);
        assert_eq!(format!("{:?}", key(1)), "SigningKey(<redacted>)");
    }
}
