//! The hash chain against each kind of tampering, online and offline.

use std::sync::Arc;

use super::*;
use crate::journal::{
    Journal, encode,
    fixtures::*,
    kv::{Kv, MemKv},
    log::{self, FileLog, MemLog},
    verify,
};

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
