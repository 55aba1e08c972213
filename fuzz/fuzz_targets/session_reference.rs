//! Session references: `KeyRing::verify` on arbitrary strings, and issue-then-verify.
//!
//! Input: 8 bytes `now`, 8 bytes incarnation, 8 bytes expiry (little-endian), 1 byte for
//! the tampering position, then UTF-8 text: the reference to verify, and also the session
//! and agent ids to issue for (split at the first newline).
//!
//! Properties: whatever verifies was issued by a key of the ring, exactly as that key would
//! issue it (no second spelling of the same claims is accepted), and has not expired; a
//! reference for ids within the manager's limits verifies to its own claims (or is expired),
//! through the ring, whichever of its keys signed it; changing any one character of it, or
//! signing with a key outside the ring, makes it invalid; and it needs no escaping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wfm_engine::id::MAX_ID_LEN;
use wfm_fuzz::reference_key as key;
use wfm_reference::{Claims, KeyRing, ReferenceError};

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_at_checked(25) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (now, incarnation, expires_at) = (u64_at(header, 0), u64_at(header, 8), u64_at(header, 16));
    let keys = [key(1), key(2)];
    let ring = KeyRing::new(keys[0].clone(), vec![keys[1].clone()]);
    let outsider = key(3);

    // Anything at all, as a client sends it.
    if let Ok(claims) = ring.verify(text, now) {
        assert!(now < claims.expires_at);
        let Claims {
            session_id,
            agent_id,
            incarnation,
            expires_at,
        } = &claims;
        assert!(
            keys.iter()
                .any(|k| k.issue(session_id, agent_id, *incarnation, *expires_at) == text),
            "{text:?} verified but no key issues it"
        );
    }

    // Issue, then verify.
    let (session_id, agent_id) = text.split_once('\n').unwrap_or((text, ""));
    let claims = Claims {
        session_id: session_id.to_string(),
        agent_id: agent_id.to_string(),
        incarnation,
        expires_at,
    };
    let expected = if now < expires_at {
        Ok(claims.clone())
    } else {
        Err(ReferenceError::Expired)
    };
    let within_limits = session_id.len() <= MAX_ID_LEN && agent_id.len() <= MAX_ID_LEN;
    for signer in &keys {
        let reference = signer.issue(session_id, agent_id, incarnation, expires_at);
        assert!(
            reference.bytes().all(|b| URL_SAFE.contains(&b)),
            "{reference}"
        );
        let verified = ring.verify(&reference, now);
        if within_limits {
            assert_eq!(verified, expected);
        } else {
            // Too long to be parsed at all, or its own claims: never anything else.
            assert!(verified == expected || verified == Err(ReferenceError::Invalid));
        }
        let bytes = reference.as_bytes();
        let at = usize::from(header[24]) * bytes.len() / 256;
        let mut tampered = bytes.to_vec();
        let replacement = URL_SAFE[(usize::from(header[24]) + 1) % URL_SAFE.len()];
        tampered[at] = if replacement == bytes[at] {
            URL_SAFE[(usize::from(header[24]) + 2) % URL_SAFE.len()]
        } else {
            replacement
        };
        let tampered = String::from_utf8(tampered).expect("ASCII");
        assert_eq!(
            ring.verify(&tampered, now),
            Err(ReferenceError::Invalid),
            "{tampered}"
        );
    }
    let foreign = outsider.issue(session_id, agent_id, incarnation, expires_at);
    assert_eq!(ring.verify(&foreign, now), Err(ReferenceError::Invalid));
});
