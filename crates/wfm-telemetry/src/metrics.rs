//! The metrics of a service on `prometheus-client`: counters, gauges and latency
//! histograms, rendered in the OpenMetrics text format on scrape and observed by the OTLP
//! exporter when one is configured, with the usual `process_*` series and a build-info
//! gauge.
//!
//! Registration takes a lock and happens at start-up; recording a counter or gauge is one
//! relaxed atomic operation.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family as PromFamily;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;

use crate::process::ProcessCollector;

/// The OpenMetrics text format's content type, which Prometheus scrapes natively.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, in seconds: 50 µs to 5 s, dense where a healthy stack sits.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// The name of the gauge that is 1 with the binary's name and version as labels.
pub const BUILD_INFO: &str = "wfm_build_info";

/// A series' labels, as `(name, value)` pairs.
type Labels = Vec<(&'static str, &'static str)>;

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A monotonic counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(PromCounter);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(PromGauge);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.dec();
    }

    /// Subtracts `n`.
    #[inline]
    pub fn dec_by(&self, n: i64) {
        self.0.dec_by(n);
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.set(value);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }

    /// A guard that adds one now and subtracts it again when dropped.
    pub fn track(&self) -> GaugeGuard {
        self.inc();
        GaugeGuard(self.clone())
    }
}

/// Holds one unit of a [`Gauge`] until dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The OTLP side of a histogram, set once an exporter is attached.
#[derive(Debug)]
struct OtelHistogram {
    histogram: OnceLock<opentelemetry::metrics::Histogram<f64>>,
    attributes: Vec<opentelemetry::KeyValue>,
}

/// A latency distribution in seconds, in [`LATENCY_BUCKETS`].
#[derive(Debug, Clone)]
pub struct Histogram {
    prometheus: PromHistogram,
    otel: Arc<OtelHistogram>,
}

fn latency_histogram() -> PromHistogram {
    PromHistogram::new(LATENCY_BUCKETS.iter().copied())
}

impl Histogram {
    fn new(prometheus: PromHistogram, labels: &[(&'static str, &'static str)]) -> Self {
        Self {
            prometheus,
            otel: Arc::new(OtelHistogram {
                histogram: OnceLock::new(),
                attributes: labels
                    .iter()
                    .map(|(k, v)| opentelemetry::KeyValue::new(*k, *v))
                    .collect(),
            }),
        }
    }

    /// Records one duration.
    #[inline]
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.prometheus.observe(seconds);
        if let Some(otel) = self.otel.histogram.get() {
            otel.record(seconds, &self.otel.attributes);
        }
    }

    pub(crate) fn attach(&self, histogram: opentelemetry::metrics::Histogram<f64>) {
        let _ = self.otel.histogram.set(histogram);
    }
}

/// One series: a label set and its value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) labels: Labels,
    pub(crate) value: Value,
}

/// The labelled series of a name, as `prometheus-client` renders them.
#[derive(Debug, Clone)]
enum Labelled {
    Counter(PromFamily<Labels, PromCounter>),
    Gauge(PromFamily<Labels, PromGauge>),
    Histogram(PromFamily<Labels, PromHistogram, fn() -> PromHistogram>),
}

#[derive(Debug, Clone)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) series: Vec<Series>,
    /// `None` for a name registered without labels, which has one series.
    labelled: Option<Labelled>,
}

#[derive(Debug, Default)]
struct Inner {
    prometheus: prometheus_client::registry::Registry,
    families: Vec<Family>,
}

/// The metrics of one service; cheap to clone, clones share everything.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the `process_*` series of this process and [`BUILD_INFO`] for `binary`.
    pub fn register_process(&self, binary: &'static str) {
        self.gauge(
            BUILD_INFO,
            "Always 1: the running binary and its version.",
            &[("binary", binary), ("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1);
        self.lock()
            .prometheus
            .register_collector(Box::new(ProcessCollector));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &'static str)],
    ) -> Value {
        let mut inner = self.lock();
        let Inner {
            prometheus,
            families,
        } = &mut *inner;
        let index = match families.iter().position(|f| f.name == name) {
            Some(index) => index,
            None => {
                families.push(Family::register(prometheus, name, help, kind, labels));
                families.len() - 1
            }
        };
        let family = &mut families[index];
        debug_assert_eq!(family.kind, kind, "metric {name} registered with two kinds");
        if let Some(series) = family.series.iter().find(|s| s.labels == labels) {
            return series.value.clone();
        }
        let labels = labels.to_vec();
        let value = match (&family.labelled, kind) {
            (Some(Labelled::Counter(f)), Kind::Counter) => {
                Value::Counter(Counter(f.get_or_create_owned(&labels)))
            }
            (Some(Labelled::Gauge(f)), Kind::Gauge) => {
                Value::Gauge(Gauge(f.get_or_create_owned(&labels)))
            }
            (Some(Labelled::Histogram(f)), Kind::Histogram) => {
                Value::Histogram(Histogram::new(f.get_or_create_owned(&labels), &labels))
            }
            // A name registered with two kinds, or with and without labels: a detached
            // metric keeps the caller working, and the debug assertion points at the bug.
            _ => {
                debug_assert!(false, "metric {name} registered with and without labels");
                return Value::new(kind, &labels);
            }
        };
        family.series.push(Series {
            labels,
            value: value.clone(),
        });
        value
    }

    /// The counter `name{labels}` (`name` ends in `_total`), registered on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        match self.register(name, help, Kind::Counter, labels) {
            Value::Counter(counter) => counter,
            _ => Counter::default(),
        }
    }

    /// The gauge `name{labels}`, registered on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        match self.register(name, help, Kind::Gauge, labels) {
            Value::Gauge(gauge) => gauge,
            _ => Gauge::default(),
        }
    }

    /// The latency histogram `name{labels}` (seconds, [`LATENCY_BUCKETS`]).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        match self.register(name, help, Kind::Histogram, labels) {
            Value::Histogram(histogram) => histogram,
            _ => Histogram::new(latency_histogram(), labels),
        }
    }

    /// A snapshot of the registered families, for exporters.
    pub(crate) fn families(&self) -> Vec<Family> {
        self.lock().families.clone()
    }

    /// The names of every registered family, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.lock().families.iter().map(|f| f.name).collect()
    }

    /// Every series in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.lock().prometheus);
        out
    }
}

impl Value {
    /// A fresh metric of `kind`, in no registry yet.
    fn new(kind: Kind, labels: &[(&'static str, &'static str)]) -> Value {
        match kind {
            Kind::Counter => Value::Counter(Counter::default()),
            Kind::Gauge => Value::Gauge(Gauge::default()),
            Kind::Histogram => Value::Histogram(Histogram::new(latency_histogram(), labels)),
        }
    }
}

impl Family {
    /// A new family in `prometheus`: labelled series go in a `prometheus-client` family,
    /// an unlabelled name is its one series.
    fn register(
        prometheus: &mut prometheus_client::registry::Registry,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &'static str)],
    ) -> Family {
        // prometheus-client appends `_total` to a counter's name itself.
        let exposed = match kind {
            Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
            Kind::Gauge | Kind::Histogram => name,
        };
        let mut family = Family {
            name,
            help,
            kind,
            series: Vec::new(),
            labelled: None,
        };
        if labels.is_empty() {
            let value = Value::new(kind, labels);
            match &value {
                Value::Counter(c) => prometheus.register(exposed, help, c.0.clone()),
                Value::Gauge(g) => prometheus.register(exposed, help, g.0.clone()),
                Value::Histogram(h) => prometheus.register(exposed, help, h.prometheus.clone()),
            }
            family.series.push(Series {
                labels: Vec::new(),
                value,
            });
            return family;
        }
        let labelled = match kind {
            Kind::Counter => Labelled::Counter(PromFamily::default()),
            Kind::Gauge => Labelled::Gauge(PromFamily::default()),
            Kind::Histogram => Labelled::Histogram(PromFamily::new_with_constructor(
                latency_histogram as fn() -> PromHistogram,
            )),
        };
        match &labelled {
            Labelled::Counter(f) => prometheus.register(exposed, help, f.clone()),
            Labelled::Gauge(f) => prometheus.register(exposed, help, f.clone()),
            Labelled::Histogram(f) => prometheus.register(exposed, help, f.clone()),
        }
        family.labelled = Some(labelled);
        family
    }
}

/// Reads one sample from Prometheus text: the value of the line `series` (name with its
/// labels exactly as rendered, e.g. `x_total{reason="gap"}`). For tests and probes.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok())?
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let registry = Registry::new();
        let applied = registry.counter("x_applied_total", "Applied.", &[]);
        let gap = registry.counter("x_rejected_total", "Rejected.", &[("reason", "gap")]);
        let sessions = registry.gauge("x_sessions", "Sessions.", &[]);
        let latency = registry.histogram("x_latency_seconds", "Latency.", &[]);
        applied.add(3);
        gap.inc();
        let guard = sessions.track();
        sessions.inc();
        drop(guard);
        latency.observe(Duration::from_micros(700));
        latency.observe(Duration::from_secs(10));
        let text = registry.render();
        assert!(
            text.contains("# TYPE x_applied counter\nx_applied_total 3\n"),
            "{text}"
        );
        assert_eq!(sample(&text, "x_rejected_total{reason=\"gap\"}"), Some(1.0));
        assert_eq!(sample(&text, "x_sessions"), Some(1.0));
        assert_eq!(
            sample(&text, "x_latency_seconds_bucket{le=\"0.0005\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "x_latency_seconds_bucket{le=\"0.001\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "x_latency_seconds_bucket{le=\"+Inf\"}"),
            Some(2.0)
        );
        assert_eq!(sample(&text, "x_latency_seconds_count"), Some(2.0));
        assert!(sample(&text, "x_latency_seconds_sum").unwrap() > 10.0);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_same_series_registered_twice_is_one_series() {
        let registry = Registry::new();
        let a = registry.counter("c_total", "C.", &[("k", "v")]);
        let b = registry.counter("c_total", "C.", &[("k", "v")]);
        let other = registry.counter("c_total", "C.", &[("k", "w")]);
        a.inc();
        b.inc();
        other.inc();
        let text = registry.render();
        assert_eq!(sample(&text, "c_total{k=\"v\"}"), Some(2.0));
        assert_eq!(sample(&text, "c_total{k=\"w\"}"), Some(1.0));
        assert_eq!(text.matches("# TYPE c counter").count(), 1);
        assert_eq!(registry.names(), ["c_total"]);
    }
}
