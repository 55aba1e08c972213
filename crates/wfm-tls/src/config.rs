//! Server and client TLS configs built from their PEM files and replaced whole on reload:
//! a connection takes the config in force when it starts and keeps it, so a reload reaches
//! new connections while the open ones continue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

use crate::TlsError;
use crate::pem;
use crate::reload::Reloadable;

/// The one crypto provider of every config: ring, as async-nats uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_error(what: &'static str) -> impl Fn(rustls::Error) -> TlsError {
    move |error| TlsError::Rustls {
        what,
        error: error.to_string(),
    }
}

/// The files of a server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CAs whose client certificates are required and accepted (mutual TLS); `None`
    /// accepts clients without certificates.
    pub client_ca: Option<PathBuf>,
}

/// A server's TLS config, reloadable from its files.
#[derive(Debug)]
pub struct ServerTls {
    files: ServerFiles,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
}

fn server_config(files: &ServerFiles, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let error = rustls_error("server TLS");
    let certs = pem::certificates(&files.cert)?;
    let key = pem::private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(&error)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = Arc::new(pem::roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Rustls {
                    what: "client CA",
                    error: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(&error)?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

impl ServerTls {
    /// Loads the files, offering the ALPN protocols `alpn` (`h2` for gRPC, `http/1.1`
    /// for the WebSocket).
    pub fn load(files: ServerFiles, alpn: &[&[u8]]) -> Result<Arc<Self>, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let config = server_config(&files, &alpn)?;
        Ok(Arc::new(Self {
            files,
            alpn,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// The config in force, for one new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether clients must present a certificate from the client CA.
    pub fn requires_client_cert(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The files it loads.
    pub fn server_files(&self) -> &ServerFiles {
        &self.files
    }
}

impl Reloadable for ServerTls {
    fn name(&self) -> &'static str {
        "server certificate"
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.files.cert.clone(), self.files.key.clone()];
        files.extend(self.files.client_ca.clone());
        files
    }

    fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.files, &self.alpn)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }
}

/// The files of a client's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CAs the server's certificate must chain to.
    pub ca: PathBuf,
    /// The client's own certificate chain and key, for servers that require one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A client's TLS config (towards a manager), reloadable from its files.
#[derive(Debug)]
pub struct ClientTls {
    files: ClientFiles,
    current: RwLock<Arc<ClientConfig>>,
}

fn client_config(files: &ClientFiles) -> Result<ClientConfig, TlsError> {
    let error = rustls_error("client TLS");
    let roots = pem::roots(&files.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(&error)?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(pem::certificates(cert)?, pem::private_key(key)?)
            .map_err(&error)?,
        None => builder.with_no_client_auth(),
    };
    // gRPC: HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl ClientTls {
    /// Loads the files.
    pub fn load(files: ClientFiles) -> Result<Arc<Self>, TlsError> {
        let config = client_config(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// The config in force, for one new connection.
    pub fn current(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Reloadable for ClientTls {
    fn name(&self) -> &'static str {
        "client certificate"
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.files.ca.clone()];
        if let Some((cert, key)) = &self.files.identity {
            files.extend([cert.clone(), key.clone()]);
        }
        files
    }

    fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(client_config(&self.files)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }
}

/// What the "no plaintext off loopback" rule says of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenCheck {
    /// Loopback, or TLS: fine.
    Allowed,
    /// Plaintext off loopback, allowed by `--insecure-plaintext`: warn.
    Insecure,
    /// Plaintext off loopback without the flag: refuse to start.
    Refused,
}

/// The rule for a listener on `address`: plaintext is allowed on loopback only, unless
/// `insecure_plaintext` says otherwise.
pub fn listen_check(address: SocketAddr, tls: bool, insecure_plaintext: bool) -> ListenCheck {
    if tls || address.ip().is_loopback() {
        ListenCheck::Allowed
    } else if insecure_plaintext {
        ListenCheck::Insecure
    } else {
        ListenCheck::Refused
    }
}
