//! One `Attach` stream's task: open it (health, service information, catalogue), read
//! it until it ends or its endpoint is retired, and reconnect with backoff.

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wfm_proto::v1 as pb;
use wfm_proto::v1::attach_response::Kind;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use super::{COMMAND_QUEUE, Stream, Upstream};
use crate::catalogue::{Catalogue, CatalogueError};
use crate::delivery::ServiceInfo;
use crate::endpoints::Endpoint;
use crate::errors::GatewayError;

/// The gRPC service name the manager reports in `grpc.health.v1`.
const HEALTH_SERVICE: &str = "wfm.v1.WorkflowManager";

impl Upstream {
    pub(super) fn spawn_streams(self: &Arc<Self>, endpoint: &Endpoint) {
        let Some((tracker, stop)) = self.runtime.get() else {
            return;
        };
        for &slot in &endpoint.slots {
            tracker.spawn(Arc::clone(self).run_stream(
                slot,
                endpoint.url.clone(),
                endpoint.channel.clone(),
                stop.clone(),
                endpoint.retire.clone(),
            ));
        }
    }

    async fn run_stream(
        self: Arc<Self>,
        index: usize,
        url: String,
        channel: Channel,
        stop: CancellationToken,
        retire: CancellationToken,
    ) {
        // Exponential with jitter, so that gateways do not reconnect in lockstep.
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.config.reconnect_initial)
            .with_max_delay(self.config.reconnect_max)
            .with_jitter()
            .without_max_times();
        let mut backoff = policy.build();
        loop {
            let opened = tokio::select! {
                () = stop.cancelled() => return,
                () = retire.cancelled() => return,
                opened = tokio::time::timeout(self.config.request_timeout, self.open(index, &channel)) => opened,
            };
            match opened {
                Ok(Ok(mut inbound)) => {
                    tracing::info!(stream = index, manager = %url, "attach stream connected");
                    backoff = policy.build();
                    loop {
                        let message = tokio::select! {
                            () = stop.cancelled() => return,
                            () = retire.cancelled() => {
                                tracing::info!(stream = index, manager = %url, "attach stream closed: the replica left");
                                break;
                            }
                            message = inbound.message() => message,
                        };
                        match message {
                            Ok(Some(message)) => self.on_response(index, message),
                            Ok(None) => {
                                tracing::warn!(
                                    stream = index,
                                    manager = %url,
                                    "attach stream ended by the manager"
                                );
                                break;
                            }
                            Err(status) => {
                                tracing::warn!(stream = index, manager = %url, %status, "attach stream failed");
                                break;
                            }
                        }
                    }
                    self.stream_down(index);
                    if retire.is_cancelled() {
                        return;
                    }
                }
                Ok(Err(OpenError::Status(status))) => {
                    tracing::debug!(stream = index, manager = %url, %status, "cannot open attach stream");
                }
                Ok(Err(OpenError::Catalogue(error))) => {
                    tracing::error!(stream = index, manager = %url, %error, "attach stream refused");
                }
                Err(_) => {
                    tracing::debug!(stream = index, manager = %url, "opening attach stream timed out");
                }
            }
            let pause = backoff.next().unwrap_or(self.config.reconnect_max);
            tokio::select! {
                () = stop.cancelled() => return,
                () = retire.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Checks health, refreshes the service information, opens one `Attach` stream and
    /// reads its catalogue.
    async fn open(
        &self,
        index: usize,
        channel: &Channel,
    ) -> Result<Streaming<pb::AttachResponse>, OpenError> {
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: HEALTH_SERVICE.to_string(),
            })
            .await?
            .into_inner();
        if health.status() != ServingStatus::Serving {
            return Err(Status::unavailable("workflow manager is not serving").into());
        }
        let mut client = WorkflowManagerClient::new(channel.clone());
        let info = client
            .get_service_info(pb::GetServiceInfoRequest {})
            .await?
            .into_inner();
        *self.info.write().unwrap_or_else(PoisonError::into_inner) = Some(ServiceInfo {
            vendor: info.vendor,
            version: info.version,
        });
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request.metadata_mut().insert(
            wfm_proto::ATTACH_WIRE_HEADER,
            wfm_proto::ATTACH_WIRE_VERSION.into(),
        );
        let mut inbound = client.attach(request).await?.into_inner();
        let catalogue = match inbound.message().await? {
            Some(pb::AttachResponse {
                kind: Some(Kind::Catalogue(catalogue)),
                ..
            }) => Catalogue::from_wire(catalogue)?,
            _ => return Err(CatalogueError::Missing.into()),
        };
        self.stream_up(
            index,
            Stream {
                commands: tx,
                catalogue: Arc::new(catalogue),
            },
        );
        Ok(inbound)
    }

    fn stream_up(&self, index: usize, stream: Stream) {
        let first = {
            let mut table = self.table();
            table.slots[index].stream = Some(stream);
            let before = self.connected.fetch_add(1, Ordering::SeqCst);
            self.config.stats.upstream_streams.set(before as i64 + 1);
            before == 0
        };
        if first {
            tracing::info!("workflow manager available");
            self.broadcast();
        }
        // Also for the binds parked until this endpoint connects.
        self.rebind_wake.notify_one();
    }

    fn stream_down(&self, index: usize) {
        let now = Instant::now();
        let last = {
            let mut table = self.table();
            let last = table.slots[index].stream.take().is_some()
                && self.connected.fetch_sub(1, Ordering::SeqCst) == 1;
            let connected = self.connected.load(Ordering::SeqCst);
            self.config.stats.upstream_streams.set(connected as i64);
            // The manager releases a lost stream's bindings itself.
            table.unsent_unbinds.retain(|(stream, _)| *stream != index);
            self.lose_commands(&mut table, index);
            let ids: Vec<u64> = table
                .routes
                .iter()
                .filter(|(_, r)| r.stream == Some(index))
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.lose(&mut table, id, now, now, GatewayError::ServiceUnavailable);
            }
            last
        };
        if last {
            tracing::warn!("workflow manager unavailable");
            self.broadcast();
        }
        self.rebind_wake.notify_one();
    }
}

/// Why an `Attach` stream could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// A call failed.
    #[error(transparent)]
    Status(#[from] Status),
    /// The manager's catalogue is missing or unusable.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}
