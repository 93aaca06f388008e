//! Retention: what goes, what must stay.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use parapet_model::Outcome;

use crate::{
    clock::{Clock, ManualClock},
    journal::{Journal, fixtures::*, kv::MemKv, log::FileLog, retention},
    lifecycle::State,
};

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
