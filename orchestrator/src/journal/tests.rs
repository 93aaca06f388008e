use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use super::fixtures::*;
use super::{
    kv::MemKv,
    log::{FileLog, MemLog},
    *,
};
use crate::lifecycle::{IntentEvent, State};

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

    let start = IntentEvent::RollbackStarted {
        cause: crate::lifecycle::RollbackCause::Operator,
        reason: "fp".into(),
    };
    let failed = IntentEvent::RollbackFailed {
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
    let events = vec![
        IntentEvent::StepRolledBack { step: 0 },
        IntentEvent::RolledBack,
    ];
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

#[test]
fn every_table_has_a_prefix_of_its_own() {
    use super::index::key::{self, TABLES};
    for (i, a) in TABLES.iter().enumerate() {
        for b in &TABLES[i + 1..] {
            let (a, b) = (a.prefix(), b.prefix());
            assert!(!a.starts_with(b) && !b.starts_with(a), "{a:?} and {b:?}");
        }
        // the retired `t` and `d` stay unused
        assert!(![&b"t"[..], b"d"].contains(&a.prefix()), "{a:?}");
    }
    for meta in [key::APPLIED, key::HEAD, key::LAYOUT, key::TALLY] {
        assert!(meta.starts_with(key::Table::Meta.prefix()));
    }
}
