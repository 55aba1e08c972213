//! The typed reasons an update or session is refused.

use crate::id::Id;
use crate::model::{InteractionState, Media};

/// Why the engine refused an update. A refused update leaves the session exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// An identifier is empty, too long, or contains a forbidden character.
    #[error("invalid {what} {value:?}: {problem}")]
    InvalidId {
        /// Which identifier (e.g. "channel id").
        what: &'static str,
        /// The offending value, truncated.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A session needs at least one channel.
    #[error("a session needs at least one channel")]
    NoChannels,
    /// The same channel id appears twice.
    #[error("channel {0} is listed twice")]
    DuplicateChannel(Id),
    /// An update names a channel the session does not have.
    #[error("unknown channel {0}")]
    UnknownChannel(Id),
    /// A channel update changes the channel's media, which is fixed.
    #[error("channel {channel} is {actual}, not {claimed}")]
    ChannelMediaMismatch {
        /// The channel.
        channel: Id,
        /// Its media.
        actual: Media,
        /// The media the update claimed.
        claimed: Media,
    },
    /// A change names an interaction the session never saw.
    #[error("unknown interaction {0}")]
    UnknownInteraction(Id),
    /// A creation names an interaction that already exists.
    #[error("interaction {0} already exists")]
    DuplicateInteraction(Id),
    /// The interaction state does not exist for the channel's media.
    #[error("interaction {interaction}: state {state} does not apply to {media}")]
    StateNotForMedia {
        /// The interaction.
        interaction: Id,
        /// The refused state.
        state: InteractionState,
        /// The media of its channel.
        media: Media,
    },
    /// An interaction names itself as the call it consults for.
    #[error("interaction {0} cannot consult for itself")]
    ConsultOfSelf(Id),
    /// The sequence number is 0 (unset on the wire) or the largest number, after which
    /// no update could follow.
    #[error("invalid sequence {0}: sequences run from 1 to 2^64-2")]
    InvalidSequence(u64),
    /// More of something than a session may hold.
    #[error("too many {what}: at most {limit}")]
    TooMany {
        /// What (e.g. "channels").
        what: &'static str,
        /// The most accepted.
        limit: usize,
    },
    /// A text field is longer than accepted.
    #[error("{what} is longer than {limit} bytes")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// The longest accepted, in bytes.
        limit: usize,
    },
    /// An interaction consults for one the session does not have.
    #[error("interaction {interaction} consults for unknown interaction {consult_of}")]
    UnknownConsult {
        /// The consulting interaction.
        interaction: Id,
        /// The interaction it names.
        consult_of: Id,
    },
    /// The sequence number skips ahead; the session expects `expected`.
    #[error("sequence gap: expected {expected}, got {got}")]
    SequenceGap {
        /// The next sequence number the session accepts.
        expected: u64,
        /// The number that was sent.
        got: u64,
    },
}
