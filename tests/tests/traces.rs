//! One trace per intent: Submit, the decision, each adapter call and the rollback share the
//! caller's trace (W3C `traceparent`), with the intent's id, detection and outcome. Spans are
//! caught by the OpenTelemetry SDK's in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use parapet_tests::{Parapet, block};
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

// Current-thread: the server, its tasks and the client run where the subscriber is set.
#[tokio::test]
async fn an_intent_is_one_trace_from_submit_to_rollback() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let p = Parapet::start().await;
    let mut req = tonic::Request::new(block("traced", "198.51.100.44"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let submitted = p.intents().submit(req).await.unwrap().into_inner();
    let id = submitted.intent_id.clone();
    assert_eq!(submitted.intent.unwrap().state, 5, "active");
    p.rollback(&id, "done").await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap();
    let ours: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == TRACE)
        .collect();
    let names: Vec<&str> = ours.iter().map(|s| s.name.as_ref()).collect();
    for expected in [
        "intent.submit",
        "intent.decide",
        "intent.execute",
        "adapter.execute",
        "intent.rollback",
        "adapter.rollback",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let submit = ours.iter().find(|s| s.name == "intent.submit").unwrap();
    assert_eq!(attribute(submit, "intent_id").as_deref(), Some(id.as_str()));
    assert_eq!(
        attribute(submit, "detection").as_deref(),
        Some("edr.c2_beacon")
    );
    assert_eq!(attribute(submit, "outcome").as_deref(), Some("execute"));
    let call = ours.iter().find(|s| s.name == "adapter.execute").unwrap();
    assert_eq!(attribute(call, "adapter").as_deref(), Some("edl"));
    assert_eq!(attribute(call, "result").as_deref(), Some("success"));
    let rollback = ours.iter().find(|s| s.name == "intent.rollback").unwrap();
    assert_eq!(
        attribute(rollback, "intent_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(attribute(rollback, "cause").as_deref(), Some("operator"));
    // nothing of this intent went into another trace
    assert!(
        spans
            .iter()
            .filter(|s| attribute(s, "intent_id").as_deref() == Some(id.as_str()))
            .all(|s| s.span_context.trace_id().to_string() == TRACE)
    );
}
