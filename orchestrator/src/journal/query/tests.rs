//! Paging through a query: a page may begin inside an append. Every filter, on every store,
//! is in `store::conformance`.

use std::sync::Arc;

use crate::{
    filter::IntentFilter,
    journal::{Journal, Query, fixtures::*, kv::MemKv, log::MemLog},
    store::State as _,
};

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
