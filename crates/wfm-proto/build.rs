//! Compiles `proto/wfm/v1` with protox (pure Rust, so no protoc is needed) and writes a
//! descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("wfm/v1/workflow.proto");
    let cluster = root.join("wfm/cluster/v1/cluster.proto");
    for path in [&file, &cluster] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    // Reflection serves the public contract only; the cluster records are internal.
    let public = protox::compile([&file], [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("wfm_descriptor.bin"),
        prost::Message::encode_to_vec(&public),
    )?;
    tonic_prost_build::configure().compile_fds(protox::compile([&file, &cluster], [&root])?)?;
    Ok(())
}
