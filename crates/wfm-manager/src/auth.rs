//! Who may call what: the role each RPC needs, checked in one tower layer in front of every
//! service (the workflow manager, health, reflection), from the role that the caller's
//! client certificate got at the TLS handshake (`PeerInfo`, the connection's tonic
//! `ConnectInfo`).
//!
//! | RPC | role |
//! | --- | --- |
//! | `CreateSession`, `ApplyUpdate`, `PushUpdates`, `EndSession`, `ReceiveCommands` | `ip` |
//! | `Attach`, `BindSession` | `gateway` |
//! | `GetSession` | `ops` |
//! | `GetServiceInfo`, `grpc.health.v1`, reflection | any authenticated caller |
//! | anything else | `peer` |
//!
//! `peer` (another replica forwarding a call) may make every call, and only a `peer`'s
//! `wfm-forwarded-by` header is believed: anyone else's is removed, so that no caller can
//! stop a replica from routing its call to the owner. Without a client CA there are no
//! roles and the layer lets everything through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use tonic::codegen::http;
use wfm_telemetry::Counter;
use wfm_tls::{PeerIdentity, Role};

use crate::cluster::FORWARDED_HEADER;

/// What tonic hands each call about its connection.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    /// The peer's address.
    #[allow(dead_code)]
    pub(crate) remote: SocketAddr,
    /// The verified client certificate's identity; `None` without one.
    pub(crate) identity: Option<Arc<PeerIdentity>>,
}

const SERVICE: &str = "/wfm.v1.WorkflowManager/";

/// The role a call to `path` needs; `None` for calls open to every authenticated caller.
pub(crate) fn needed(path: &str) -> Option<Role> {
    if let Some(method) = path.strip_prefix(SERVICE) {
        return match method {
            "CreateSession" | "ApplyUpdate" | "PushUpdates" | "EndSession" | "ReceiveCommands" => {
                Some(Role::Ip)
            }
            "Attach" | "BindSession" => Some(Role::Gateway),
            "GetSession" => Some(Role::Ops),
            "GetServiceInfo" => None,
            _ => Some(Role::Peer),
        };
    }
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return None;
    }
    Some(Role::Peer)
}

/// The refusal of a call needing `role` from `identity`, or `None` if it is allowed.
pub(crate) fn refusal(role: Option<Role>, identity: Option<&PeerIdentity>) -> Option<String> {
    let Some(identity) = identity else {
        return Some("this call needs a client certificate".to_string());
    };
    let role = role?;
    match identity.role() {
        Some(Role::Peer) => None,
        Some(has) if has == role => None,
        _ => Some(format!(
            "this call needs the `{role}` role; {}",
            identity.describe()
        )),
    }
}

/// The layer enforcing roles, when `enforce` (a client CA is configured).
#[derive(Debug, Clone)]
pub(crate) struct AuthorizeLayer {
    pub(crate) enforce: bool,
    pub(crate) denied: Counter,
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`AuthorizeLayer`]'s service.
#[derive(Debug, Clone)]
pub(crate) struct Authorize<S> {
    inner: S,
    layer: AuthorizeLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if self.layer.enforce {
            let identity = request
                .extensions()
                .get::<PeerInfo>()
                .and_then(|info| info.identity.clone());
            let role = needed(request.uri().path());
            if let Some(message) = refusal(role, identity.as_deref()) {
                self.layer.denied.inc();
                tracing::debug!(path = request.uri().path(), %message, "call refused");
                let status = tonic::Status::permission_denied(message);
                return Either::Left(ready(Ok(status.into_http())));
            }
            if identity.and_then(|i| i.role()) != Some(Role::Peer) {
                request.headers_mut().remove(FORWARDED_HEADER);
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Option<Role>) -> PeerIdentity {
        let uri = "spiffe://wfm/x".to_string();
        PeerIdentity {
            uris: vec![uri.clone()],
            matched: role.map(|r| (uri, r)),
        }
    }

    #[test]
    fn each_role_makes_its_calls_only_and_peer_makes_all() {
        let path = |m: &str| format!("{SERVICE}{m}");
        for (method, role) in [
            ("CreateSession", Role::Ip),
            ("ApplyUpdate", Role::Ip),
            ("PushUpdates", Role::Ip),
            ("EndSession", Role::Ip),
            ("Attach", Role::Gateway),
            ("BindSession", Role::Gateway),
            ("GetSession", Role::Ops),
        ] {
            let needs = needed(&path(method));
            assert_eq!(needs, Some(role), "{method}");
            assert_eq!(refusal(needs, Some(&identity(Some(role)))), None);
            assert_eq!(refusal(needs, Some(&identity(Some(Role::Peer)))), None);
            for other in Role::ALL
                .into_iter()
                .filter(|r| *r != role && *r != Role::Peer)
            {
                let message = refusal(needs, Some(&identity(Some(other)))).unwrap_or_default();
                assert_eq!(
                    message,
                    format!(
                        "this call needs the `{role}` role; the client certificate spiffe://wfm/x has `{other}`"
                    )
                );
            }
        }
        for open in [
            path("GetServiceInfo"),
            "/grpc.health.v1.Health/Check".to_string(),
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_string(),
        ] {
            assert_eq!(
                refusal(needed(&open), Some(&identity(None))),
                None,
                "{open}"
            );
        }
        assert_eq!(needed("/other.Service/Call"), Some(Role::Peer));
        assert!(refusal(None, None).is_some(), "no certificate, no call");
    }

    /// Answers every call, keeping whether it carried the forwarding header.
    #[derive(Clone, Default)]
    struct Recorder(Arc<std::sync::Mutex<Vec<bool>>>);

    impl tower::Service<http::Request<()>> for Recorder {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            let forwarded = request.headers().contains_key(FORWARDED_HEADER);
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(forwarded);
            ready(Ok(http::Response::new(tonic::body::Body::empty())))
        }
    }

    #[test]
    fn only_a_peer_may_say_a_call_was_forwarded() {
        use tower::{Layer as _, Service as _};
        let recorder = Recorder::default();
        let layer = AuthorizeLayer {
            enforce: true,
            denied: Counter::default(),
        };
        let mut service = layer.layer(recorder.clone());
        for role in [Role::Ip, Role::Peer] {
            let mut request = http::Request::new(());
            *request.uri_mut() = format!("{SERVICE}ApplyUpdate").parse().unwrap_or_default();
            request
                .headers_mut()
                .insert(FORWARDED_HEADER, http::HeaderValue::from_static("node-a"));
            request.extensions_mut().insert(PeerInfo {
                remote: SocketAddr::from(([127, 0, 0, 1], 1)),
                identity: Some(Arc::new(identity(Some(role)))),
            });
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut call = std::pin::pin!(service.call(request));
            assert!(std::future::Future::poll(call.as_mut(), &mut cx).is_ready());
        }
        let seen = recorder
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // An `ip` caller's header is removed (the call is routed as its own); a peer's stays.
        assert_eq!(seen, [false, true]);
    }
}
