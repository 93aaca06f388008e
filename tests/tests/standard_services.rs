//! Standard gRPC health and reflection, so grpcurl and any grpc client can find their way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_tests::Parapet;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn health_reports_each_service_serving() {
    let p = Parapet::start().await;
    let mut health = HealthClient::new(p.channel.clone());
    for service in [
        "",
        "parapet.v1.Intents",
        "parapet.v1.Rollbacks",
        "parapet.v1.Journal",
    ] {
        let req = HealthCheckRequest {
            service: service.into(),
        };
        let status = health.check(req).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
}

#[tokio::test]
async fn reflection_lists_the_api() {
    let p = Parapet::start().await;
    let mut client = ServerReflectionClient::new(p.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "parapet.v1.Intents",
        "parapet.v1.Rollbacks",
        "parapet.v1.Journal",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
}
