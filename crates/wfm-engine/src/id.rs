//! Validated identifiers for sessions, channels and interactions.

use std::fmt;
use std::sync::Arc;

use crate::error::UpdateError;

/// Longest accepted identifier, in bytes; keeps targets and references bounded.
pub const MAX_ID_LEN: usize = 128;

/// An identifier that is safe to use as one segment of a dot-notation target.
///
/// Cloning is a reference-count increment, because view states and events repeat ids often.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Arc<str>);

impl Id {
    /// Validates `value` as the identifier of a `what` (used in the error message).
    pub fn parse(what: &'static str, value: &str) -> Result<Self, UpdateError> {
        let problem = if value.is_empty() {
            Some("is empty")
        } else if value.len() > MAX_ID_LEN {
            Some("is longer than 128 bytes")
        } else if value.contains('.') {
            Some("contains '.', which separates target segments")
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("contains whitespace or control characters")
        } else {
            None
        };
        checked(what, value, problem).map(Self)
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates `value` as a free-text label of a `what` (an agent group, say): up to
/// [`MAX_ID_LEN`] bytes with no control characters. Unlike an [`Id`] it may be empty and
/// may hold dots and spaces, since it never becomes a target segment.
pub fn label(what: &'static str, value: &str) -> Result<Arc<str>, UpdateError> {
    let problem = if value.len() > MAX_ID_LEN {
        Some("is longer than 128 bytes")
    } else if value.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    };
    checked(what, value, problem)
}

/// `value` shared, or its refusal for `problem`, quoting it cut to [`MAX_ID_LEN`] characters.
fn checked(
    what: &'static str,
    value: &str,
    problem: Option<&'static str>,
) -> Result<Arc<str>, UpdateError> {
    match problem {
        Some(problem) => Err(UpdateError::InvalidId {
            what,
            value: value.chars().take(MAX_ID_LEN).collect(),
            problem,
        }),
        None => Ok(Arc::from(value)),
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in ["a", "agent-7", "c:1@site", "x".repeat(MAX_ID_LEN).as_str()] {
            assert_eq!(
                Id::parse("session id", ok).map(|id| id.to_string()).ok(),
                Some(ok.to_string())
            );
        }
    }

    #[test]
    fn rejects_each_malformed_form_with_its_reason() {
        let cases = [
            ("", "is empty"),
            ("a.b", "contains '.', which separates target segments"),
            ("a b", "contains whitespace or control characters"),
            ("a\u{7}", "contains whitespace or control characters"),
        ];
        for (value, expected) in cases {
            match Id::parse("channel id", value) {
                Err(UpdateError::InvalidId { what, problem, .. }) => {
                    assert_eq!(what, "channel id");
                    assert_eq!(problem, expected, "for {value:?}");
                }
                other => panic!("{value:?} gave {other:?}"),
            }
        }
        let long = "y".repeat(MAX_ID_LEN + 1);
        assert!(matches!(
            Id::parse("channel id", &long),
            Err(UpdateError::InvalidId {
                problem: "is longer than 128 bytes",
                ..
            })
        ));
    }
}
