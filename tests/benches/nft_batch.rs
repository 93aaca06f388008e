//! nftables batching: N blocks through the adapter, all submitted at once as a burst of intents
//! would be, against one `nft -f` of the same N elements written by hand. Needs root (it makes
//! private network namespaces).
//!
//! `cargo bench -p parapet-tests --bench nft_batch -- [N ...]` (default 1000 10000)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use parapet_actions::{
    Action, DynAdapter,
    nftables::{Nftables, NftablesConfig},
};
use parapet_model::{IntentId, Step, Target};
use parapet_tests::netns::Link;

fn address(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)
}

fn steps(n: usize) -> Vec<Step> {
    (0..n)
        .map(|i| {
            Step::new(
                "block_ip".parse().unwrap(),
                Target::new("ip".into(), address(i), Default::default()).unwrap(),
                Default::default(),
            )
            .unwrap()
        })
        .collect()
}

async fn through_adapter(n: usize) -> (Duration, u64, Duration) {
    let ns = Link::create().gateway;
    let state = tempfile::tempdir().unwrap();
    let mut config = NftablesConfig::named("bench");
    config.netns = Some(ns.name.clone());
    config.timeout = Duration::from_secs(120);
    let nft = Nftables::open(config, state.path()).await.unwrap();
    let steps = steps(n);
    let ids: Vec<IntentId> = (0..n).map(|_| IntentId::generate()).collect();
    let start = Instant::now();
    let calls = steps.iter().zip(&ids).map(|(s, id)| {
        let action = Action {
            intent_id: *id,
            step_index: 0,
            step: s,
            ttl: Some(Duration::from_secs(3600)),
        };
        DynAdapter::execute(&nft, action)
    });
    let results = futures::future::join_all(calls).await;
    let took = start.elapsed();
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(ns.elements("parapet", "block4").len(), n);
    let stats = nft.stats();
    (took, stats.transactions, stats.busy)
}

fn by_hand(n: usize) -> Duration {
    let ns = Link::create().gateway;
    let table =
        "add table inet hand\nadd set inet hand block4 { type ipv4_addr; flags timeout; }\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), table).unwrap();
    assert!(
        ns.exec(&["nft", "-f", file.path().to_str().unwrap()])
            .status
            .success()
    );
    let elements: Vec<String> = (0..n)
        .map(|i| format!("{} timeout 3600s", address(i)))
        .collect();
    let text = format!(
        "add element inet hand block4 {{ {} }}\n",
        elements.join(", ")
    );
    std::fs::write(file.path(), text).unwrap();
    let start = Instant::now();
    let out = ns.exec(&["nft", "-f", file.path().to_str().unwrap()]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    println!(
        "| blocks | adapter (durable holds + nft) | of it in nft transactions | transactions | one `nft -f` by hand | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(through_adapter(n).await);
        }
        runs.sort();
        let (adapter, transactions, busy) = runs[1];
        let mut hand: Vec<Duration> = (0..3).map(|_| by_hand(n)).collect();
        hand.sort();
        let hand = hand[1];
        println!(
            "| {n} | {:.0} ms | {:.0} ms | {transactions} | {:.0} ms | {:.1}× |",
            adapter.as_secs_f64() * 1e3,
            busy.as_secs_f64() * 1e3,
            hand.as_secs_f64() * 1e3,
            adapter.as_secs_f64() / hand.as_secs_f64()
        );
    }
}
