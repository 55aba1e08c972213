//! What every wfm binary needs around its service: logs, OpenTelemetry traces and
//! metrics over OTLP, Prometheus metrics, layered settings, and the shutdown signal.
//!
//! # Layout
//! - [`metrics`]: counters, gauges and latency histograms on `prometheus-client`, rendered
//!   as OpenMetrics text, with the `process_*` series (`process`) and a build-info gauge.
//! - [`trace`]: the [`Tracer`] handle, W3C trace context in and out, spans that end on drop.
//! - [`init`]: logs (text or JSON, `RUST_LOG`), the OTLP exporters, and their shutdown.
//! - [`http`]: the `/metrics` route and a listener for it.
//! - [`settings`]: defaults → TOML file → `WFM_*` environment → flags, one-line errors,
//!   secrets from files.
//! - [`signal`]: ctrl-c or SIGTERM, the start of a graceful shutdown.
//! - [`command`]: the entry of a service command: settings, runtime, exit codes.

pub mod command;
pub mod http;
pub mod init;
pub mod metrics;
mod process;
pub mod settings;
pub mod signal;
pub mod trace;

pub use init::{LogFormat, Otlp, Telemetry, TelemetryArgs, TelemetryError};
pub use metrics::{Counter, Gauge, Histogram, Registry};
pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::SpanKind;
pub use signal::{serve_until_signal, shutdown_signal};
pub use trace::{Span, Tracer};
