//! W3C trace context across the services, and the few spans that carry it.
//!
//! A [`Tracer`] is a cheap handle that is either disabled (no OTLP endpoint: every call is
//! one branch and nothing is allocated) or backed by an OTLP exporter. It is passed to each
//! service in its config rather than kept in a global, so that two services in one process
//! (tests, `wfm up`) export under their own names.
//!
//! The carriers are the W3C `traceparent` / `tracestate` pair: gRPC metadata on the way in,
//! and a `map<string, string>` on the events the manager sends to the gateway.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

/// The W3C header that carries the trace id, parent span id and flags.
pub const TRACEPARENT: &str = "traceparent";

/// Starts spans, or does nothing at all when disabled.
#[derive(Clone, Default)]
pub struct Tracer(Option<SdkTracer>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tracer(otlp)"
        } else {
            "Tracer(disabled)"
        })
    }
}

/// Reads `traceparent` from gRPC request metadata.
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes into a plain string map (the proto `trace_context` field).
struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// Reads from a plain string map.
struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl Tracer {
    /// A tracer that never records anything.
    pub fn disabled() -> Self {
        Self(None)
    }

    pub(crate) fn new(tracer: SdkTracer) -> Self {
        Self(Some(tracer))
    }

    /// Whether spans are recorded and exported.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// A server span for a gRPC request: the child of the caller's `traceparent` if the
    /// metadata carries one, else the root of a new trace. `None` when disabled.
    pub fn server_span(
        &self,
        name: &'static str,
        metadata: &tonic::metadata::MetadataMap,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Span> {
        let tracer = self.0.as_ref()?;
        let parent = TraceContextPropagator::new().extract(&Metadata(metadata));
        Some(start(tracer, name, SpanKind::Server, &parent, attributes()))
    }

    /// A span continuing the trace in `carrier` (a `trace_context` map), or `None` when
    /// disabled or when the carrier holds no valid context: work that nobody traced
    /// upstream does not start traces of its own here.
    pub fn child_span(
        &self,
        name: &'static str,
        kind: SpanKind,
        carrier: &HashMap<String, String>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Span> {
        let tracer = self.0.as_ref()?;
        if carrier.is_empty() {
            return None;
        }
        let parent = TraceContextPropagator::new().extract(&MapExtractor(carrier));
        if !parent.span().span_context().is_valid() {
            return None;
        }
        Some(start(tracer, name, kind, &parent, attributes()))
    }
}

fn start(
    tracer: &SdkTracer,
    name: &'static str,
    kind: SpanKind,
    parent: &Context,
    attributes: Vec<KeyValue>,
) -> Span {
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    Span {
        cx: parent.with_span(span),
    }
}

/// A span in progress; it ends when dropped.
#[derive(Debug)]
pub struct Span {
    cx: Context,
}

impl Span {
    /// The context to hand downstream: `traceparent` (and `tracestate` when set).
    pub fn trace_context(&self) -> HashMap<String, String> {
        let mut carrier = HashMap::with_capacity(1);
        TraceContextPropagator::new().inject_context(&self.cx, &mut MapInjector(&mut carrier));
        carrier
    }

    /// The trace id, in lowercase hex.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    /// Adds an attribute.
    pub fn set_attribute(&self, attribute: KeyValue) {
        self.cx.span().set_attribute(attribute);
    }

    /// Marks the span as failed with `message`.
    pub fn set_error(&self, message: String) {
        self.cx
            .span()
            .set_status(opentelemetry::trace::Status::error(message));
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_tracer_starts_nothing() {
        let tracer = Tracer::disabled();
        let metadata = tonic::metadata::MetadataMap::new();
        assert!(tracer.server_span("x", &metadata, Vec::new).is_none());
        let carrier = HashMap::from([(
            TRACEPARENT.to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        )]);
        assert!(
            tracer
                .child_span("x", SpanKind::Internal, &carrier, Vec::new)
                .is_none()
        );
    }
}
