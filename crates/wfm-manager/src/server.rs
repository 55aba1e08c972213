//! `serve`: the gRPC server with health and reflection, and its graceful shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use wfm_proto::v1::workflow_manager_server::WorkflowManagerServer;

use crate::config::ManagerConfig;
use crate::profile_watch;
use crate::registry::Registry;
use crate::service::WorkflowManagerService;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not load the contract's descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves the workflow manager on `listener` until `shutdown` is cancelled.
///
/// On shutdown, health turns to NOT_SERVING, every binder receives an unbound notice with
/// reason SHUTTING_DOWN, every stream ends, and in-flight calls complete.
pub async fn serve(
    listener: TcpListener,
    config: ManagerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let registry = Arc::new(Registry::new(config.profiles.clone()));
    let streams_stop = CancellationToken::new();
    if let Some(path) = config.profiles_path.clone() {
        tokio::spawn(profile_watch::watch(
            path,
            config.profiles_poll,
            Arc::clone(&registry),
            Arc::clone(&config.stats),
            shutdown.child_token(),
        ));
    }
    let service = WorkflowManagerService::new(Arc::clone(&registry), config, streams_stop.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WorkflowManagerServer<WorkflowManagerService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wfm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, "workflow manager listening");

    let drain = async move {
        shutdown.cancelled().await;
        tracing::info!("shutting down: unbinding clients and ending streams");
        health
            .set_not_serving::<WorkflowManagerServer<WorkflowManagerService>>()
            .await;
        registry.shutdown();
        streams_stop.cancel();
    };
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(WorkflowManagerServer::new(service))
        // Without TCP_NODELAY a response's frames wait for the client's delayed ACK: 40 ms
        // per unary call, and stream events held back the same way.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), drain)
        .await?;
    tracing::info!("workflow manager stopped");
    Ok(())
}
