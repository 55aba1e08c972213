//! Certificates, private keys and CA bundles from PEM files, as Kubernetes `tls` Secrets
//! and cert-manager mount them (`tls.crt`, `tls.key`, `ca.crt`).

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn pem_error(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Every certificate of the PEM file at `path`, leaf first; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(path, format!("not PEM certificates: {error}")))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in it"));
    }
    Ok(certs)
}

/// The private key of the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|error| pem_error(path, format!("no usable private key: {error}")))
}

/// The CA certificates of the PEM file at `path`, as trust roots; at least one.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|error| pem_error(path, format!("not a usable CA certificate: {error}")))?;
    }
    Ok(store)
}
