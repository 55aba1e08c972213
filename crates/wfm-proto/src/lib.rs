//! The `wfm.v1` gRPC contract: prost messages, tonic client and server, and the descriptor set.
//!
//! # Layout
//! Everything generated lives in [`v1`] and [`cluster::v1`]; nothing else in the workspace
//! includes generated code.

/// Generated messages and services of package `wfm.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("wfm.v1");
}

/// The records manager replicas keep in NATS JetStream in cluster mode (package
/// `wfm.cluster.v1`); internal, not served by reflection.
pub mod cluster {
    /// Generated messages of package `wfm.cluster.v1`.
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("wfm.cluster.v1");
    }
}

/// Encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("wfm_descriptor");

/// The request metadata in which a gateway names the Attach wire version it speaks.
pub const ATTACH_WIRE_HEADER: &str = "wfm-attach-wire";

/// The Attach wire version a request's metadata names, if it names one readably.
pub fn attach_wire(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata
        .get(ATTACH_WIRE_HEADER)
        .and_then(|value| value.to_str().ok())
}

/// The Attach wire version of this contract: a `Catalogue` first, then `CompactState`s
/// with capabilities as bits against it (see `AttachResponse` in the proto).
pub const ATTACH_WIRE_VERSION: u32 = 2;
