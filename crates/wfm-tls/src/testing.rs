//! Test support (feature `testing`): CAs and certificates made on the fly with rcgen, and
//! a temporary directory to write them to. It panics on failure, as a test fixture does.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for the DNS names and IP addresses `names` and, when given, the URI SAN `uri`.
    pub fn issue(&self, names: &[&str], uri: Option<&str>) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, uri.unwrap_or("wfm test"));
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().expect("an IA5 URI")));
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        TestCert {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A directory removed when dropped.
pub struct TestDir(PathBuf);

impl TestDir {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "wfm-tls-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("test directory");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `name` in the directory, replacing it atomically (as a Secret volume
    /// does), and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let staging = self.0.join(format!(".{name}.new"));
        std::fs::write(&staging, text).expect("write test file");
        std::fs::rename(&staging, &path).expect("rename test file");
        path
    }

    /// Writes a certificate and its key as `<stem>.crt` and `<stem>.key`.
    pub fn write_cert(&self, stem: &str, cert: &TestCert) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{stem}.crt"), &cert.cert),
            self.write(&format!("{stem}.key"), &cert.key),
        )
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
