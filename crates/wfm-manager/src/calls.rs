//! Call accounting in front of every service: the calls open right now (each stream counts
//! until its response ends), and the messages tonic refuses for their size before any
//! handler sees them.
//!
//! HTTP/2 enforces the per-connection stream limit itself (a client's extra calls wait for a
//! free stream), so the open-calls gauge is what shows a connection near its limit.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt as _};
use tonic::body::Body;
use tonic::codegen::http;
use wfm_telemetry::Counter;
use wfm_telemetry::metrics::{Gauge, GaugeGuard};

/// gRPC's OUT_OF_RANGE, the status tonic gives a message over the size limit.
const OUT_OF_RANGE: &str = "11";

/// Counts each call while it is open, and size refusals.
#[derive(Debug, Clone)]
pub(crate) struct CallsLayer {
    /// Calls and streams open, over every connection.
    pub(crate) open: Gauge,
    /// Messages refused for exceeding the size limit.
    pub(crate) too_large: Counter,
}

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`CallsLayer`]'s service.
#[derive(Debug, Clone)]
pub(crate) struct Calls<S> {
    inner: S,
    layer: CallsLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Calls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let open = self.layer.open.track();
        let too_large = self.layer.too_large.clone();
        self.inner
            .call(request)
            .map(move |result| {
                result.map(|response| {
                    // A unary request over the limit is refused before its handler runs, in
                    // a trailers-only response: the status is in the headers. (A stream's
                    // oversized message reaches the handler, which counts it.)
                    if response
                        .headers()
                        .get("grpc-status")
                        .is_some_and(|status| status == OUT_OF_RANGE)
                    {
                        too_large.inc();
                    }
                    response.map(|body| Body::new(Tracked { body, _open: open }))
                })
            })
            .boxed()
    }
}

/// A response body that keeps its call counted as open until it ends or is dropped.
struct Tracked {
    body: Body,
    _open: GaugeGuard,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}
