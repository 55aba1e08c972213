//! Server reflection, both versions, through real reflection clients: v1 for current
//! grpcurl, v1alpha for older grpcurl builds and Python's grpcio-reflection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Asks the reflection service of `version` at `endpoint` for its services and for the
/// file defining `wfm.v1.WorkflowManager`; returns the service names and the file's size.
/// A macro because each version is its own set of generated types.
macro_rules! reflect {
    ($version:ident, $endpoint:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let channel = tonic::transport::Endpoint::from_shared($endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("wfm.v1.WorkflowManager".into()),
        ]
        .map(|request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        });
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let services = match responses.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("expected the service list, got {other:?}"),
        };
        let file = match responses.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                files.file_descriptor_proto.concat().len()
            }
            other => panic!("expected a file descriptor, got {other:?}"),
        };
        (services, file)
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_both_list_the_services_and_serve_their_files() {
    let manager = Manager::start().await;
    let endpoint = format!("http://{}", manager.addr);
    for (services, file) in [
        reflect!(v1, endpoint.clone()),
        reflect!(v1alpha, endpoint.clone()),
    ] {
        for service in ["wfm.v1.WorkflowManager", "grpc.health.v1.Health"] {
            assert!(services.iter().any(|s| s == service), "{services:?}");
        }
        assert!(file > 0, "an empty descriptor for wfm.v1.WorkflowManager");
    }
    manager.shutdown.cancel();
    manager.task.await.unwrap().unwrap();
}
