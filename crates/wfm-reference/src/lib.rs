//! Session resource references: the opaque token an Interaction Processor hands to the
//! MediaBar so that it can bind to its workflow session.
//!
//! A reference names the session, its agent and the session's incarnation (so that it does
//! not bind to a later session created with the same id), carries an expiry, and is signed
//! with HMAC-SHA256, so it cannot be guessed, forged, extended or moved to another session.
//! Both the manager and the gateway verify it; only the manager issues it.
//!
//! Format: `v2.<b64url session id>.<b64url agent id>.<incarnation>.<expiry unix seconds>.<b64url mac>`.
//!
//! Keys: a [`KeyRing`] signs with its current key and verifies with it or any previous one,
//! so that keys rotate without invalidating the references already handed out.
//! [`check_key`] refuses a configured key that is too short, too repetitive, or one of the
//! placeholders shipped in this repository.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest accepted signing key, in bytes (the HMAC-SHA256 block-size guidance).
pub const MIN_KEY_LEN: usize = 32;

/// Longest reference accepted for parsing; anything longer is malformed on sight.
const MAX_REFERENCE_LEN: usize = 1024;

const VERSION: &str = "v2";

/// The placeholder and demo keys shipped in this repository: publicly known, so refused as
/// configured keys (`wfm up` generates its own).
pub const PLACEHOLDER_KEYS: &[&str] = &[
    "replace-me-with-at-least-32-random-bytes-base64",
    "demo-only-signing-key-change-me-0123456789",
];

/// Fewest distinct bytes a configured key must have: a random 32-byte key has about 28, a
/// base64 one about 25; a key of a few repeated characters has far fewer.
const MIN_DISTINCT_BYTES: usize = 12;

/// Why a configured signing key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakKey {
    /// Shorter than [`MIN_KEY_LEN`].
    #[error("a signing key must be at least {MIN_KEY_LEN} bytes, this one has {0}")]
    TooShort(usize),
    /// Few distinct bytes, or one short pattern repeated.
    #[error(
        "the signing key is too repetitive to be secret: use 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    Repetitive,
    /// One of [`PLACEHOLDER_KEYS`].
    #[error(
        "the signing key is a placeholder published in this repository: generate your own (e.g. `openssl rand -base64 32`)"
    )]
    Placeholder,
}

/// Checks a key given in configuration: long enough, not repetitive, not a placeholder.
pub fn check_key(bytes: &[u8]) -> Result<(), WeakKey> {
    if bytes.len() < MIN_KEY_LEN {
        return Err(WeakKey::TooShort(bytes.len()));
    }
    if PLACEHOLDER_KEYS.iter().any(|p| p.as_bytes() == bytes) {
        return Err(WeakKey::Placeholder);
    }
    let mut seen = [false; 256];
    for &byte in bytes {
        seen[usize::from(byte)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    // A short unit repeated ("abcdabcd..."): the key equals itself shifted by the unit.
    let periodic =
        (1..=bytes.len() / 2).any(|period| bytes[period..] == bytes[..bytes.len() - period]);
    if distinct < MIN_DISTINCT_BYTES || periodic {
        return Err(WeakKey::Repetitive);
    }
    Ok(())
}

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
    /// The incarnation of the session it was issued for: a session ended and created again
    /// with the same id has another.
    pub incarnation: u64,
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

    /// Signs a reference to incarnation `incarnation` of `session_id` of `agent_id`, valid
    /// until `expires_at` (unix seconds).
    pub fn issue(
        &self,
        session_id: &str,
        agent_id: &str,
        incarnation: u64,
        expires_at: u64,
    ) -> String {
        let session = B64.encode(session_id);
        let agent = B64.encode(agent_id);
        let payload = format!("{VERSION}.{session}.{agent}.{incarnation}.{expires_at}");
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
        let (Some(VERSION), Some(session), Some(agent), Some(incarnation), Some(expiry), None) = (
            parts.next(),
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
            incarnation: incarnation.parse().map_err(|_| ReferenceError::Invalid)?,
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

/// The keys of a service: the current one signs, and it or any previous one verifies, so
/// that references issued before a rotation stay valid until they expire.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SigningKey,
    previous: Vec<SigningKey>,
}

impl From<SigningKey> for KeyRing {
    fn from(current: SigningKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }
}

/// Which configured key was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfiguredKeyError {
    /// The current key.
    #[error("{0}")]
    Current(WeakKey),
    /// A previous key, by its line in the previous-keys file (from 1).
    #[error("line {line}: {problem}")]
    Previous {
        /// Its line.
        line: usize,
        /// Why.
        problem: WeakKey,
    },
}

impl KeyRing {
    /// `current` signs; `previous` keys (newest first) still verify.
    pub fn new(current: SigningKey, previous: Vec<SigningKey>) -> Self {
        Self { current, previous }
    }

    /// The ring of configured keys: `current`, and the previous keys listed one per line in
    /// `previous` (blank lines and `#` comments ignored). Every key must pass [`check_key`].
    pub fn configured(current: &[u8], previous: Option<&str>) -> Result<Self, ConfiguredKeyError> {
        check_key(current).map_err(ConfiguredKeyError::Current)?;
        let mut keys = Vec::new();
        for (index, line) in previous.unwrap_or_default().lines().enumerate() {
            let line_key = line.trim();
            if line_key.is_empty() || line_key.starts_with('#') {
                continue;
            }
            check_key(line_key.as_bytes()).map_err(|problem| ConfiguredKeyError::Previous {
                line: index + 1,
                problem,
            })?;
            keys.push(SigningKey(line_key.as_bytes().to_vec()));
        }
        Ok(Self::new(SigningKey(current.to_vec()), keys))
    }

    /// Signs with the current key (see [`SigningKey::issue`]).
    pub fn issue(
        &self,
        session_id: &str,
        agent_id: &str,
        incarnation: u64,
        expires_at: u64,
    ) -> String {
        self.current
            .issue(session_id, agent_id, incarnation, expires_at)
    }

    /// Verifies with the current key, then each previous one (see [`SigningKey::verify`]).
    pub fn verify(&self, reference: &str, now: u64) -> Result<Claims, ReferenceError> {
        let mut outcome = self.current.verify(reference, now);
        for key in &self.previous {
            if outcome != Err(ReferenceError::Invalid) {
                break;
            }
            outcome = key.verify(reference, now);
        }
        outcome
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
        let reference = key(1).issue("s-1", "agent 7", 42, 1_000);
        let claims = key(1).verify(&reference, 999).unwrap();
        assert_eq!(
            claims,
            Claims {
                session_id: "s-1".into(),
                agent_id: "agent 7".into(),
                incarnation: 42,
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
        let reference = key(1).issue("s-1", "a", 7, 1_000);
        assert_eq!(key(2).verify(&reference, 0), Err(ReferenceError::Invalid));

        let extended = reference.replacen(".1000.", ".9999.", 1);
        assert_ne!(extended, reference);
        assert_eq!(key(1).verify(&extended, 0), Err(ReferenceError::Invalid));

        let other_session = key(1).issue("s-2", "a", 7, 1_000);
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
            "v2.a.b.c.d.e.f",
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
        let a = SigningKey::generate().unwrap().issue("s", "a", 1, 10);
        let b = SigningKey::generate().unwrap().issue("s", "a", 1, 10);
        assert_ne!(a, b);
        assert_eq!(format!("{:?}", key(1)), "SigningKey(<redacted>)");
    }

    #[test]
    fn another_incarnation_of_the_session_is_part_of_what_is_signed() {
        let reference = key(1).issue("s-1", "a", 7, 1_000);
        let claims = key(1).verify(&reference, 0).unwrap();
        assert_eq!(claims.incarnation, 7);
        let moved = reference.replacen(".7.", ".8.", 1);
        assert_ne!(moved, reference);
        assert_eq!(key(1).verify(&moved, 0), Err(ReferenceError::Invalid));
    }

    #[test]
    fn a_ring_signs_with_its_current_key_and_verifies_with_previous_ones_too() {
        let old = key(1).issue("s", "a", 1, 1_000);
        let ring = KeyRing::new(key(2), vec![key(3), key(1)]);
        assert_eq!(ring.verify(&old, 0).unwrap().session_id, "s");
        assert_eq!(ring.verify(&old, 1_000), Err(ReferenceError::Expired));
        let new = ring.issue("s", "a", 1, 1_000);
        assert!(key(2).verify(&new, 0).is_ok());
        assert_eq!(key(1).verify(&new, 0), Err(ReferenceError::Invalid));
        let retired = KeyRing::from(key(2));
        assert_eq!(retired.verify(&old, 0), Err(ReferenceError::Invalid));
    }

    #[test]
    fn weak_and_published_keys_are_refused() {
        assert_eq!(check_key(b"short"), Err(WeakKey::TooShort(5)));
        assert_eq!(check_key(&[b'a'; 40]), Err(WeakKey::Repetitive));
        assert_eq!(
            check_key(b"abcdefghijklmnopabcdefghijklmnopabcdefghijklmnop"),
            Err(WeakKey::Repetitive)
        );
        assert_eq!(
            check_key(b"0101010101010101010101010101010101010101"),
            Err(WeakKey::Repetitive)
        );
        for placeholder in PLACEHOLDER_KEYS {
            assert_eq!(check_key(placeholder.as_bytes()), Err(WeakKey::Placeholder));
        }
        assert_eq!(check_key(b"k3Jq9vXz2Lw8Rt5Yp1Nc7Hb4Gd6Fs0Ma+/Qe="), Ok(()));
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).unwrap();
        assert_eq!(check_key(&random), Ok(()));
    }

    #[test]
    fn the_placeholder_in_the_kubernetes_secret_is_refused() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let secret = std::fs::read_to_string(format!("{root}/deploy/k8s/secret.yaml")).unwrap();
        let value = secret
            .lines()
            .find_map(|l| l.trim().strip_prefix("signing-key:"))
            .map(str::trim)
            .unwrap();
        assert_eq!(check_key(value.as_bytes()), Err(WeakKey::Placeholder));
    }

    #[test]
    fn a_configured_ring_checks_every_key_and_names_the_bad_line() {
        let good = b"k3Jq9vXz2Lw8Rt5Yp1Nc7Hb4Gd6Fs0Ma+/Qe=";
        let ring = KeyRing::configured(
            good,
            Some("# retired on 1 May\n\nQ9w8E7r6T5y4U3i2O1p0AsDfGhJkLzXc\n"),
        )
        .unwrap();
        let old = SigningKey::from_bytes(b"Q9w8E7r6T5y4U3i2O1p0AsDfGhJkLzXc").unwrap();
        assert!(ring.verify(&old.issue("s", "a", 1, 10), 0).is_ok());
        assert_eq!(
            KeyRing::configured(PLACEHOLDER_KEYS[0].as_bytes(), None).err(),
            Some(ConfiguredKeyError::Current(WeakKey::Placeholder))
        );
        assert_eq!(
            KeyRing::configured(good, Some("Q9w8E7r6T5y4U3i2O1p0AsDfGhJkLzXc\nshort")).err(),
            Some(ConfiguredKeyError::Previous {
                line: 2,
                problem: WeakKey::TooShort(5)
            })
        );
    }
}
