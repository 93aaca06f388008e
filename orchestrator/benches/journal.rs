//! The auditor's journal at scale: a journal of a million entries on disk (segment log and
//! sled, as `serve` keeps it), then the first page of queries by target, detection, time and
//! source, a full verification of the hash chain, and reopening it.
//!
//! `cargo bench -p parapet-orchestrator --bench journal` (set `ENTRIES` for another size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use parapet_actions::RollbackHandle;
use parapet_model::{
    Confidence, Decision, Detection, IntentId, IntentRequest, Outcome, Severity, Step, Target,
};
use parapet_orchestrator::{
    clock::SystemClock,
    filter::IntentFilter,
    journal::{Journal, Query, kv::SledKv, log::FileLog, verify},
    lifecycle::IntentEvent,
    store::State as _,
};
use parapet_policy::Seen;

const TARGETS: usize = 10_000;
const DETECTIONS: usize = 20;

fn address(k: usize) -> String {
    let k = k % TARGETS;
    format!("10.{}.{}.{}", k / 65536, k / 256 % 256, k % 256)
}

fn events(k: usize) -> (IntentId, Vec<IntentEvent>, Vec<IntentEvent>) {
    let step = Step::new(
        "block_ip".parse().unwrap(),
        Target::new(
            "ip".into(),
            address(k),
            BTreeMap::from([("site".into(), format!("site-{}", k % 7))]),
        )
        .unwrap(),
        BTreeMap::new(),
    )
    .unwrap();
    let detection = Detection::new(
        format!("rule.{}", k % DETECTIONS),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        "beacon".into(),
    )
    .unwrap();
    let id = IntentId::generate();
    let intent = IntentRequest::new(
        format!("key-{k}"),
        format!("source-{}", k % 3),
        detection,
        vec![step],
        Some(Duration::from_secs(3600)),
        "bench".into(),
    )
    .unwrap()
    .into_intent(id, SystemTime::now());
    let decision = Decision {
        outcome: Outcome::Execute,
        reasons: vec![],
        policy_digest: "sha256:bench".into(),
        retry_after: None,
    };
    let first = vec![
        IntentEvent::Received { intent },
        IntentEvent::Decided {
            decision,
            seen: Box::new(Seen::nothing(SystemTime::now())),
        },
    ];
    let then = vec![
        IntentEvent::StepStarted { step: 0 },
        IntentEvent::StepSucceeded {
            step: 0,
            handle: RollbackHandle {
                adapter: "edl".into(),
                data: r#"{"list":"block","entry":"10.0.0.1/32"}"#.into(),
            },
        },
        IntentEvent::Activated { expires_at: None },
    ];
    (id, first, then)
}

fn open(dir: &std::path::Path) -> Journal {
    let log = FileLog::open(&dir.join("journal")).unwrap();
    let kv = SledKv::open(&dir.join("index")).unwrap();
    Journal::open(Box::new(log), Arc::new(kv), Arc::new(SystemClock)).unwrap()
}

fn close(journal: Journal) {
    let writer = journal.take_writer();
    drop(journal);
    writer.unwrap().join().unwrap();
}

fn time_queries(journal: &Journal, name: &str, runs: usize, q: impl Fn(usize) -> Query) {
    let index = journal.index();
    let mut took = Vec::with_capacity(runs);
    let mut rows = 0;
    for n in 0..runs {
        let q = q(n);
        let start = Instant::now();
        rows = index.query(&q).unwrap().len();
        took.push(start.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "first page by {name:<10} {:>8.3} ms median, {:>8.3} ms p99 ({rows} entries)",
        ms(took[took.len() / 2]),
        ms(took[took.len() * 99 / 100])
    );
}

fn main() {
    let entries: usize = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let intents = entries / 5;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let journal = open(dir.path());
    let start = Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..64 {
            let journal = journal.clone();
            tasks.spawn(async move {
                for k in (worker..intents).step_by(64) {
                    let (id, first, then) = events(k);
                    journal.append(id, "bench", first).await.unwrap();
                    journal.append(id, "parapet", then).await.unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    });
    let built = start.elapsed();
    let total = journal.index().applied_seq().unwrap();
    println!(
        "built {total} entries ({intents} intents) in {:.1} s: {:.0} entries/s from 64 writers",
        built.as_secs_f64(),
        total as f64 / built.as_secs_f64()
    );
    close(journal);

    // what start-up's check of every record costs on its own (the files are in the page
    // cache, as on a restart; a cold disk adds its read time)
    let start = Instant::now();
    drop(FileLog::open(&dir.path().join("journal")).unwrap());
    let log_bytes = size(&dir.path().join("journal"));
    println!(
        "log checked in {:.3} s ({:.0} MB of segments)",
        start.elapsed().as_secs_f64(),
        log_bytes as f64 / 1e6
    );
    let start = Instant::now();
    let journal = open(dir.path());
    println!("reopened in {:.3} s", start.elapsed().as_secs_f64());

    let page = 100;
    time_queries(&journal, "target", 200, |n| Query {
        intents: IntentFilter {
            target: Some(("ip".into(), address(n * 7919))),
            ..IntentFilter::default()
        },
        limit: page,
        ..Query::default()
    });
    time_queries(&journal, "detection", 200, |n| Query {
        intents: IntentFilter {
            detection: Some(format!("rule.{}", n % DETECTIONS)),
            ..IntentFilter::default()
        },
        limit: page,
        ..Query::default()
    });
    let last = journal.index().entry(total).unwrap().unwrap().time;
    time_queries(&journal, "time", 200, |_| Query {
        since: Some(last - Duration::from_millis(100)),
        limit: page,
        ..Query::default()
    });
    time_queries(&journal, "source", 50, |n| Query {
        intents: IntentFilter {
            source: Some(format!("source-{}", n % 3)),
            ..IntentFilter::default()
        },
        limit: page,
        ..Query::default()
    });
    time_queries(&journal, "det+event", 50, |n| Query {
        intents: IntentFilter {
            detection: Some(format!("rule.{}", n % DETECTIONS)),
            ..IntentFilter::default()
        },
        events: vec!["activated".into()],
        limit: page,
        ..Query::default()
    });

    let start = Instant::now();
    let report = verify::verify(journal.reader().as_ref(), Some(journal.index()), &[]).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    println!(
        "verified the chain of {} entries ({} checkpoints) in {:.2} s",
        report.entries,
        report.checkpoints,
        start.elapsed().as_secs_f64()
    );
    println!("on disk: {:.0} MB", size(dir.path()) as f64 / 1e6);
    close(journal);
}

fn size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
