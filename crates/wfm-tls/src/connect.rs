//! The connector of tonic channels to a manager: TCP under a deadline, then, for an
//! `https://` URL, a TLS handshake under the same deadline with the client config in force
//! at that moment, so that a reloaded client certificate reaches every reconnect.
//!
//! tonic's own `tls-*` features are not used: they fix a channel's config when it is made.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;

use crate::config::ClientTls;

/// A connection to a manager, plaintext or TLS.
#[derive(Debug)]
pub enum ClientIo {
    /// Plaintext, for an `http://` URL.
    Plain(TcpStream),
    /// TLS, for an `https://` URL.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects tonic channels, with TLS for `https://` URLs.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: Option<Arc<ClientTls>>,
    timeout: Duration,
}

impl Connector {
    /// A connector with `tls` for `https://` URLs (and refusing `http://` ones when
    /// given); every connection and handshake within `timeout`.
    pub fn new(tls: Option<Arc<ClientTls>>, timeout: Duration) -> Self {
        Self { tls, timeout }
    }
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

async fn connect(
    uri: Uri,
    tls: Option<Arc<ClientTls>>,
    timeout: Duration,
) -> io::Result<TokioIo<ClientIo>> {
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| refused(format!("{uri}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let deadline =
        |what: &str| io::Error::new(io::ErrorKind::TimedOut, format!("{what} {uri} timed out"));
    let tls = match (https, tls) {
        (true, Some(tls)) => Some(tls),
        (false, None) => None,
        (true, None) => {
            return Err(refused(format!(
                "{uri}: an https:// URL needs a CA to verify the server by (--manager-ca)"
            )));
        }
        (false, Some(_)) => {
            return Err(refused(format!(
                "{uri}: plaintext http:// refused, TLS is configured towards the manager"
            )));
        }
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| deadline("connecting to"))??;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(TokioIo::new(ClientIo::Plain(tcp)));
    };
    let name = ServerName::try_from(host)
        .map_err(|error| refused(format!("{uri}: not a TLS server name: {error}")))?;
    let stream = tokio::time::timeout(
        timeout,
        TlsConnector::from(tls.current()).connect(name, tcp),
    )
    .await
    .map_err(|_| deadline("tls handshake with"))??;
    Ok(TokioIo::new(ClientIo::Tls(Box::new(stream))))
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<ClientIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientIo>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(connect(uri, self.tls.clone(), self.timeout))
    }
}

delegate_io!(ClientIo);
