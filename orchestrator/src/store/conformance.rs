//! The suite every [`Store`] runs: what the engine and the service rely on, asked through the
//! traits alone. `suite!` runs it against a store opener; a new store adds one line below.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use parapet_model::{IntentId, Outcome};

use super::Store;
use crate::{
    clock::{Clock, ManualClock, SharedClock},
    filter::IntentFilter,
    journal::{AppendError, Query, fixtures::*},
    lifecycle::{IntentEvent, State, SystemEvent},
};

/// An opened store, and whatever must live as long as it (a directory).
pub(crate) struct Opened {
    pub store: Arc<dyn Store>,
    _keep: Option<tempfile::TempDir>,
}

/// Opens an empty store on a clock.
pub(crate) type Open = fn(SharedClock) -> Opened;

/// The embedded store on the memory twins of the log and the index.
fn memory(clock: SharedClock) -> Opened {
    use crate::journal::{Journal, kv::MemKv, log::MemLog};
    let journal = Journal::open(
        Box::new(MemLog::default()),
        Arc::new(MemKv::default()),
        clock,
    );
    Opened {
        store: Arc::new(journal.unwrap()),
        _keep: None,
    }
}

/// The embedded store as `serve` runs it: the segment log and sled, in a directory.
fn files(clock: SharedClock) -> Opened {
    use crate::journal::{Journal, kv::SledKv, log::FileLog};
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(&dir.path().join("journal")).unwrap();
    let kv = SledKv::open(&dir.path().join("index")).unwrap();
    Opened {
        store: Arc::new(Journal::open(Box::new(log), Arc::new(kv), clock).unwrap()),
        _keep: Some(dir),
    }
}

/// Every test of the suite, for one opener.
macro_rules! suite {
    ($store:ident: $open:expr) => {
        mod $store {
            suite!(@tests $open;
                an_impossible_transition_writes_nothing,
                an_idempotency_key_is_taken_once_even_under_concurrency,
                watchers_see_each_change_with_the_record,
                system_events_are_journaled_apart_from_intents,
                every_query_filter_narrows_and_they_combine,
                the_state_holds_what_was_appended_and_no_more,
                each_entry_carries_the_hash_of_the_one_before,
                a_lease_is_one_holders_until_it_lapses_and_fences_the_last);
        }
    };
    (@tests $open:expr; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($open).await;
            }
        )*
    };
}

suite!(memory: super::memory);
suite!(files: super::files);

async fn the_state_holds_what_was_appended_and_no_more(open: Open) {
    let opened = open(clock());
    let store = opened.store.clone();
    let state = store.state();
    assert_eq!(state.applied_seq().unwrap(), 0);
    let i = intent("a");
    let first = store.append(i.id, "siem", submitted(&i)).await.unwrap();
    assert_eq!((first.first_seq, first.last_seq), (1, 2));
    assert_eq!(state.applied_seq().unwrap(), 2);
    let waiting = intent("w");
    store
        .append(
            waiting.id,
            "siem",
            decided(&waiting, Outcome::AwaitApproval),
        )
        .await
        .unwrap();
    store.append(i.id, "parapet", executed()).await.unwrap();
    let record = state.record(i.id).unwrap().unwrap();
    assert_eq!((record.state, record.last_seq), (State::Active, 7));
    assert_eq!(state.by_idempotency_key("siem", "a").unwrap(), Some(i.id));
    assert_eq!(state.by_idempotency_key("xdr", "a").unwrap(), None);
    let live: Vec<_> = state.live_records().map(|r| r.unwrap().intent.id).collect();
    assert_eq!(live.len(), 2);
    let newest: Vec<_> = state
        .records_newest_first(None)
        .map(|r| r.unwrap().intent.id)
        .collect();
    assert_eq!(newest.len(), 2);
    let waits: Vec<_> = state
        .waiting()
        .unwrap()
        .iter()
        .map(|r| r.intent.id)
        .collect();
    assert_eq!(waits, [waiting.id]);
    assert_eq!(
        state.oldest_waiting().unwrap().map(|r| r.intent.id),
        Some(waiting.id)
    );
    let tally = state.tally().unwrap();
    assert_eq!(tally.get(&(State::Active, "block_ip".into())), Some(&1));
    assert_eq!(
        tally.get(&(State::AwaitingApproval, "block_ip".into())),
        Some(&1)
    );
    let kinds: Vec<_> = state.entries(0).map(|e| e.unwrap().event.kind()).collect();
    assert_eq!(kinds.len(), 7);
    assert_eq!(state.entry(8).unwrap().map(|e| e.seq), None);
    assert_eq!(state.first_seq().unwrap(), 1);
    // ended: no longer live, still readable
    store
        .append(
            i.id,
            "alice",
            vec![
                IntentEvent::RollbackStarted {
                    cause: crate::lifecycle::RollbackCause::Operator,
                    reason: "done".into(),
                },
                IntentEvent::StepRolledBack { step: 0 },
                IntentEvent::RolledBack,
            ],
        )
        .await
        .unwrap();
    let live: Vec<_> = state.live_records().map(|r| r.unwrap().intent.id).collect();
    assert_eq!(live, [waiting.id]);
    assert_eq!(
        state.record(i.id).unwrap().unwrap().state,
        State::RolledBack
    );
}

async fn a_lease_is_one_holders_until_it_lapses_and_fences_the_last(open: Open) {
    let manual = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    let opened = open(manual.clone());
    let leases = opened.store.leases();
    let minute = Duration::from_secs(60);
    let a = leases.claim("intent x", "a", minute).unwrap();
    assert!(leases.holds(&a));
    // held: nobody else gets it; its holder renews it, with the same token
    assert_eq!(leases.claim("intent x", "b", minute), None);
    manual.advance(Duration::from_secs(30));
    let renewed = leases.claim("intent x", "a", minute).unwrap();
    assert_eq!(renewed.token, a.token);
    assert!(renewed.until > a.until);
    // other work is other work
    assert!(leases.claim("intent y", "b", minute).is_some());
    // lapsed: another holder takes it over, with a larger token, and the old lease no longer holds
    manual.advance(Duration::from_secs(61));
    assert!(!leases.holds(&renewed));
    let b = leases.claim("intent x", "b", minute).unwrap();
    assert!(b.token > renewed.token);
    assert!(leases.holds(&b) && !leases.holds(&renewed));
    // released early: free at once, and the old lease is not the holder's any more
    leases.release(&b);
    assert!(!leases.holds(&b));
    let c = leases.claim("intent x", "a", minute).unwrap();
    assert!(c.token > b.token);
    // a stale release changes nothing
    leases.release(&b);
    assert!(leases.holds(&c));
}

async fn each_entry_carries_the_hash_of_the_one_before(open: Open) {
    let opened = open(clock());
    let store = opened.store.clone();
    for key in ["a", "b", "c"] {
        let i = intent(key);
        store.append(i.id, "siem", submitted(&i)).await.unwrap();
    }
    let state = store.state();
    let entries: Vec<_> = state.entries(0).map(|e| e.unwrap()).collect();
    assert_eq!(entries[0].prev, [0; 32]);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash().unwrap());
    }
    let head = entries.last().unwrap();
    let report = store
        .verify(vec![(head.seq, head.hash().unwrap())])
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.head, (head.seq, head.hash().unwrap()));
    // a point an auditor kept that the chain does not hold is a problem
    let wrong = store.verify(vec![(head.seq, [7; 32])]).await.unwrap();
    assert!(!wrong.problems.is_empty());
}

async fn an_impossible_transition_writes_nothing(open: Open) {
    let opened = open(clock());
    let journal = opened.store.clone();
    let i = intent("a");
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    // activation before the step succeeded is refused, and so is the whole request
    let err = journal
        .append(
            i.id,
            "parapet",
            vec![
                IntentEvent::StepStarted { step: 0 },
                IntentEvent::Activated { expires_at: None },
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Invalid(_)), "{err}");
    assert_eq!(journal.state().applied_seq().unwrap(), 2);
    assert_eq!(
        journal.state().record(i.id).unwrap().unwrap().state,
        State::Decided
    );
    let unknown = journal
        .append(IntentId::generate(), "x", executed())
        .await
        .unwrap_err();
    assert!(matches!(unknown, AppendError::UnknownIntent(_)));
}

async fn an_idempotency_key_is_taken_once_even_under_concurrency(open: Open) {
    let opened = open(clock());
    let journal = opened.store.clone();
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
                    journal.state().by_idempotency_key("siem", "same").unwrap(),
                    Some(id)
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won.len(), duplicates), (1, 31));
}

async fn watchers_see_each_change_with_the_record(open: Open) {
    let opened = open(clock());
    let journal = opened.store.clone();
    let mut changes = journal.subscribe();
    let i = intent("a");
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    let first = changes.recv().await.unwrap();
    let second = changes.recv().await.unwrap();
    assert_eq!((first.entry.seq, second.entry.seq), (1, 2));
    assert_eq!(second.entry.event.kind(), "decided");
    assert_eq!(second.record.unwrap().state, State::Decided);
}

async fn system_events_are_journaled_apart_from_intents(open: Open) {
    let opened = open(clock());
    let journal = opened.store.clone();
    let engage = SystemEvent::KillSwitch {
        kind: Some("block_ip".parse().unwrap()),
        engaged: true,
        reason: "bad rule".into(),
    };
    let seq = journal
        .append_system("alice", engage.clone())
        .await
        .unwrap();
    let switches = journal.state().kill_switches().unwrap();
    assert_eq!(switches.len(), 1);
    assert_eq!(switches[0].0.as_ref().map(|k| k.as_str()), Some("block_ip"));
    assert_eq!(
        (switches[0].1.seq, switches[0].1.actor.as_str()),
        (seq, "alice")
    );

    // an intent event cannot pass as a system one, nor the other way round: the store's
    // types keep them apart, and an intent's entries hold its events alone
    let i = intent("a");
    journal.append(i.id, "siem", submitted(&i)).await.unwrap();
    let entries = journal.state().query(&Query {
        limit: usize::MAX,
        ..Query::default()
    });
    for e in entries.unwrap() {
        assert_eq!(e.intent_id.is_none(), e.event.is_system(), "{e:?}");
    }
    drop(engage);

    let release = SystemEvent::KillSwitch {
        kind: Some("block_ip".parse().unwrap()),
        engaged: false,
        reason: "fixed".into(),
    };
    journal.append_system("alice", release).await.unwrap();
    assert!(journal.state().kill_switches().unwrap().is_empty());
}

async fn every_query_filter_narrows_and_they_combine(open: Open) {
    let manual = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    let opened = open(manual.clone());
    let journal = opened.store.clone();
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
            SystemEvent::KillSwitch {
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
            .state()
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
            .state()
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
