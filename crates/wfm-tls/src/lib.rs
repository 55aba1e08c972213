//! Transport security for the wfm services, in one place so that the manager and the
//! gateway share it: PEM files into rustls configs, configs that reload from disk without
//! a restart, the TLS accept loop (with a handshake deadline) that both servers feed on,
//! the connector that gives tonic channels TLS, and the client-certificate roles.
//!
//! Everything runs on rustls with the `ring` provider, the one async-nats already brings.
//!
//! # Layout
//! - [`pem`]: certificates, keys and CA bundles from PEM files.
//! - [`config`]: [`ServerTls`] and [`ClientTls`], rustls configs built from their files and
//!   swapped whole on reload; the [`listen_check`] rule (no plaintext off loopback).
//! - [`reload`]: the watcher that reloads them on a file change or SIGHUP, keeping the old
//!   config when a new file is bad.
//! - [`accept`]: the accept loop: TCP, then the TLS handshake under a deadline, off the
//!   accept path, into a bounded queue of ready connections.
//! - [`connect`]: a tower connector for tonic channels that reads the current client
//!   config for each new connection.
//! - [`nats`]: the NATS connection's credentials file and CA.
//! - [`roles`]: roles, the URI-SAN → role mapping, and a peer's identity.

/// Implements `AsyncRead` and `AsyncWrite` for an enum of a plain stream (`Plain`) and a
/// boxed TLS stream (`Tls`) by delegating to whichever it holds: the server's and the
/// client's connections are both such an enum.
macro_rules! delegate_io {
    ($name:ident) => {
        impl tokio::io::AsyncRead for $name {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $name::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
                    $name::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_read(cx, buf),
                }
            }
        }

        impl tokio::io::AsyncWrite for $name {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $name::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
                    $name::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_write(cx, buf),
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $name::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
                    $name::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $name::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
                    $name::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_shutdown(cx),
                }
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $name::Plain(io) => std::pin::Pin::new(io).poll_write_vectored(cx, bufs),
                    $name::Tls(io) => std::pin::Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $name::Plain(io) => io.is_write_vectored(),
                    $name::Tls(io) => io.is_write_vectored(),
                }
            }
        }
    };
}

pub mod accept;
pub mod config;
pub mod connect;
pub mod nats;
pub mod pem;
pub mod reload;
pub mod roles;
#[cfg(feature = "testing")]
pub mod testing;

pub use accept::{AcceptOptions, Accepted, Incoming, MaybeTls};
pub use config::{ClientFiles, ClientTls, ListenCheck, ServerFiles, ServerTls, listen_check};
pub use connect::Connector;
pub use nats::NatsSecurity;
pub use reload::{ReloadStats, Reloadable};
pub use roles::{PeerIdentity, Role, RoleMap};

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, e.g. `no certificate in it`.
        problem: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, a CA
    /// that is no CA).
    #[error("{what}: {error}")]
    Rustls {
        /// Which config.
        what: &'static str,
        /// rustls's reason.
        error: String,
    },
    /// A role rule is malformed.
    #[error("invalid role rule {rule:?}: {problem}")]
    Role {
        /// The rule as given.
        rule: String,
        /// What is wrong.
        problem: String,
    },
}

impl TlsError {
    /// The file the error is about, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            TlsError::Read { path, .. } | TlsError::Pem { path, .. } => Some(path),
            TlsError::Rustls { .. } | TlsError::Role { .. } => None,
        }
    }

    /// The error as an invalid setting: the one of `settings` (id, file) whose file it is
    /// about, else the first.
    pub fn setting(
        self,
        settings: &[(&'static str, &std::path::Path)],
    ) -> wfm_telemetry::settings::SettingsError {
        let (id, path) = settings
            .iter()
            .find(|(_, path)| self.path() == Some(*path))
            .or(settings.first())
            .map_or(("tls_cert", String::new()), |(id, path)| {
                (*id, path.display().to_string())
            });
        wfm_telemetry::settings::SettingsError::invalid(
            id,
            path,
            format!("usable TLS material: {self}"),
        )
    }
}
