//! A small metrics registry: counters, gauges and histograms that are plain atomics on the
//! hot path, rendered in the Prometheus text format on scrape and observed by the OTLP
//! exporter when one is configured.
//!
//! Registration takes a lock and happens at start-up; recording never locks. Rendering
//! takes the registration lock and reads the atomics, so a scrape never blocks a writer.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// The Prometheus text exposition format's content type.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds: 50 µs to 5 s, dense where a healthy stack sits.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A monotonic counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
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

/// The shared part of a histogram.
#[derive(Debug)]
struct HistogramCore {
    bounds: &'static [f64],
    /// Per-bucket counts (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
    /// Also records into the OTLP exporter's histogram once one is attached.
    otel: OnceLock<opentelemetry::metrics::Histogram<f64>>,
    otel_attributes: Vec<opentelemetry::KeyValue>,
}

/// A latency distribution in seconds, with fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    fn new(bounds: &'static [f64], labels: &[(&'static str, &'static str)]) -> Self {
        Self(Arc::new(HistogramCore {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
            otel: OnceLock::new(),
            otel_attributes: labels
                .iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(*k, *v))
                .collect(),
        }))
    }

    /// Records one duration.
    #[inline]
    pub fn observe(&self, elapsed: Duration) {
        let core = &*self.0;
        let seconds = elapsed.as_secs_f64();
        let index = core
            .bounds
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(core.bounds.len());
        if let Some(bucket) = core.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        core.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        core.count.fetch_add(1, Ordering::Relaxed);
        if let Some(otel) = core.otel.get() {
            otel.record(seconds, &core.otel_attributes);
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub(crate) fn attach(&self, histogram: opentelemetry::metrics::Histogram<f64>) {
        let _ = self.0.otel.set(histogram);
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
    pub(crate) labels: Vec<(&'static str, &'static str)>,
    pub(crate) value: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) series: Vec<Series>,
}

/// The metrics of one service; cheap to clone, clones share everything.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<Vec<Family>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn register(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &'static str)],
        make: impl FnOnce() -> Value,
    ) -> Value {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match families.iter().position(|f| f.name == name) {
            Some(index) => index,
            None => {
                families.push(Family {
                    name,
                    help,
                    kind,
                    series: Vec::new(),
                });
                families.len() - 1
            }
        };
        let family = &mut families[index];
        debug_assert_eq!(family.kind, kind, "metric {name} registered with two kinds");
        if let Some(series) = family.series.iter().find(|s| s.labels == labels) {
            return series.value.clone();
        }
        let value = make();
        family.series.push(Series {
            labels: labels.to_vec(),
            value: value.clone(),
        });
        value
    }

    /// The counter `name{labels}`, registered on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        match self.register(name, help, Kind::Counter, labels, || {
            Value::Counter(Counter::default())
        }) {
            Value::Counter(counter) => counter,
            // A name registered with another kind: a detached counter keeps the caller
            // working, and the debug assertion above points at the bug.
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
        match self.register(name, help, Kind::Gauge, labels, || {
            Value::Gauge(Gauge::default())
        }) {
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
        match self.register(name, help, Kind::Histogram, labels, || {
            Value::Histogram(Histogram::new(LATENCY_BUCKETS, labels))
        }) {
            Value::Histogram(histogram) => histogram,
            _ => Histogram::new(LATENCY_BUCKETS, labels),
        }
    }

    /// A snapshot of the registered families, for exporters.
    pub(crate) fn families(&self) -> Vec<Family> {
        self.families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The names of every registered family, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.families().iter().map(|f| f.name).collect()
    }

    /// Every series in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for family in self.families() {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            for series in &family.series {
                render_series(&mut out, family.name, series);
            }
        }
        out
    }
}

fn labels_text(labels: &[(&'static str, &'static str)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_series(out: &mut String, name: &str, series: &Series) {
    match &series.value {
        Value::Counter(c) => {
            let _ = writeln!(
                out,
                "{name}{} {}",
                labels_text(&series.labels, None),
                c.get()
            );
        }
        Value::Gauge(g) => {
            let _ = writeln!(
                out,
                "{name}{} {}",
                labels_text(&series.labels, None),
                g.get()
            );
        }
        Value::Histogram(h) => {
            let core = &*h.0;
            let mut cumulative = 0u64;
            for (index, bucket) in core.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = core
                    .bounds
                    .get(index)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {cumulative}",
                    labels_text(&series.labels, Some(("le", &le)))
                );
            }
            let sum = core.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let labels = labels_text(&series.labels, None);
            let _ = writeln!(out, "{name}_sum{labels} {sum}");
            let _ = writeln!(
                out,
                "{name}_count{labels} {}",
                core.count.load(Ordering::Relaxed)
            );
        }
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
        assert!(text.contains("# TYPE x_applied_total counter\nx_applied_total 3\n"));
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
    }

    #[test]
    fn the_same_series_registered_twice_is_one_series() {
        let registry = Registry::new();
        let a = registry.counter("c_total", "C.", &[("k", "v")]);
        let b = registry.counter("c_total", "C.", &[("k", "v")]);
        a.inc();
        b.inc();
        assert_eq!(sample(&registry.render(), "c_total{k=\"v\"}"), Some(2.0));
        assert_eq!(registry.names(), ["c_total"]);
    }
}
