//! The NATS connection's security, the same on the manager and the gateway: a `.creds`
//! file (the account's JWT and the user's NKey seed) and a CA that the servers'
//! certificates must chain to, which also makes TLS required.

use std::path::PathBuf;

use crate::{TlsError, pem};

/// How a NATS connection authenticates and verifies the servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// The CA bundle of the NATS servers; set, the connection requires TLS.
    pub ca: Option<PathBuf>,
}

impl NatsSecurity {
    /// Checks the files now, so that a bad one stops the process at start-up rather than
    /// at its first connection.
    pub fn check(&self) -> Result<(), TlsError> {
        if let Some(ca) = &self.ca {
            pem::roots(ca)?;
        }
        if let Some(creds) = &self.creds {
            std::fs::metadata(creds).map_err(|error| TlsError::Read {
                path: creds.clone(),
                error,
            })?;
        }
        Ok(())
    }

    /// `options` with the credentials and the CA.
    pub async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, TlsError> {
        if let Some(creds) = &self.creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|error| TlsError::Read {
                    path: creds.clone(),
                    error,
                })?;
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        Ok(options)
    }
}
