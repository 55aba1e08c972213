//! The capability catalogue of one `Attach` stream: the names that the bits of its state
//! events index, as the manager sent them first on the stream.
//!
//! Each capability's two MediaBar JSON fragments (`{"name":...,"type":"enabled"}` and the
//! disabled one) are rendered once here, when the stream opens, so that writing a state
//! event allocates nothing per capability. Because the names come from the manager, a
//! gateway renders capabilities newer than itself; what it refuses is a stream whose wire
//! version it does not speak, or a catalogue that cannot be right.

use wfm_proto::v1 as pb;

use crate::protocol::push_json_str;

/// Capabilities a catalogue may name: the bits of a `fixed64` mask.
pub(crate) const MAX_CAPABILITIES: usize = 64;

/// Longest capability name accepted, in bytes.
const MAX_NAME: usize = 128;

/// Why a manager's Attach stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CatalogueError {
    /// The first message was not a catalogue: a manager older than wire version 2.
    #[error(
        "the workflow manager did not open the Attach stream with a capability catalogue \
         (it speaks an older Attach wire than version {}): upgrade the manager",
        wfm_proto::ATTACH_WIRE_VERSION
    )]
    Missing,
    /// The manager speaks another wire version.
    #[error(
        "the workflow manager speaks Attach wire version {0}, this gateway {ours}: upgrade the older of the two",
        ours = wfm_proto::ATTACH_WIRE_VERSION
    )]
    Version(u32),
    /// More names than a mask has bits.
    #[error(
        "the manager's catalogue names {0} capabilities, more than the {MAX_CAPABILITIES} a mask holds"
    )]
    TooLarge(usize),
    /// An empty, overlong or repeated name.
    #[error("the manager's catalogue has an invalid or repeated capability name {0:?}")]
    BadName(String),
}

/// A validated catalogue with its JSON fragments.
#[derive(Debug)]
pub(crate) struct Catalogue {
    /// `[enabled, disabled]` fragment of each bit.
    fragments: Box<[[Box<str>; 2]]>,
    /// The longest fragment, plus its separator: a frame's buffer is sized from it, so
    /// that sizing costs no second pass over the capabilities.
    widest: usize,
}

impl Catalogue {
    /// Checks the manager's catalogue and renders its fragments.
    pub(crate) fn from_wire(wire: pb::Catalogue) -> Result<Self, CatalogueError> {
        if wire.wire_version != wfm_proto::ATTACH_WIRE_VERSION {
            return Err(CatalogueError::Version(wire.wire_version));
        }
        if wire.names.len() > MAX_CAPABILITIES {
            return Err(CatalogueError::TooLarge(wire.names.len()));
        }
        let mut fragments = Vec::with_capacity(wire.names.len());
        for (index, name) in wire.names.iter().enumerate() {
            if name.is_empty() || name.len() > MAX_NAME || wire.names[..index].contains(name) {
                return Err(CatalogueError::BadName(name.clone()));
            }
            let fragment = |kind: &str| {
                let mut out = String::from(r#"{"name":"#);
                push_json_str(&mut out, name);
                out.push_str(r#","type":""#);
                out.push_str(kind);
                out.push_str(r#""}"#);
                out.into_boxed_str()
            };
            fragments.push([fragment("enabled"), fragment("disabled")]);
        }
        let widest = fragments
            .iter()
            .map(|[on, off]| on.len().max(off.len()) + 1)
            .max()
            .unwrap_or(0);
        Ok(Self {
            fragments: fragments.into_boxed_slice(),
            widest,
        })
    }

    /// The JSON of each capability in `defined`, in catalogue order, enabled or not as in
    /// `enabled`. Bits the catalogue does not name are skipped.
    pub(crate) fn entries(&self, defined: u64, enabled: u64) -> impl Iterator<Item = &str> + '_ {
        self.fragments
            .iter()
            .enumerate()
            .filter(move |(bit, _)| defined & (1 << bit) != 0)
            .map(move |(bit, [on, off])| {
                if enabled & (1 << bit) != 0 {
                    &**on
                } else {
                    &**off
                }
            })
    }

    /// At least the bytes the entries of `defined` take, for sizing the frame's buffer.
    pub(crate) fn entries_len(&self, defined: u64) -> usize {
        defined.count_ones() as usize * self.widest
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wire(names: &[&str]) -> pb::Catalogue {
        pb::Catalogue {
            wire_version: wfm_proto::ATTACH_WIRE_VERSION,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn bits_render_in_catalogue_order_with_their_enablement() {
        let catalogue = Catalogue::from_wire(wire(&["a.x", "b.y", "c\"z"])).unwrap();
        let entries: Vec<&str> = catalogue.entries(0b111, 0b010).collect();
        assert_eq!(
            entries,
            [
                r#"{"name":"a.x","type":"disabled"}"#,
                r#"{"name":"b.y","type":"enabled"}"#,
                r#"{"name":"c\"z","type":"disabled"}"#,
            ]
        );
        let written: usize = entries.iter().map(|e| e.len() + 1).sum();
        assert!(
            catalogue.entries_len(0b111) >= written,
            "the buffer estimate covers them"
        );
        assert_eq!(catalogue.entries(0b101, 0).count(), 2);
        assert_eq!(
            catalogue.entries(1 << 40, 1 << 40).count(),
            0,
            "unnamed bits are skipped"
        );
    }

    #[test]
    fn catalogues_that_cannot_be_right_are_refused_with_the_reason() {
        let mut other = wire(&["a"]);
        other.wire_version = 3;
        assert_eq!(
            Catalogue::from_wire(other).unwrap_err(),
            CatalogueError::Version(3)
        );
        let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            Catalogue::from_wire(wire(&many)).unwrap_err(),
            CatalogueError::TooLarge(65)
        );
        assert_eq!(
            Catalogue::from_wire(wire(&["a", "a"])).unwrap_err(),
            CatalogueError::BadName("a".into())
        );
        assert_eq!(
            Catalogue::from_wire(wire(&[""])).unwrap_err(),
            CatalogueError::BadName(String::new())
        );
        assert_eq!(
            CatalogueError::Version(1).to_string(),
            "the workflow manager speaks Attach wire version 1, this gateway 2: upgrade the older of the two"
        );
    }
}
