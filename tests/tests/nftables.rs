//! The nftables adapter against a real ruleset in private network namespaces: the conformance
//! kit, traffic really dropped and flowing again, batching, and the whole loop over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::Path, sync::Arc, time::Duration};

use parapet_actions::{
    Action, BoxFuture, DynAdapter,
    config::AdapterConfig,
    conformance::{self, Subject},
    nftables::{Nftables, NftablesConfig},
};
use parapet_model::{IntentId, Step};
use parapet_tests::{
    Parapet, block, hours,
    netns::{GATEWAY, GATEWAY_MGMT, Link, MANAGEMENT, Netns, PEER, nftables_missing},
    step, v1 as pb,
};

fn config(ns: &Netns) -> NftablesConfig {
    let mut c = NftablesConfig::named("gw");
    c.netns = Some(ns.name.clone());
    c.management = vec![MANAGEMENT.parse().unwrap()];
    c
}

fn skip() -> bool {
    match nftables_missing() {
        None => false,
        Some(why) => {
            eprintln!("skipped: this kernel has no nftables: {why}");
            true
        }
    }
}

fn model_step(kind: &str, target_kind: &str, id: &str, ip: Option<&str>) -> Step {
    let attrs: Vec<(&str, &str)> = ip.map(|ip| ("ip", ip)).into_iter().collect();
    conformance::step(kind, target_kind, id, &attrs)
}

fn has(elements: &[serde_json::Value], addr: &str) -> bool {
    elements
        .iter()
        .any(|e| e == addr || e["elem"]["val"] == addr)
}

struct NftSubject {
    ns: Netns,
    state: tempfile::TempDir,
}

impl Subject for NftSubject {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>> {
        Box::pin(async {
            let nft = Nftables::open(config(&self.ns), self.state.path())
                .await
                .unwrap();
            Arc::new(nft) as Arc<dyn DynAdapter>
        })
    }

    fn step(&self, n: u32) -> Step {
        model_step("block_ip", "ip", &format!("198.51.100.{n}"), None)
    }

    fn in_force(&self, n: u32) -> BoxFuture<'_, bool> {
        let elements = self.ns.elements("parapet", "block4");
        Box::pin(async move { has(&elements, &format!("198.51.100.{n}")) })
    }
}

#[tokio::test]
async fn the_nftables_adapter_passes_the_conformance_kit() {
    if skip() {
        return;
    }
    let subject = NftSubject {
        ns: Link::create().gateway,
        state: tempfile::tempdir().unwrap(),
    };
    conformance::run(&subject).await;

    let adapter = subject.open().await;
    let broad = model_step("block_ip", "ip", "10.0.0.0/8", None);
    let message = conformance::permanent(adapter.as_ref(), &broad).await;
    assert!(message.contains("broader than /16"), "{message}");

    // A gateway that has gone away: nft cannot enter the namespace.
    let mut gone = config(&subject.ns);
    gone.netns = Some("parapet-no-such-namespace".into());
    let err = Nftables::open(gone, subject.state.path())
        .await
        .err()
        .unwrap();
    assert!(
        err.message.contains("cannot install table `parapet`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_block_drops_the_peers_traffic_until_rollback_and_leaves_other_tables_alone() {
    if skip() {
        return;
    }
    let link = Link::create();
    let other = "add table inet theirs\nadd set inet theirs keep { type ipv4_addr; }\nadd element inet theirs keep { 192.0.2.1 }\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), other).unwrap();
    let out = link
        .gateway
        .exec(&["nft", "-f", file.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        link.peer.pings(GATEWAY),
        "the link does not carry traffic to begin with"
    );

    let state = tempfile::tempdir().unwrap();
    let nft = Nftables::open(config(&link.gateway), state.path())
        .await
        .unwrap();
    let target = model_step("block_ip", "ip", PEER, None);
    let action = Action {
        intent_id: IntentId::generate(),
        step_index: 0,
        step: &target,
        ttl: Some(Duration::from_secs(4 * 3600)),
    };
    let handle = DynAdapter::execute(&nft, action).await.unwrap();
    let elements = link.gateway.elements("parapet", "block4");
    let elem = elements.iter().find(|e| e["elem"]["val"] == PEER).unwrap();
    assert_eq!(
        elem["elem"]["timeout"],
        4 * 3600,
        "the kernel timeout is the TTL"
    );
    assert!(
        !link.peer.pings(GATEWAY),
        "a blocked peer still reaches the gateway"
    );

    DynAdapter::rollback(&nft, &handle).await.unwrap();
    assert!(link.gateway.elements("parapet", "block4").is_empty());
    assert!(
        link.peer.pings(GATEWAY),
        "traffic does not flow again after rollback"
    );

    let tables = link.gateway.tables();
    assert!(tables.contains(&"theirs".to_owned()), "{tables:?}");
    assert!(has(&link.gateway.elements("theirs", "keep"), "192.0.2.1"));
}

#[tokio::test]
async fn an_isolated_host_reaches_only_the_management_network() {
    if skip() {
        return;
    }
    let link = Link::create();
    let state = tempfile::tempdir().unwrap();
    let nft = Nftables::open(config(&link.gateway), state.path())
        .await
        .unwrap();
    let host = model_step("isolate_host", "host", "laptop-7", Some(PEER));
    let action = Action {
        intent_id: IntentId::generate(),
        step_index: 0,
        step: &host,
        ttl: None,
    };
    let handle = DynAdapter::execute(&nft, action).await.unwrap();
    assert!(has(&link.gateway.elements("parapet", "isolate4"), PEER));
    assert!(
        !link.peer.pings(GATEWAY),
        "an isolated host reaches a production address"
    );
    assert!(
        link.peer.pings(GATEWAY_MGMT),
        "an isolated host cannot reach management"
    );

    DynAdapter::rollback(&nft, &handle).await.unwrap();
    assert!(
        link.peer.pings(GATEWAY),
        "the host is still cut off after rollback"
    );
}

#[tokio::test]
async fn a_burst_of_blocks_shares_transactions_and_a_longer_holder_keeps_the_later_expiry() {
    if skip() {
        return;
    }
    let ns = Link::create().gateway;
    let state = tempfile::tempdir().unwrap();
    let nft = Nftables::open(config(&ns), state.path()).await.unwrap();
    let steps: Vec<Step> = (0..1000u32)
        .map(|i| {
            model_step(
                "block_ip",
                "ip",
                &format!("203.0.{}.{}", i / 250, i % 250),
                None,
            )
        })
        .collect();
    let calls = steps.iter().map(|s| {
        let action = Action {
            intent_id: IntentId::generate(),
            step_index: 0,
            step: s,
            ttl: Some(Duration::from_secs(600)),
        };
        DynAdapter::execute(&nft, action)
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(ns.elements("parapet", "block4").len(), 1000);
    let stats = nft.stats();
    assert_eq!(stats.changes, 1000);
    assert!(
        stats.transactions <= 50,
        "1,000 blocks took {} nft transactions",
        stats.transactions
    );

    // A second intent on 203.0.0.0 for longer: the element now lasts as long as the longer.
    let again = &steps[0];
    let action = Action {
        intent_id: IntentId::generate(),
        step_index: 0,
        step: again,
        ttl: Some(Duration::from_secs(7200)),
    };
    DynAdapter::execute(&nft, action).await.unwrap();
    let elements = ns.elements("parapet", "block4");
    let elem = elements
        .iter()
        .find(|e| e["elem"]["val"] == "203.0.0.0")
        .unwrap();
    assert_eq!(elem["elem"]["timeout"], 7200);
}

#[tokio::test]
async fn an_address_inside_a_blocked_range_is_held_on_its_own() {
    if skip() {
        return;
    }
    let ns = Link::create().gateway;
    let state = tempfile::tempdir().unwrap();
    let nft = Nftables::open(config(&ns), state.path()).await.unwrap();
    let range = model_step("block_ip", "ip", "203.0.113.0/24", None);
    let one = model_step("block_ip", "ip", "203.0.113.9", None);
    let range = DynAdapter::execute(&nft, conformance::action(&range))
        .await
        .unwrap();
    DynAdapter::execute(&nft, conformance::action(&one))
        .await
        .unwrap();
    let nets = ns.elements("parapet", "block4net");
    assert_eq!(nets[0]["prefix"]["addr"], "203.0.113.0", "{nets:?}");
    DynAdapter::rollback(&nft, &range).await.unwrap();
    assert!(ns.elements("parapet", "block4net").is_empty());
    assert!(has(&ns.elements("parapet", "block4"), "203.0.113.9"));
}

const POLICY: &str = r#"
[[detections]]
id = "edr.c2_beacon"
min_severity = "high"
min_confidence = 0.8

[detections.actions]
block_ip = "auto"
isolate_host = "auto"

[routes]
block_ip = "gw"
isolate_host = "gw"
"#;

#[tokio::test]
async fn the_response_loop_blocks_in_the_kernel_over_grpc_and_restarts_keep_it() {
    if skip() {
        return;
    }
    let link = Link::create();
    let adapters = vec![AdapterConfig::Nftables(config(&link.gateway))];
    let parapet = Parapet::start_with_adapters(POLICY, adapters)
        .await
        .unwrap();
    let mut req = block("k1", PEER);
    req.ttl = Some(hours(1));
    let resp = parapet.submit(req.clone()).await.unwrap();
    let id = resp.intent.unwrap().intent_id;
    let intent = parapet.get(&id).await;
    assert_eq!(intent.state, pb::IntentState::Active as i32);
    assert_eq!(
        intent.step_status[0].adapter, "gw",
        "the instance that acted is shown"
    );
    assert!(!link.peer.pings(GATEWAY));
    let timeout = |link: &Link| {
        let elements = link.gateway.elements("parapet", "block4");
        elements.iter().find(|e| e["elem"]["val"] == PEER).unwrap()["elem"]["timeout"].clone()
    };
    assert_eq!(timeout(&link), 3600);
    // The detection fires again with a longer TTL: the kernel keeps the block as long.
    req.ttl = Some(hours(4));
    parapet.submit(req).await.unwrap();
    assert_eq!(timeout(&link), 4 * 3600);
    // The EDL is not involved: the route sent the block to the gateway alone.
    assert_eq!(parapet.edl("block").await, "");

    // A restart (which reinstalls the table) keeps the block; a rollback lifts it.
    let parapet = parapet.stop().await.start().await;
    assert!(has(&link.gateway.elements("parapet", "block4"), PEER));
    let rolled = parapet.rollback(&id, "false positive").await;
    assert_eq!(rolled.state, pb::IntentState::RolledBack as i32);
    assert!(link.peer.pings(GATEWAY));

    let isolate = pb::SubmitIntentRequest {
        steps: vec![step("isolate_host", "host", "laptop-7", &[("ip", PEER)])],
        ..block("k2", PEER)
    };
    let resp = parapet.submit(isolate).await.unwrap();
    assert_eq!(resp.intent.unwrap().state, pb::IntentState::Active as i32);
    assert!(!link.peer.pings(GATEWAY));
    assert!(link.peer.pings(GATEWAY_MGMT));
}

#[tokio::test]
async fn an_nft_that_stops_answering_fails_the_step_within_the_timeout() {
    let mut c = NftablesConfig::named("gw");
    c.nft = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nft-hangs-after-setup.sh");
    c.timeout = Duration::from_secs(1);
    let state = tempfile::tempdir().unwrap();
    let nft = Nftables::open(c.clone(), state.path()).await.unwrap();
    let target = model_step("block_ip", "ip", "198.51.100.1", None);
    let message = conformance::bounded(&nft, &target, c.timeout).await;
    assert!(
        message.contains("nft did not answer within 1s"),
        "{message}"
    );
}

#[tokio::test]
async fn a_misconfigured_nftables_adapter_stops_the_start_with_its_name() {
    let mut c = NftablesConfig::named("gw");
    c.nft = Path::new("/nonexistent/nft").into();
    let err = Parapet::start_with_adapters(POLICY, vec![AdapterConfig::Nftables(c)])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("adapter `gw`"), "{err}");
    assert!(err.contains("/nonexistent/nft"), "{err}");

    let mut c = NftablesConfig::named("gw");
    c.table = "bad table".into();
    let err = Parapet::start_with_adapters(POLICY, vec![AdapterConfig::Nftables(c)])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("table `bad table` must be"), "{err}");
}
