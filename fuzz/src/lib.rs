//! What the fuzz targets and the seed generator share.

/// The fixed signing key `seed` of the session-reference target: the seeds are references
/// that its ring really verifies, so that mutations start from the accepting path.
pub fn reference_key(seed: u8) -> wfm_reference::SigningKey {
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed))
        .collect();
    match wfm_reference::SigningKey::from_bytes(&bytes) {
        Ok(key) => key,
        Err(error) => unreachable!("a 32-byte key: {error}"),
    }
}
