use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime},
};

use parapet_actions::RollbackHandle;
use parapet_model::{
    Confidence, Decision, Detection, Intent, IntentRequest, Outcome, Severity, Step, Target,
};

use super::{
    kv::MemKv,
    log::{FileLog, MemLog},
    *,
};
use crate::{
    clock::{Clock, ManualClock},
    filter::IntentFilter,
    lifecycle::State,
};

fn clock() -> SharedClock {
    Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ))
}

fn intent(key: &str) -> Intent {
    let step = Step::new(
        "block_ip".parse().unwrap(),
        Target::new("ip".into(), "192.0.2.1".into(), BTreeMap::new()).unwrap(),
        BTreeMap::new(),
    )
    .unwrap();
    let det = Detection::new(
        "c2".into(),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        String::new(),
    )
    .unwrap();
    IntentRequest::new(
        key.into(),
        "siem".into(),
        det,
        vec![step],
        None,
        String::new(),
    )
    .unwrap()
    .into_intent(IntentId::generate(), SystemTime::UNIX_EPOCH)
}

fn submitted(intent: &Intent) -> Vec<Event> {
    vec![
        Event::Received {
            intent: intent.clone(),
        },
        Event::Decided {
            decision: Decision {
                outcome: Outcome::Execute,
                reasons: vec![],
                policy_digest: "sha256:0".into(),
                retry_after: None,
            },
            seen: Box::new(parapet_policy::Seen::nothing(SystemTime::UNIX_EPOCH)),
        },
    ]
}

fn executed() -> Vec<Event> {
    vec![
        Event::StepStarted { step: 0 },
        Event::StepSucceeded {
            step: 0,
            handle: RollbackHandle {
                adapter: "edl".into(),
                data: "{}".into(),
            },
        },
        Event::Activated { expires_at: None },
    ]
}

#[tokio::test]
async fn appends_are_ordered_indexed_and_readable() {
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let i = intent("a");
    let first = journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    assert_eq!((first.first_seq, first.last_seq), (1, 2));
    assert_eq!(first.record.state, State::Decided);
    let second = journal.append(i.id, "parapet", executed()).await.unwrap();
    assert_eq!((second.first_seq, second.last_seq), (3, 5));

    let index = journal.index();
    assert_eq!(index.record(i.id).unwrap().unwrap().state, State::Active);
    assert_eq!(index.entry_seqs_of(i.id).unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(index.by_idempotency_key("siem", "a").unwrap(), Some(i.id));
    assert_eq!(index.intents_by_target("ip", "192.0.2.1").unwrap(), [i.id]);
    assert_eq!(index.intents_by_detection("c2").unwrap(), [i.id]);
    let live: Vec<_> = index.live_records().map(|r| r.unwrap().intent.id).collect();
    assert_eq!(live, [i.id]);
    let entry = index.entry(1).unwrap().unwrap();
    assert_eq!(entry.actor, "siem");
    assert_eq!(entry.event.kind(), "received");
    assert_eq!(index.applied_seq().unwrap(), 5);
}

/// The index's live view, checked against its records: the tally, the waiting list, and each
/// intent under exactly one of `l` and `i`.
fn assert_live_view(index: &Index, expect: &[(State, usize)]) {
    let live: Vec<_> = index.live_records().map(Result::unwrap).collect();
    let mut recount = index::Tally::new();
    for r in &live {
        *recount.entry((r.state, "block_ip".into())).or_insert(0) += 1;
    }
    assert_eq!(index.tally().unwrap(), recount);
    let expected: index::Tally = expect
        .iter()
        .map(|(s, n)| ((*s, "block_ip".to_owned()), *n as u64))
        .collect();
    assert_eq!(recount, expected);
    let waiting: Vec<_> = index
        .waiting()
        .unwrap()
        .iter()
        .map(|r| r.intent.id)
        .collect();
    let awaiting: Vec<_> = live
        .iter()
        .filter(|r| r.state == State::AwaitingApproval)
        .map(|r| r.intent.id)
        .collect();
    assert_eq!(waiting, awaiting);
    let mut all: Vec<_> = index
        .records_newest_first(None)
        .map(|r| r.unwrap().intent.id)
        .collect();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "an intent is listed twice");
}

#[tokio::test]
async fn the_live_view_follows_every_change_also_a_retried_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(MemKv::default());
    let log = FileLog::open(dir.path()).unwrap();
    let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
    let index = journal.index();
    let (a, b) = (intent("a"), intent("b"));
    journal.append(a.id, "siem", submitted(&a)).await.unwrap();
    journal.append(b.id, "siem", submitted(&b)).await.unwrap();
    assert_live_view(index, &[(State::Decided, 2)]);
    journal.append(a.id, "parapet", executed()).await.unwrap();
    assert_live_view(index, &[(State::Decided, 1), (State::Active, 1)]);

    let start = Event::RollbackStarted {
        cause: crate::lifecycle::RollbackCause::Operator,
        reason: "fp".into(),
    };
    let failed = Event::RollbackFailed {
        error: "adapter down".into(),
    };
    let events = vec![start.clone(), failed];
    journal.append(a.id, "op", events).await.unwrap();
    assert_live_view(index, &[(State::Decided, 1)]);
    assert_eq!(
        index.record(a.id).unwrap().unwrap().state,
        State::RollbackFailed
    );
    // the operator retries: the intent is live again, and listed once
    journal.append(a.id, "op", vec![start]).await.unwrap();
    assert_live_view(index, &[(State::Decided, 1), (State::RollingBack, 1)]);
    let events = vec![Event::StepRolledBack { step: 0 }, Event::RolledBack];
    journal.append(a.id, "parapet", events).await.unwrap();
    assert_live_view(index, &[(State::Decided, 1)]);
    let listed: Vec<_> = index
        .records_newest_first(None)
        .map(|r| r.unwrap().intent.id)
        .collect();
    assert_eq!(listed, [b.id, a.id]);
    drop(journal);

    // the same view rebuilt from the log alone
    kv.clear().unwrap();
    let log = FileLog::open(dir.path()).unwrap();
    let journal = Journal::open(Box::new(log), kv, clock()).unwrap();
    assert_live_view(journal.index(), &[(State::Decided, 1)]);
}

#[tokio::test]
async fn an_impossible_transition_writes_nothing() {
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let i = intent("a");
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    // activation before the step succeeded is refused, and so is the whole request
    let err = journal
        .append(
            i.id,
            "parapet",
            vec![
                Event::StepStarted { step: 0 },
                Event::Activated { expires_at: None },
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Invalid(_)), "{err}");
    assert_eq!(journal.index().applied_seq().unwrap(), 2);
    assert_eq!(
        journal.index().record(i.id).unwrap().unwrap().state,
        State::Decided
    );
    let unknown = journal
        .append(IntentId::generate(), "x", executed())
        .await
        .unwrap_err();
    assert!(matches!(unknown, AppendError::UnknownIntent(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_taken_once_even_under_concurrency() {
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let journal = journal.clone();
        tasks.spawn(async move {
            let i = intent("same");
            journal.append(i.id, "siem", submitted(&i)).await
        });
    }
    let (mut won, mut duplicates) = (Vec::new(), 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(a) => won.push(a.record.intent.id),
            Err(AppendError::Duplicate(id)) => {
                duplicates += 1;
                assert_eq!(
                    journal.index().by_idempotency_key("siem", "same").unwrap(),
                    Some(id)
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won.len(), duplicates), (1, 31));
}

/// A log that counts its syncs and takes a while over each, as a disk does.
#[derive(Default)]
struct SlowLog {
    inner: MemLog,
    syncs: Arc<AtomicUsize>,
}

impl Log for SlowLog {
    fn append(
        &mut self,
        first_seq: u64,
        records: &[Vec<u8>],
        last_hash: log::Hash,
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), log::Failure> {
        std::thread::sleep(Duration::from_millis(2));
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.append(first_seq, records, last_hash, meanwhile)
    }

    fn replay(&self, from: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.inner.replay(from, f)
    }

    fn last(&self) -> Option<&[u8]> {
        self.inner.last()
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        self.inner.reader()
    }

    fn segments(&self) -> Vec<u64> {
        self.inner.segments()
    }

    fn compact(&mut self, anchor: log::Anchor) -> io::Result<()> {
        self.inner.compact(anchor)
    }
}

/// A log whose disk can be made full: appends then fail before anything is written.
#[derive(Default)]
struct FullLog {
    inner: MemLog,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl Log for FullLog {
    fn append(
        &mut self,
        first_seq: u64,
        records: &[Vec<u8>],
        last_hash: log::Hash,
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), log::Failure> {
        if self.full.load(Ordering::SeqCst) {
            return Err(log::Failure::NotWritten(io::Error::from(
                io::ErrorKind::StorageFull,
            )));
        }
        self.inner.append(first_seq, records, last_hash, meanwhile)
    }

    fn replay(&self, from: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.inner.replay(from, f)
    }

    fn last(&self) -> Option<&[u8]> {
        self.inner.last()
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        self.inner.reader()
    }

    fn segments(&self) -> Vec<u64> {
        self.inner.segments()
    }

    fn compact(&mut self, anchor: log::Anchor) -> io::Result<()> {
        self.inner.compact(anchor)
    }
}

#[tokio::test]
async fn an_append_the_disk_refused_is_answered_unavailable_and_the_next_one_goes_on() {
    let log = FullLog::default();
    let full = log.full.clone();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
    let a = intent("a");
    journal.append(a.id, "siem", submitted(&a)).await.unwrap();
    full.store(true, Ordering::SeqCst);
    let b = intent("b");
    let refused = journal.append(b.id, "siem", submitted(&b)).await;
    assert!(
        matches!(refused, Err(AppendError::Unavailable(ref why)) if why.contains("cannot be written")),
        "{refused:?}"
    );
    // nothing of it is anywhere: the key is free, the numbers are not used up
    assert_eq!(
        journal.index().by_idempotency_key("siem", "b").unwrap(),
        None
    );
    assert_eq!(journal.index().applied_seq().unwrap(), 2);
    full.store(false, Ordering::SeqCst);
    let appended = journal.append(b.id, "siem", submitted(&b)).await.unwrap();
    assert_eq!(appended.first_seq, 3);
    assert_eq!(journal.condition(), Condition::Writing);
    assert!(walk(&journal).ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_syncs() {
    let log = SlowLog::default();
    let syncs = log.syncs.clone();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let journal = journal.clone();
        tasks.spawn(async move {
            let i = intent(&n.to_string());
            journal
                .append(i.id, "siem", submitted(&i))
                .await
                .map(|a| a.last_seq)
        });
    }
    let mut seqs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        seqs.push(r.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).map(|n| n * 2).collect::<Vec<u64>>());
    let syncs = syncs.load(Ordering::SeqCst);
    assert!(syncs < 100, "200 appends took {syncs} syncs");
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let i = intent("a");
    {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
        journal.append(i.id, "siem", submitted(&i)).await.unwrap();
        journal.append(i.id, "parapet", executed()).await.unwrap();
    }
    // a fresh, empty index: everything comes back from the log
    let log = FileLog::open(dir.path()).unwrap();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
    let record = journal.index().record(i.id).unwrap().unwrap();
    assert_eq!(record.state, State::Active);
    assert_eq!(
        journal.index().by_idempotency_key("siem", "a").unwrap(),
        Some(i.id)
    );
    // and the sequence continues where the log ended
    let j = intent("b");
    assert_eq!(
        journal
            .append(j.id, "siem", submitted(&j))
            .await
            .unwrap()
            .first_seq,
        6
    );
}

#[tokio::test]
async fn a_page_may_start_inside_an_append() {
    // One key per append stands for all its entries in the target, detection and intent
    // indexes; a cursor or a time can point into the middle of one.
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let (i, other) = (intent("a"), intent("b"));
    journal.append(i.id, "siem", submitted(&i)).await.unwrap(); // 1, 2
    journal
        .append(other.id, "siem", submitted(&other))
        .await
        .unwrap(); // 3, 4: same target
    journal.append(i.id, "parapet", executed()).await.unwrap(); // 5, 6, 7
    let seqs = |q: Query| -> Vec<u64> {
        let entries = journal.index().query(&q).unwrap();
        entries.iter().map(|e| e.seq).collect()
    };
    for (by_target, by_detection) in [(true, false), (false, true)] {
        let q = |after_seq: u64, limit: usize| Query {
            intents: IntentFilter {
                target: by_target.then(|| ("ip".to_owned(), "192.0.2.1".to_owned())),
                detection: by_detection.then(|| "c2".to_owned()),
                ..IntentFilter::default()
            },
            after_seq,
            limit,
            ..Query::default()
        };
        assert_eq!(seqs(q(0, 100)), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(seqs(q(1, 100)), [2, 3, 4, 5, 6, 7]);
        assert_eq!(seqs(q(5, 1)), [6]);
        assert_eq!(seqs(q(6, 100)), [7]);
        assert!(seqs(q(7, 100)).is_empty());
    }
    let of_i = |after_seq| Query {
        intent: Some(i.id),
        after_seq,
        limit: 100,
        ..Query::default()
    };
    assert_eq!(seqs(of_i(0)), [1, 2, 5, 6, 7]);
    assert_eq!(seqs(of_i(1)), [2, 5, 6, 7]);
    assert_eq!(seqs(of_i(5)), [6, 7]);
    assert_eq!(journal.index().entry_seqs_of(other.id).unwrap(), [3, 4]);
}

#[tokio::test]
async fn an_index_ahead_of_the_log_is_rebuilt_from_the_log() {
    // The index is written while the log syncs: a crash can leave it holding a batch whose
    // records never reached the disk (and were never acknowledged).
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(MemKv::default());
    let (kept, lost) = (intent("kept"), intent("lost"));
    {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
        journal
            .append(kept.id, "siem", submitted(&kept))
            .await
            .unwrap();
    }
    let segment = dir.path().join(format!("{:020}.log", 1));
    let synced = std::fs::read(&segment).unwrap();
    let head = dir.path().join("head");
    let acknowledged = std::fs::read(&head).unwrap();
    {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
        journal
            .append(lost.id, "siem", submitted(&lost))
            .await
            .unwrap();
    }
    // the crash: neither the second batch's records nor the head mark after its sync are kept
    std::fs::write(&segment, &synced).unwrap();
    std::fs::write(&head, &acknowledged).unwrap();

    let log = FileLog::open(dir.path()).unwrap();
    let journal = Journal::open(Box::new(log), kv, clock()).unwrap();
    let index = journal.index();
    assert_eq!(index.applied_seq().unwrap(), 2);
    assert_eq!(
        index.record(kept.id).unwrap().unwrap().state,
        State::Decided
    );
    assert!(index.record(lost.id).unwrap().is_none());
    assert_eq!(index.by_idempotency_key("siem", "lost").unwrap(), None);
    // the key is free again and the sequence goes on from the log
    let again = intent("lost");
    let appended = journal.append(again.id, "siem", submitted(&again)).await;
    assert_eq!(appended.unwrap().first_seq, 3);
    assert!(walk(&journal).problems.is_empty());
}

#[tokio::test]
async fn a_log_cut_behind_what_the_index_saw_acknowledged_stops_the_start() {
    // Even without the head mark, the index (outside the log) knows what was acknowledged:
    // everything before the last batch it wrote.
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(MemKv::default());
    let segment = dir.path().join(format!("{:020}.log", 1));
    let mut after_first = Vec::new();
    {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
        for key in ["a", "b", "c"] {
            let i = intent(key);
            journal.append(i.id, "siem", submitted(&i)).await.unwrap();
            if after_first.is_empty() {
                after_first = std::fs::read(&segment).unwrap();
            }
        }
    }
    std::fs::write(&segment, &after_first).unwrap();
    std::fs::remove_file(dir.path().join("head")).unwrap();
    let log = FileLog::open(dir.path()).unwrap();
    let err = Journal::open(Box::new(log), kv, clock()).err().unwrap();
    assert!(
        err.to_string()
            .contains("entries 3 to 4 are missing from the log"),
        "{err}"
    );
}

#[tokio::test]
async fn an_index_in_an_earlier_layout_is_rebuilt_from_the_log() {
    // Before layouts had numbers every record sat under `i` and `l` held an empty marker.
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(MemKv::default());
    let i = intent("a");
    {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
        journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    }
    let record = kv.get(&index::key::live(i.id)).unwrap().unwrap();
    kv.write(vec![
        (index::key::LAYOUT.to_vec(), None),
        (index::key::intent(i.id), Some(record)),
        (index::key::live(i.id), Some(Vec::new())),
    ])
    .unwrap();

    let log = FileLog::open(dir.path()).unwrap();
    let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
    let index = journal.index();
    assert_eq!(index.layout().unwrap(), Some(index::LAYOUT));
    assert_eq!(index.record(i.id).unwrap().unwrap().state, State::Decided);
    let live: Vec<_> = index.live_records().map(Result::unwrap).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].intent.id, i.id);
    assert!(kv.get(&index::key::intent(i.id)).unwrap().is_none());
    assert!(walk(&journal).problems.is_empty());
}

#[tokio::test]
async fn watchers_see_each_change_with_the_record() {
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let mut changes = journal.subscribe();
    let i = intent("a");
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    let first = changes.recv().await.unwrap();
    let second = changes.recv().await.unwrap();
    assert_eq!((first.entry.seq, second.entry.seq), (1, 2));
    assert_eq!(second.entry.event.kind(), "decided");
    assert_eq!(second.record.unwrap().state, State::Decided);
}

#[tokio::test]
async fn system_events_are_journaled_apart_from_intents() {
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let engage = Event::KillSwitch {
        kind: Some("block_ip".parse().unwrap()),
        engaged: true,
        reason: "bad rule".into(),
    };
    let seq = journal
        .append_system("alice", engage.clone())
        .await
        .unwrap();
    let switches = journal.index().kill_switches().unwrap();
    assert_eq!(switches.len(), 1);
    assert_eq!(switches[0].0.as_ref().map(|k| k.as_str()), Some("block_ip"));
    assert_eq!(
        (switches[0].1.seq, switches[0].1.actor.as_str()),
        (seq, "alice")
    );

    // an intent event cannot pass as a system one, nor the other way round
    let i = intent("a");
    assert!(matches!(
        journal.append_system("x", Event::RolledBack).await,
        Err(AppendError::NotAnIntentEvent)
    ));
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    assert!(matches!(
        journal.append(i.id, "x", vec![engage]).await,
        Err(AppendError::NotAnIntentEvent)
    ));

    let release = Event::KillSwitch {
        kind: Some("block_ip".parse().unwrap()),
        engaged: false,
        reason: "fixed".into(),
    };
    journal.append_system("alice", release).await.unwrap();
    assert!(journal.index().kill_switches().unwrap().is_empty());
}

/// A journal of `n` intents (five entries each) on a log the test can tamper with.
async fn chained(n: usize) -> (Journal, Arc<parking_lot::RwLock<Vec<Vec<u8>>>>) {
    let log = MemLog::default();
    let records = log.records();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
    for k in 0..n {
        let i = intent(&k.to_string());
        journal.append(i.id, "siem", submitted(&i)).await.unwrap();
        journal.append(i.id, "parapet", executed()).await.unwrap();
    }
    (journal, records)
}

fn walk(journal: &Journal) -> verify::Report {
    verify::verify(journal.reader().as_ref(), Some(journal.index()), &[]).unwrap()
}

fn first_break(journal: &Journal) -> (u64, verify::Break) {
    let report = walk(journal);
    let p = report.problems.first().expect("a break");
    (p.seq, p.kind)
}

#[tokio::test]
async fn each_entry_carries_the_hash_of_the_one_before() {
    let (journal, records) = chained(3).await;
    let records = records.read();
    for (i, pair) in records.windows(2).enumerate() {
        let next: Entry = decode(&pair[1]).unwrap();
        assert_eq!(next.prev, hash(&pair[0]), "entry {}", i + 2);
    }
    let first: Entry = decode(&records[0]).unwrap();
    assert_eq!(first.prev, [0; 32]);
    let report = walk(&journal);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (report.entries, report.head),
        (15, (15, hash(&records[14])))
    );
}

#[tokio::test]
async fn verify_finds_a_modified_entry() {
    let (journal, records) = chained(3).await;
    {
        let mut records = records.write();
        let mut e: Entry = decode(&records[6]).unwrap();
        e.actor = "someone-else".into();
        records[6] = encode(&e).unwrap();
    }
    assert_eq!(first_break(&journal), (7, verify::Break::Modified));
}

#[tokio::test]
async fn verify_finds_a_modified_last_entry_and_a_rewritten_chain() {
    let (journal, records) = chained(2).await;
    {
        let mut records = records.write();
        let mut e: Entry = decode(&records[9]).unwrap();
        e.actor = "someone-else".into();
        records[9] = encode(&e).unwrap();
    }
    assert_eq!(first_break(&journal), (10, verify::Break::Modified));

    // an edit whose author re-links every later entry still differs from the index's copies
    let (journal, records) = chained(2).await;
    {
        let mut records = records.write();
        let mut prev = hash(&records[2]);
        for r in records.iter_mut().skip(3) {
            let mut e: Entry = decode(r).unwrap();
            if e.seq == 4 {
                e.actor = "someone-else".into();
            }
            e.prev = prev;
            *r = encode(&e).unwrap();
            prev = hash(r);
        }
    }
    let report = walk(&journal);
    assert_eq!(
        (report.problems[0].seq, report.problems[0].kind),
        (4, verify::Break::IndexDiffers)
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == verify::Break::Modified && p.seq == 10)
    );
}

#[tokio::test]
async fn verify_finds_removed_inserted_and_reordered_entries() {
    let (journal, records) = chained(3).await;
    records.write().remove(4);
    assert_eq!(first_break(&journal), (5, verify::Break::Removed));

    let (journal, records) = chained(3).await;
    records.write().truncate(13);
    assert_eq!(first_break(&journal), (14, verify::Break::Removed));

    let (journal, records) = chained(3).await;
    {
        let mut records = records.write();
        let copy = records[2].clone();
        records.insert(8, copy);
    }
    assert_eq!(first_break(&journal), (3, verify::Break::Inserted));

    let (journal, records) = chained(3).await;
    records.write().swap(5, 6);
    assert_eq!(first_break(&journal), (6, verify::Break::Reordered));
}

#[tokio::test]
async fn verify_checks_hashes_kept_by_an_auditor() {
    let (journal, records) = chained(2).await;
    let kept = walk(&journal).head;
    let fine = verify::verify(journal.reader().as_ref(), Some(journal.index()), &[kept]).unwrap();
    assert!(fine.ok());
    assert_eq!(fine.checkpoints, 1);
    let wrong = (kept.0, hash(&records.read()[0]));
    let report =
        verify::verify(journal.reader().as_ref(), Some(journal.index()), &[wrong]).unwrap();
    assert_eq!(
        (report.problems[0].seq, report.problems[0].kind),
        (kept.0, verify::Break::Modified)
    );
    // a point beyond the end: the entries an auditor saw are gone
    let beyond = (kept.0 + 3, kept.1);
    let report =
        verify::verify(journal.reader().as_ref(), Some(journal.index()), &[beyond]).unwrap();
    assert_eq!(
        (report.problems[0].seq, report.problems[0].kind),
        (kept.0 + 3, verify::Break::Removed),
        "{report:?}"
    );
}

#[tokio::test]
async fn verify_offline_reads_the_log_and_its_head_mark_alone() {
    let dir = tempfile::tempdir().unwrap();
    let online = {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
        for key in ["a", "b"] {
            let i = intent(key);
            journal.append(i.id, "siem", submitted(&i)).await.unwrap();
        }
        journal.verify(vec![]).await.unwrap()
    };
    let reader = log::read_only(dir.path());
    let offline = verify::verify(reader.as_ref(), None, &[online.head]).unwrap();
    assert!(offline.ok(), "{offline:?}");
    assert_eq!((offline.head, offline.entries), (online.head, 4));
    // an entry edited with its checksum fixed: the chain says so
    let segment = dir.path().join(format!("{:020}.log", 1));
    let mut bytes = std::fs::read(&segment).unwrap();
    let second = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let len = u32::from_le_bytes(bytes[second..second + 4].try_into().unwrap()) as usize;
    let body = second + 8..second + 8 + len;
    bytes[body.start + 12] ^= 1;
    let crc = crc32fast::hash(&bytes[body]);
    bytes[second + 4..second + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segment, &bytes).unwrap();
    let offline = verify::verify(reader.as_ref(), None, &[]).unwrap();
    assert_eq!(
        offline.problems[0].kind,
        verify::Break::Modified,
        "{offline:?}"
    );
}

#[tokio::test]
async fn the_chain_continues_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn Kv> = Arc::new(MemKv::default());
    for key in ["a", "b"] {
        let log = FileLog::open(dir.path()).unwrap();
        let journal = Journal::open(Box::new(log), kv.clone(), clock()).unwrap();
        let i = intent(key);
        journal.append(i.id, "siem", submitted(&i)).await.unwrap();
        let report = walk(&journal);
        assert!(report.ok(), "{:?}", report.problems);
        drop(journal);
    }
    let log = FileLog::open(dir.path()).unwrap();
    let journal = Journal::open(Box::new(log), kv, clock()).unwrap();
    assert_eq!(walk(&journal).entries, 4);
}

fn varied(key: &str, source: &str, rule: &str, kind: &str, ip: &str) -> Intent {
    let step = Step::new(
        kind.parse().unwrap(),
        Target::new("ip".into(), ip.into(), BTreeMap::new()).unwrap(),
        BTreeMap::new(),
    )
    .unwrap();
    let det = Detection::new(
        rule.into(),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        String::new(),
    )
    .unwrap();
    IntentRequest::new(
        key.into(),
        source.into(),
        det,
        vec![step],
        None,
        String::new(),
    )
    .unwrap()
    .into_intent(IntentId::generate(), SystemTime::UNIX_EPOCH)
}

fn decided(intent: &Intent, outcome: Outcome) -> Vec<Event> {
    let mut events = submitted(intent);
    if let Event::Decided { decision, .. } = &mut events[1] {
        decision.outcome = outcome;
    }
    events
}

#[tokio::test]
async fn every_query_filter_narrows_and_they_combine() {
    let manual = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        manual.clone(),
    )
    .unwrap();
    let a = varied("a", "siem", "c2", "block_ip", "192.0.2.1");
    let b = varied("b", "xdr", "c2", "isolate_host", "192.0.2.2");
    let c = varied("c", "xdr", "scan", "block_ip", "192.0.2.1");
    journal
        .append(a.id, "siem", decided(&a, Outcome::Execute))
        .await
        .unwrap();
    journal.append(a.id, "parapet", executed()).await.unwrap(); // 1..=5
    let t0 = manual.now();
    manual.advance(Duration::from_secs(60));
    journal
        .append(b.id, "xdr", decided(&b, Outcome::Deny))
        .await
        .unwrap(); // 6, 7
    journal
        .append_system(
            "alice",
            Event::KillSwitch {
                kind: None,
                engaged: true,
                reason: "drill".into(),
            },
        )
        .await
        .unwrap(); // 8
    let t1 = manual.now();
    manual.advance(Duration::from_secs(60));
    journal
        .append(c.id, "xdr", decided(&c, Outcome::Shadow))
        .await
        .unwrap(); // 9, 10

    let seqs = |q: Query| -> Vec<u64> {
        let q = Query {
            limit: usize::MAX,
            ..q
        };
        journal
            .index()
            .query(&q)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(Query::default()), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        seqs(Query {
            intent: Some(b.id),
            ..Query::default()
        }),
        [6, 7]
    );
    let target = Some(("ip".to_owned(), "192.0.2.1".to_owned()));
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                target: target.clone(),
                ..IntentFilter::default()
            },
            ..Query::default()
        }),
        [1, 2, 3, 4, 5, 9, 10]
    );
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                detection: Some("c2".into()),
                ..IntentFilter::default()
            },
            ..Query::default()
        }),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                source: Some("xdr".into()),
                ..IntentFilter::default()
            },
            ..Query::default()
        }),
        [6, 7, 9, 10]
    );
    assert_eq!(
        seqs(Query {
            actor: Some("alice".into()),
            ..Query::default()
        }),
        [8]
    );
    assert_eq!(
        seqs(Query {
            actor: Some("parapet".into()),
            ..Query::default()
        }),
        [3, 4, 5]
    );
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                action_kind: Some("isolate_host".into()),
                ..IntentFilter::default()
            },
            ..Query::default()
        }),
        [6, 7]
    );
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                outcome: Some(Outcome::Shadow),
                ..IntentFilter::default()
            },
            ..Query::default()
        }),
        [9, 10]
    );
    assert_eq!(
        seqs(Query {
            events: vec!["decided".into(), "kill_switch".into()],
            ..Query::default()
        }),
        [2, 7, 8, 10]
    );
    assert_eq!(
        seqs(Query {
            since: Some(t0 + Duration::from_secs(1)),
            until: Some(t1 + Duration::from_secs(1)),
            ..Query::default()
        }),
        [6, 7, 8]
    );
    // combined: an index drives, the rest filter
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                target: target.clone(),
                source: Some("xdr".into()),
                ..IntentFilter::default()
            },
            ..Query::default()
        }),
        [9, 10]
    );
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                detection: Some("c2".into()),
                outcome: Some(Outcome::Deny),
                ..IntentFilter::default()
            },
            events: vec!["decided".into()],
            ..Query::default()
        }),
        [7]
    );
    assert_eq!(
        seqs(Query {
            intents: IntentFilter {
                detection: Some("scan".into()),
                ..IntentFilter::default()
            },
            intent: Some(a.id),
            ..Query::default()
        }),
        Vec::<u64>::new()
    );

    // pages: the last seq of a page is the cursor of the next; together they are the whole
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = journal
            .index()
            .query(&Query {
                intents: IntentFilter {
                    target: target.clone(),
                    ..IntentFilter::default()
                },
                after_seq: after,
                limit: 3,
                ..Query::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        pages.push(page.iter().map(|e| e.seq).collect::<Vec<_>>());
    }
    assert_eq!(pages, [vec![1, 2, 3], vec![4, 5, 9], vec![10]]);
}

#[tokio::test]
async fn retention_by_age_removes_old_ended_intents_only() {
    let dir = tempfile::tempdir().unwrap();
    let manual = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    let log = FileLog::with_segment_bytes(dir.path(), 4096).unwrap();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), manual.clone()).unwrap();
    let denied = |k: usize| varied(&format!("d{k}"), "siem", "c2", "block_ip", "192.0.2.9");
    let mut old = Vec::new();
    for k in 0..20 {
        let i = denied(k);
        journal
            .append(i.id, "siem", decided(&i, Outcome::Deny))
            .await
            .unwrap();
        old.push(i.id);
    }
    manual.advance(Duration::from_secs(2 * 3600));
    let active = intent("active");
    journal
        .append(active.id, "siem", submitted(&active))
        .await
        .unwrap();
    journal
        .append(active.id, "parapet", executed())
        .await
        .unwrap();
    for k in 20..40 {
        let i = denied(k);
        journal
            .append(i.id, "siem", decided(&i, Outcome::Deny))
            .await
            .unwrap();
    }
    let rules = retention::Retention {
        max_age: Some(Duration::from_secs(3600)),
        max_bytes: None,
    };
    let done = journal
        .compact(rules, manual.now(), "test")
        .await
        .unwrap()
        .unwrap();
    // everything from the hour before may go, up to a segment boundary, and nothing after
    let first_active = journal.index().entry_seqs_of(active.id).unwrap()[0];
    assert!(
        done.anchor.seq < first_active && done.anchor.seq > 0,
        "{done:?}"
    );
    assert_eq!(
        done.intents as usize,
        old.iter()
            .take_while(|id| journal.index().record(**id).unwrap().is_none())
            .count()
    );
    assert!(journal.index().record(old[0]).unwrap().is_none());
    assert_eq!(
        journal.index().record(active.id).unwrap().unwrap().state,
        State::Active
    );
    let report = walk(&journal);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.anchor, done.anchor);
    // nothing older than an hour is left to remove
    assert!(
        journal
            .compact(rules, manual.now(), "test")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_appends_go_on_finds_nothing_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::with_segment_bytes(dir.path(), 4096).unwrap();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
    let writer = {
        let journal = journal.clone();
        tokio::spawn(async move {
            for k in 0..300 {
                let i = intent(&k.to_string());
                journal.append(i.id, "siem", submitted(&i)).await.unwrap();
            }
        })
    };
    let mut walks = 0;
    while !writer.is_finished() {
        let report = journal.verify(vec![]).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        walks += 1;
    }
    writer.await.unwrap();
    let report = journal.verify(vec![]).await.unwrap();
    assert!(report.ok() && report.entries == 600, "{report:?}");
    assert!(walks > 1);
}

#[tokio::test]
async fn a_record_being_written_past_the_head_is_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(
        Box::new(FileLog::open(dir.path()).unwrap()),
        Arc::new(MemKv::default()),
        clock(),
    )
    .unwrap();
    let i = intent("a");
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    // the start of a record the writer is still writing, as a reader may catch it
    let segment = dir.path().join(format!("{:020}.log", 1));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, &[200, 0, 0, 0, 1, 2]).unwrap();
    let report = journal.verify(vec![]).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 2);
}

#[tokio::test]
async fn retention_removes_nothing_from_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::with_segment_bytes(dir.path(), 4096).unwrap();
    let journal = Journal::open(Box::new(log), Arc::new(MemKv::default()), clock()).unwrap();
    for k in 0..40 {
        let i = varied(&format!("d{k}"), "siem", "c2", "block_ip", "192.0.2.9");
        journal
            .append(i.id, "siem", decided(&i, Outcome::Deny))
            .await
            .unwrap();
    }
    // the first record's source renamed, its checksum made to match
    let segment = dir.path().join(format!("{:020}.log", 1));
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let at = 8 + bytes[8..8 + len]
        .windows(4)
        .position(|w| w == b"siem")
        .unwrap();
    bytes[at] = b'x';
    let crc = crc32fast::hash(&bytes[8..8 + len]).to_le_bytes();
    bytes[4..8].copy_from_slice(&crc);
    std::fs::write(&segment, bytes).unwrap();

    let rules = retention::Retention {
        max_age: None,
        max_bytes: Some(4096),
    };
    let err = journal
        .compact(rules, SystemTime::now(), "test")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("chain is broken (entry 1 modified)"),
        "{err}"
    );
    assert!(segment.exists());
}
