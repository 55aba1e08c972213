//! The largest session the engine accepts. Every size a peer controls is capped, so that one
//! request costs a bounded time under a session's lock (validation is linear besides), and
//! so that a whole session stays well under a megabyte: the gRPC message limit, and the
//! NATS payload limit of its record in cluster mode.

/// Channels per session: every media a desktop shows, several times over.
pub const MAX_CHANNELS: usize = 32;
/// Live interactions per session: far above any agent's concurrent work.
pub const MAX_INTERACTIONS: usize = 64;
/// Attached-data entries per interaction.
pub const MAX_DATA_ENTRIES: usize = 64;
/// Length of an attached-data key, in bytes.
pub const MAX_DATA_KEY: usize = 128;
/// Length of an attached-data value, in bytes.
pub const MAX_DATA_VALUE: usize = 4096;
/// Attached data of one interaction, keys and values together, in bytes.
pub const MAX_DATA_BYTES: usize = 8192;
/// Length of a free-text field (a reason code, a disposition), in bytes.
pub const MAX_TEXT: usize = 256;
/// Parties counted on one interaction.
pub const MAX_PARTIES: u32 = 64;
/// Concurrent interactions a channel may be given: as many as a session holds.
pub const MAX_CAPACITY: u32 = MAX_INTERACTIONS as u32;
