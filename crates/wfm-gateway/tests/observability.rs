//! Traces and metrics across both services: a manager and a gateway in this process, each
//! exporting under its own service name to a small OTLP collector run by the test, and
//! both `/metrics` endpoints scraped over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wfm_gateway::GatewayStats;
use wfm_manager::ManagerStats;
use wfm_proto::v1 as pb;
use wfm_telemetry::metrics::sample;
use wfm_telemetry::{Otlp, Registry};

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    name: String,
}

/// An OTLP/gRPC collector that remembers what it was sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    /// `(service, metric name)` of every metric exported.
    metrics: Arc<Mutex<Vec<(String, String)>>>,
}

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        name: span.name,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            let service = service_name(resource_metrics.resource.as_ref());
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    metrics.push((service.clone(), metric.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn start_collector(collector: Collector) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cti_update_is_one_trace_across_both_services_and_the_metrics_move() {
    let collector = Collector::default();
    let endpoint = start_collector(collector.clone()).await;

    // Series are registered before the exporter starts, as the binaries do: it observes
    // what the registry holds then.
    let manager_registry = Registry::new();
    let mut config = manager_config();
    config.stats = Arc::new(ManagerStats::new(&manager_registry));
    let manager_otlp = Otlp::start("wfm-manager", &endpoint, &manager_registry).unwrap();
    config.tracer = manager_otlp.tracer();
    let manager = Manager::start_with(config).await;
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let manager_metrics = metrics_listener.local_addr().unwrap();
    let metrics_stop = CancellationToken::new();
    tokio::spawn(wfm_telemetry::http::serve_metrics(
        metrics_listener,
        manager_registry,
        None,
        metrics_stop.clone(),
    ));

    let gateway_registry = Registry::new();
    let mut config = gateway_config(manager.addr);
    config.stats = Arc::new(GatewayStats::new(&gateway_registry));
    let gateway_otlp = Otlp::start("wfm-gateway", &endpoint, &gateway_registry).unwrap();
    config.tracer = gateway_otlp.tracer();
    let gateway = Gateway::start(config).await;
    gateway.wait_ready(200).await;

    let mut client = manager.client().await;
    let reference = create(&mut client, "s1").await.resource_reference;
    let mut ws = gateway.ws().await;
    let bound = ws.bind("1", &reference, false).await;
    assert_eq!(bound["messageType"], "coreResponse", "{bound}");
    let initial = ws.events(2).await;
    assert_eq!(initial.len(), 2);

    // One CTI update, pushed with a W3C traceparent as an Interaction Processor would.
    let mut request = tonic::Request::new(update("s1", 1, agent(pb::AgentState::Ready)));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let ack = client.apply_update(request).await.unwrap().into_inner();
    assert!(ack.events > 0);
    let changed = ws.events(ack.events as usize).await;
    assert_eq!(changed.len(), ack.events as usize);
    // A repeat, a gap and an unknown session.
    client
        .apply_update(update("s1", 1, agent(pb::AgentState::Ready)))
        .await
        .unwrap();
    client
        .apply_update(update("s1", 9, agent(pb::AgentState::Ready)))
        .await
        .unwrap_err();
    client
        .apply_update(update("nobody", 1, agent(pb::AgentState::Ready)))
        .await
        .unwrap_err();

    // Traces: one span in each service, sharing the caller's trace id.
    let (manager_otlp, gateway_otlp) = tokio::task::spawn_blocking(move || {
        manager_otlp.force_flush().unwrap();
        gateway_otlp.force_flush().unwrap();
        (manager_otlp, gateway_otlp)
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let has = |service: &str, name: &str| {
            spans
                .iter()
                .any(|s| s.service == service && s.name == name && s.trace_id == TRACE_ID)
        };
        if has("wfm-manager", "wfm.manager.apply_update")
            && has("wfm-gateway", "wfm.gateway.websocket_send")
        {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector never got spans of trace {TRACE_ID} from both services: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sends = spans
        .iter()
        .filter(|s| s.name == "wfm.gateway.websocket_send" && s.trace_id == TRACE_ID)
        .count();
    assert_eq!(
        sends, ack.events as usize,
        "one send span per event of the update"
    );
    // The initial full state was caused by no traced update: no spans for it.
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "wfm.gateway.websocket_send")
            .all(|s| s.trace_id == TRACE_ID)
    );
    // Metrics over OTLP too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while collector.metrics.lock().unwrap().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no metrics exported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exported = collector.metrics.lock().unwrap().clone();
    for (service, metric) in [
        ("wfm-manager", "wfm_manager_updates_applied_total"),
        ("wfm-manager", "wfm_manager_update_to_event_seconds"),
        ("wfm-gateway", "wfm_gateway_events_sent_total"),
        ("wfm-gateway", "wfm_gateway_event_to_write_seconds"),
    ] {
        assert!(
            exported.iter().any(|(s, m)| s == service && m == metric),
            "{service} did not export {metric}: {exported:?}"
        );
    }

    // Prometheus text on both services.
    let (status, text) = http_get(manager_metrics, "/metrics").await;
    assert_eq!(status, 200);
    let events = 2.0 + f64::from(ack.events);
    assert_eq!(value(&text, "wfm_manager_sessions"), 1.0);
    assert_eq!(value(&text, "wfm_manager_bindings"), 1.0);
    assert_eq!(value(&text, "wfm_manager_updates_applied_total"), 1.0);
    assert_eq!(value(&text, "wfm_manager_updates_duplicate_total"), 1.0);
    assert_eq!(
        value(
            &text,
            "wfm_manager_updates_rejected_total{reason=\"sequence_gap\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wfm_manager_updates_rejected_total{reason=\"unknown_session\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, "wfm_manager_events_emitted_total"), events);
    assert_eq!(
        value(&text, "wfm_manager_update_to_event_seconds_count"),
        1.0
    );
    assert!(
        value(&text, "wfm_manager_grpc_connections") >= 2.0,
        "{text}"
    );
    assert!(value(&text, "wfm_manager_attach_streams") >= 1.0, "{text}");

    let (status, text) = http_get(gateway.addr, wfm_gateway::METRICS_PATH).await;
    assert_eq!(status, 200);
    assert_eq!(value(&text, "wfm_gateway_connections"), 1.0);
    assert_eq!(value(&text, "wfm_gateway_connections_total"), 1.0);
    assert_eq!(value(&text, "wfm_gateway_bindings"), 1.0);
    assert_eq!(value(&text, "wfm_gateway_upstream_streams"), 2.0);
    assert_eq!(value(&text, "wfm_gateway_events_received_total"), events);
    assert_eq!(value(&text, "wfm_gateway_events_sent_total"), events);
    assert_eq!(
        value(&text, "wfm_gateway_event_to_write_seconds_count"),
        events
    );

    // The client leaves: the gauges come back down.
    drop(ws);
    wait_bound(&mut client, "s1", false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = http_get(gateway.addr, "/metrics").await;
        if value(&text, "wfm_gateway_connections") == 0.0
            && value(&text, "wfm_gateway_bindings") == 0.0
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, text) = http_get(manager_metrics, "/metrics").await;
    assert_eq!(value(&text, "wfm_manager_bindings"), 0.0);

    gateway.shutdown.cancel();
    gateway.task.await.unwrap().unwrap();
    manager.stop().await;
    metrics_stop.cancel();
    tokio::task::spawn_blocking(move || {
        manager_otlp.shutdown().unwrap();
        gateway_otlp.shutdown().unwrap();
    })
    .await
    .unwrap();
}
