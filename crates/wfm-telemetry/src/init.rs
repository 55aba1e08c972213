//! Start-up of logs and of the OTLP exporters, and their orderly shutdown.

use std::io::IsTerminal as _;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::metrics::{Family, Kind, Registry, Value};
use crate::trace::Tracer;

/// The standard variable naming the OTLP collector; unset, nothing is exported.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable overriding the service name reported with traces and metrics.
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
/// The standard variable adding resource attributes (`key=value,key=value`).
pub const RESOURCE_ATTRIBUTES_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The variable filtering logs (`info`, `wfm_manager=debug,info`, ...).
pub const LOG_FILTER_ENV: &str = "RUST_LOG";

/// Every environment variable read outside the command-line settings, for the docs.
pub const STANDARD_ENV: &[&str] = &[
    OTLP_ENDPOINT_ENV,
    SERVICE_NAME_ENV,
    RESOURCE_ATTRIBUTES_ENV,
    LOG_FILTER_ENV,
];

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global logger was already installed.
    #[error("cannot install the logger: {0}")]
    Logs(String),
    /// An OTLP exporter could not be built.
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// Flushing or shutting down an exporter failed.
    #[error("otlp shutdown: {0}")]
    Shutdown(String),
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for containers and log pipelines.
    Json,
}

/// Whether logs may carry ANSI colours: only on a terminal, so that piped and captured
/// output (containers, CI, files) stays plain text.
pub fn ansi() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// Installs the global logger: `RUST_LOG` filters (default `info`), in `format`.
pub fn init_logs(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| TelemetryError::Logs(e.to_string()))
}

/// Traces and metrics exported over OTLP/gRPC.
pub struct Otlp {
    tracer: Tracer,
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp").finish_non_exhaustive()
    }
}

fn resource(service: &str) -> Resource {
    let builder = Resource::builder();
    // The standard variable wins over the built-in name.
    match std::env::var(SERVICE_NAME_ENV) {
        Ok(name) if !name.is_empty() => builder.build(),
        _ => builder.with_service_name(service.to_string()).build(),
    }
}

impl Otlp {
    /// Exports traces and `registry`'s metrics of `service` to the collector at
    /// `endpoint` (e.g. `http://otel-collector:4317`). Only the series registered so far
    /// are exported: register the service's metrics first. Must run inside a
    /// multi-threaded Tokio runtime: the exporters' connections live on it.
    pub fn start(
        service: &str,
        endpoint: &str,
        registry: &Registry,
    ) -> Result<Self, TelemetryError> {
        let failed = |error: &dyn std::fmt::Display| TelemetryError::Otlp {
            endpoint: endpoint.to_string(),
            message: error.to_string(),
        };
        let resource = resource(service);
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| failed(&e))?;
        let traces = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let tracer = Tracer::new(traces.tracer(service.to_string()));

        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| failed(&e))?;
        let metrics = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter).build())
            .with_resource(resource)
            .build();
        observe(&metrics, registry);
        Ok(Self {
            tracer,
            traces,
            metrics,
        })
    }

    /// The tracer to hand to the service.
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Exports everything recorded so far. Blocks: call it from a blocking thread or a
    /// multi-threaded runtime.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        self.traces
            .force_flush()
            .map_err(|e| TelemetryError::Shutdown(e.to_string()))?;
        self.metrics
            .force_flush()
            .map_err(|e| TelemetryError::Shutdown(e.to_string()))
    }

    /// Flushes and stops both exporters. Blocks, as [`Otlp::force_flush`].
    pub fn shutdown(self) -> Result<(), TelemetryError> {
        let traces = self.traces.shutdown();
        let metrics = self.metrics.shutdown();
        traces.map_err(|e| TelemetryError::Shutdown(e.to_string()))?;
        metrics.map_err(|e| TelemetryError::Shutdown(e.to_string()))
    }
}

/// Registers every series of `registry` with the OTLP meter: counters and gauges as
/// observable instruments read at export time, so recording stays one atomic add;
/// histograms get an OTel histogram they also record into.
fn observe(provider: &SdkMeterProvider, registry: &Registry) {
    // The scope names the instrumenting library; the service is named by the resource.
    let meter = provider.meter("wfm-telemetry");
    for Family {
        name,
        help,
        kind,
        series,
        ..
    } in registry.families()
    {
        let attributes = |labels: &[(&'static str, &'static str)]| -> Vec<KeyValue> {
            labels.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect()
        };
        match kind {
            Kind::Counter => {
                let series: Vec<_> = series
                    .iter()
                    .filter_map(|s| match &s.value {
                        Value::Counter(c) => Some((c.clone(), attributes(&s.labels))),
                        _ => None,
                    })
                    .collect();
                let _ = meter
                    .u64_observable_counter(name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (counter, attributes) in &series {
                            observer.observe(counter.get(), attributes);
                        }
                    })
                    .build();
            }
            Kind::Gauge => {
                let series: Vec<_> = series
                    .iter()
                    .filter_map(|s| match &s.value {
                        Value::Gauge(g) => Some((g.clone(), attributes(&s.labels))),
                        _ => None,
                    })
                    .collect();
                let _ = meter
                    .i64_observable_gauge(name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        for (gauge, attributes) in &series {
                            observer.observe(gauge.get(), attributes);
                        }
                    })
                    .build();
            }
            Kind::Histogram => {
                let histogram = meter
                    .f64_histogram(name)
                    .with_description(help)
                    .with_unit("s")
                    .with_boundaries(crate::metrics::LATENCY_BUCKETS.to_vec())
                    .build();
                for s in &series {
                    if let Value::Histogram(h) = &s.value {
                        h.attach(histogram.clone());
                    }
                }
            }
        }
    }
}

/// The telemetry settings every binary shares; flatten into its clap arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log format: `text` for a terminal, `json` for containers. `RUST_LOG` filters.
    #[arg(long, env = "WFM_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint for traces and metrics, e.g. `http://127.0.0.1:4317`.
    /// Unset, nothing is exported and tracing costs nothing.
    #[arg(long, env = OTLP_ENDPOINT_ENV)]
    pub otlp_endpoint: Option<String>,
}

/// What a binary started: its logger and, with an endpoint, the OTLP exporters.
#[derive(Debug)]
pub struct Telemetry {
    otlp: Option<Otlp>,
}

impl TelemetryArgs {
    /// Installs logs, adds the `process_*` series and the build info of `service` to
    /// `registry`, and starts the OTLP exporters of `service` when an endpoint is set.
    pub fn start(
        &self,
        service: &'static str,
        registry: &Registry,
    ) -> Result<Telemetry, TelemetryError> {
        init_logs(self.log_format)?;
        registry.register_process(service);
        let otlp = match self.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
            Some(endpoint) => {
                let otlp = Otlp::start(service, endpoint, registry)?;
                tracing::info!(endpoint, "exporting traces and metrics over otlp");
                Some(otlp)
            }
            None => None,
        };
        Ok(Telemetry { otlp })
    }
}

impl Telemetry {
    /// The tracer for the service: disabled without an OTLP endpoint.
    pub fn tracer(&self) -> Tracer {
        self.otlp.as_ref().map(Otlp::tracer).unwrap_or_default()
    }

    /// Flushes and stops the exporters, giving up after `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        let Some(otlp) = self.otlp else {
            return;
        };
        // Shutting down blocks on the exporters' connections, which run on the runtime.
        let flush = tokio::task::spawn_blocking(move || otlp.shutdown());
        match tokio::time::timeout(timeout, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "otlp shutdown failed"),
            Ok(Err(error)) => tracing::warn!(%error, "otlp shutdown panicked"),
            Err(_) => tracing::warn!("otlp shutdown timed out"),
        }
    }
}
