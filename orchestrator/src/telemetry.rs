//! What Parapet tells about itself: OpenTelemetry metrics (also served for Prometheus at
//! `/metrics`), traces of each intent through `tracing`, and the W3C trace context carried in
//! and out.
//!
//! Counts of what happened come from the journal itself: the writer hands every committed
//! entry to [`Metrics`] (an [`Observer`]), so the counters are exact and cost nothing on the
//! request path. Durations are measured where they happen (adapter calls, journal syncs).
//! Levels (budget usage, pending approvals, kill switches) are read from the engine whenever
//! they are collected (`Engine::observe`).

use std::time::Duration;

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, MeterProvider as _},
};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::{
    journal::{Entry, Observer, Took},
    lifecycle::{Event, IntentEvent, IntentRecord, RollbackCause, Verdict},
};

/// The meter provider and the Prometheus registry it feeds.
pub struct Telemetry {
    pub provider: SdkMeterProvider,
    pub registry: prometheus::Registry,
}

impl Telemetry {
    /// A provider whose metrics are served at `/metrics`, and pushed over OTLP when an
    /// endpoint is given.
    pub fn new(otlp: Option<&str>) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()?;
        let mut builder = SdkMeterProvider::builder().with_reader(exporter);
        if let Some(endpoint) = otlp {
            use opentelemetry_otlp::WithExportConfig;
            let push = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            builder = builder.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(push)
                    .with_interval(Duration::from_secs(15))
                    .build(),
            );
        }
        Ok(Self {
            provider: builder.build(),
            registry,
        })
    }

    pub fn meter(&self) -> Meter {
        self.provider.meter("parapet")
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The instruments, and the journal observer that counts what was journaled.
#[derive(Clone)]
pub struct Metrics {
    decided: Counter<u64>,
    actions: Counter<u64>,
    undos: Counter<u64>,
    adapter_latency: Histogram<f64>,
    rollbacks: Counter<u64>,
    verdicts: Counter<u64>,
    refused_calls: Counter<u64>,
    bouncer_pulls: Counter<u64>,
    entries: Counter<u64>,
    sync_latency: Histogram<f64>,
    index_latency: Histogram<f64>,
    batch_size: Histogram<u64>,
}

impl Metrics {
    /// One call refused before it was served. Counted here, not from the journal, which
    /// records refusals only up to a rate.
    pub fn refused_call(&self, code: &str, cause: &'static str) {
        self.refused_calls.add(
            1,
            &[
                KeyValue::new("code", code.to_owned()),
                KeyValue::new("cause", cause),
            ],
        );
    }

    /// A bouncer read the decision stream.
    pub fn bouncer_pull(&self, bouncer: &str) {
        self.bouncer_pulls
            .add(1, &[KeyValue::new("bouncer", bouncer.to_owned())]);
    }

    pub fn new(meter: &Meter) -> Self {
        let latency = [
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let commit_bounds = vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
        ];
        Self {
            decided: meter
                .u64_counter("parapet_intents_decided")
                .with_description("Intents decided, by outcome and the guardrail that decided it (`none` when nothing stood against acting)")
                .build(),
            actions: meter
                .u64_counter("parapet_actions")
                .with_description("Steps executed by adapters, by adapter, action kind and result")
                .build(),
            undos: meter
                .u64_counter("parapet_action_rollbacks")
                .with_description("Steps undone by adapters, by adapter, action kind and result")
                .build(),
            adapter_latency: meter
                .f64_histogram("parapet_adapter_duration")
                .with_unit("s")
                .with_description("Adapter calls, by adapter, action kind and operation (execute, rollback)")
                .with_boundaries(latency.to_vec())
                .build(),
            rollbacks: meter
                .u64_counter("parapet_rollbacks")
                .with_description("Rollbacks started, by cause (ttl, operator, verdict, compensation)")
                .build(),
            verdicts: meter
                .u64_counter("parapet_verdicts")
                .with_description("Verdicts given, by detection, action kind and verdict (true_positive, false_positive)")
                .build(),
            refused_calls: meter
                .u64_counter("parapet_calls_refused")
                .with_description("Calls refused before they were served, by code (Unauthenticated, PermissionDenied, ResourceExhausted) and cause (auth, watch_limit, denial_quota)")
                .build(),
            bouncer_pulls: meter
                .u64_counter("parapet_bouncer_pulls")
                .with_description("Pulls of the decision stream, by CrowdSec bouncer")
                .build(),
            entries: meter
                .u64_counter("parapet_journal_entries")
                .with_description("Journal entries written")
                .build(),
            sync_latency: meter
                .f64_histogram("parapet_journal_sync_duration")
                .with_unit("s")
                .with_description("One group commit: the log write and its fdatasync, with the index written meanwhile")
                .with_boundaries(commit_bounds.clone())
                .build(),
            index_latency: meter
                .f64_histogram("parapet_journal_index_duration")
                .with_unit("s")
                .with_description("One group commit's index write, done while the log syncs")
                .with_boundaries(commit_bounds)
                .build(),
            batch_size: meter
                .u64_histogram("parapet_journal_group_commit_entries")
                .with_description("Entries written by one group commit (one fdatasync)")
                .with_boundaries(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0])
                .build(),
        }
    }

    /// An adapter call and how it ended.
    pub fn adapter_call(
        &self,
        adapter: &str,
        kind: &str,
        rollback: bool,
        took: Duration,
        ok: bool,
    ) {
        let result = if ok { "success" } else { "failure" };
        let labels = [
            KeyValue::new("adapter", adapter.to_owned()),
            KeyValue::new("kind", kind.to_owned()),
        ];
        let operation = if rollback { "rollback" } else { "execute" };
        let mut timed = labels.to_vec();
        timed.push(KeyValue::new("operation", operation));
        self.adapter_latency.record(took.as_secs_f64(), &timed);
        let mut counted = labels.to_vec();
        counted.push(KeyValue::new("result", result));
        if rollback {
            self.undos.add(1, &counted);
        } else {
            self.actions.add(1, &counted);
        }
    }
}

impl Observer for Metrics {
    fn committed(&self, entries: &[(&Entry, Option<&IntentRecord>)], took: Took) {
        self.entries.add(entries.len() as u64, &[]);
        self.sync_latency.record(took.sync.as_secs_f64(), &[]);
        self.index_latency.record(took.index.as_secs_f64(), &[]);
        self.batch_size.record(entries.len() as u64, &[]);
        for (entry, record) in entries {
            match &entry.event {
                Event::Intent(IntentEvent::Decided { decision, .. }) => {
                    let guardrail = decision
                        .reasons
                        .iter()
                        .find(|r| {
                            r.effect == decision.outcome
                                && r.effect != parapet_model::Outcome::Execute
                        })
                        .map_or("none", |r| r.guardrail.as_str());
                    self.decided.add(
                        1,
                        &[
                            KeyValue::new("outcome", decision.outcome.as_str()),
                            KeyValue::new("guardrail", guardrail.to_owned()),
                        ],
                    );
                }
                Event::Intent(IntentEvent::RollbackStarted { cause, .. }) => {
                    let cause = match cause {
                        RollbackCause::Ttl => "ttl",
                        RollbackCause::Compensation => "compensation",
                        RollbackCause::Operator => "operator",
                        RollbackCause::Verdict => "verdict",
                    };
                    self.rollbacks.add(1, &[KeyValue::new("cause", cause)]);
                }
                Event::Intent(IntentEvent::Judged { verdict, .. }) => {
                    let Some(record) = record else { continue };
                    let verdict = match verdict {
                        Verdict::TruePositive => "true_positive",
                        Verdict::FalsePositive => "false_positive",
                    };
                    for step in &record.intent.steps {
                        self.verdicts.add(
                            1,
                            &[
                                KeyValue::new("detection", record.intent.detection.rule_id.clone()),
                                KeyValue::new("kind", step.kind.to_string()),
                                KeyValue::new("verdict", verdict),
                            ],
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// The W3C trace context: read from a caller's metadata, written into an intent so that work
/// done for it later (execution, expiry, a rollback after a restart) joins the same trace.
pub mod trace {
    use std::collections::HashMap;

    use opentelemetry::{
        Context,
        propagation::{Extractor, TextMapPropagator},
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

    impl Extractor for Metadata<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|k| match k {
                    tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                    tonic::metadata::KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }

    struct Headers<'a>(&'a axum::http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    /// The caller's trace, if its HTTP headers carry a `traceparent`.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Context {
        TraceContextPropagator::new().extract(&Headers(headers))
    }

    /// The caller's trace, if its metadata carries a `traceparent`.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Context {
        TraceContextPropagator::new().extract(&Metadata(metadata))
    }

    /// The `traceparent` of a span, when traces are on.
    pub fn traceparent(span: &tracing::Span) -> Option<String> {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
        carrier.remove("traceparent")
    }

    /// Makes `span` a child of the trace a `traceparent` names.
    pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
        let Some(tp) = traceparent else { return };
        let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(cx);
    }

    /// Makes `span` a child of a context read from a caller.
    pub fn set_parent(span: &tracing::Span, cx: Context) {
        let _ = span.set_parent(cx);
    }
}
