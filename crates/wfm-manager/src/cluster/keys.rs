//! Session ids as JetStream KV keys. A key may hold only `[-/_=.A-Za-z0-9]`, and a session
//! id may hold almost anything but a dot, so every other byte is escaped as `=XX` (hex),
//! `=` included: the mapping is one-to-one, and readable for the usual ids.

use std::fmt::Write as _;

/// The key of a session's record.
pub(crate) fn session_key(session_id: &str) -> String {
    let mut key = String::with_capacity(session_id.len());
    for byte in session_id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            key.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(key, "={byte:02X}");
        }
    }
    key
}

/// The index key saying that `node` owns (or owned) the session under `key`.
pub(crate) fn index_key(node: &str, key: &str) -> String {
    format!("{node}.{key}")
}

/// Whether `node_id` is usable as one segment of a key: what `--node-id` accepts.
pub(crate) fn valid_node_id(node_id: &str) -> bool {
    !node_id.is_empty()
        && node_id.len() <= 64
        && node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_stay_readable_and_others_are_escaped_one_to_one() {
        assert_eq!(session_key("demo-1_a"), "demo-1_a");
        assert_eq!(session_key("a=b"), "a=3Db");
        assert_eq!(session_key("agent@site:7"), "agent=40site=3A7");
        let ids = [
            "demo-1",
            "a=b",
            "a=3Db",
            "agent@site:7",
            "é/ü",
            "=3D",
            "x y",
        ];
        let keys: std::collections::HashSet<String> =
            ids.iter().map(|id| session_key(id)).collect();
        assert_eq!(keys.len(), ids.len(), "distinct ids, distinct keys");
        for key in &keys {
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{key}"
            );
        }
    }

    #[test]
    fn node_ids_are_single_key_segments() {
        assert!(valid_node_id("wfm-manager-0"));
        assert!(!valid_node_id(""));
        assert!(!valid_node_id("host.example.com"));
        assert!(!valid_node_id(&"n".repeat(65)));
    }
}
