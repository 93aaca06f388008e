use parapet_model::IntentId;

use super::*;
use crate::{DynAdapter, conformance::step};

fn edl(dir: &std::path::Path) -> Edl {
    Edl::open(EdlConfig::with_default_lists(dir.to_path_buf())).unwrap()
}

fn action(intent_id: IntentId, step: &Step) -> Action<'_> {
    Action {
        intent_id,
        step_index: 0,
        step,
        ttl: None,
    }
}

#[tokio::test]
async fn block_lists_the_address_and_rollback_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let edl = edl(dir.path());
    let s = step("block_ip", "ip", "198.51.100.7", &[]);
    let handle = DynAdapter::execute(&edl, action(IntentId::generate(), &s))
        .await
        .unwrap();
    assert_eq!(handle.adapter, "edl");
    assert_eq!(edl.render("block").unwrap(), "198.51.100.7\n");
    assert_eq!(edl.render("quarantine").unwrap(), "");
    assert_eq!(edl.render("nope"), None);

    DynAdapter::rollback(&edl, &handle).await.unwrap();
    assert_eq!(edl.render("block").unwrap(), "");
    // undoing what is already undone succeeds without effect
    DynAdapter::rollback(&edl, &handle).await.unwrap();
}

#[tokio::test]
async fn an_address_stays_listed_until_its_last_holder_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let edl = edl(dir.path());
    let s = step("block_ip", "ip", "2001:db8::/64", &[]);
    let first = Adapter::execute(&edl, action(IntentId::generate(), &s))
        .await
        .unwrap();
    let second = Adapter::execute(&edl, action(IntentId::generate(), &s))
        .await
        .unwrap();
    assert_eq!(edl.render("block").unwrap(), "2001:db8::/64\n");
    Adapter::rollback(&edl, first).await.unwrap();
    assert_eq!(edl.render("block").unwrap(), "2001:db8::/64\n");
    Adapter::rollback(&edl, second).await.unwrap();
    assert_eq!(edl.render("block").unwrap(), "");
}

#[tokio::test]
async fn executing_the_same_step_twice_acts_once() {
    let dir = tempfile::tempdir().unwrap();
    let edl = edl(dir.path());
    let s = step("block_ip", "ip", "192.0.2.1", &[]);
    let id = IntentId::generate();
    let a = Adapter::execute(&edl, action(id, &s)).await.unwrap();
    let b = Adapter::execute(&edl, action(id, &s)).await.unwrap();
    assert_eq!(a, b);
    Adapter::rollback(&edl, a).await.unwrap();
    assert_eq!(edl.render("block").unwrap(), "");
}

#[tokio::test]
async fn lists_and_handles_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = step("isolate_host", "host", "web-1", &[("ip", "192.0.2.10")]);
    let handle = {
        let before = edl(dir.path());
        DynAdapter::execute(&before, action(IntentId::generate(), &s))
            .await
            .unwrap()
    };
    let handle: crate::RollbackHandle =
        serde_json::from_str(&serde_json::to_string(&handle).unwrap()).unwrap();
    let after = edl(dir.path());
    assert_eq!(after.render("quarantine").unwrap(), "192.0.2.10\n");
    DynAdapter::rollback(&after, &handle).await.unwrap();
    assert_eq!(edl(dir.path()).render("quarantine").unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_blocks_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let shared = edl(dir.path());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let adapter = shared.clone();
        tasks.spawn(async move {
            let s = step(
                "block_ip",
                "ip",
                &format!("10.1.{}.{}", i / 250, i % 250),
                &[],
            );
            Adapter::execute(&adapter, action(IntentId::generate(), &s)).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    // a fresh open reads only what reached the disk
    assert_eq!(
        edl(dir.path()).render("block").unwrap().lines().count(),
        200
    );
}

#[test]
fn malformed_or_misplaced_addresses_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let edl = edl(dir.path());
    let err = |s: Step| Adapter::validate(&edl, &s).unwrap_err();
    // `Target::new` refuses these already; the adapter does not rely on it
    let raw = |kind: &str, target_kind: &str, id: &str, ip: Option<&str>| Step {
        kind: kind.parse().unwrap(),
        target: parapet_model::Target {
            kind: target_kind.into(),
            id: id.into(),
            attributes: ip
                .map(|ip| [("ip".to_owned(), ip.to_owned())].into())
                .unwrap_or_default(),
        },
        params: Default::default(),
    };
    let e = err(raw("block_ip", "ip", "300.1.2.3", None));
    assert_eq!(e.field, "target.id");
    assert_eq!(e.message, "`300.1.2.3` is not an IP address or CIDR block");
    let e = err(raw("block_ip", "ip", "10.0.0.5/24", None));
    assert_eq!(
        e.message,
        "`10.0.0.5/24` has host bits set; the block is `10.0.0.0/24`"
    );
    let e = err(step("isolate_host", "host", "web-1", &[]));
    assert_eq!(e.field, "target.attributes.ip");
    let e = err(raw("isolate_host", "host", "web-1", Some("web-1.example")));
    assert_eq!(e.field, "target.attributes.ip");
}

#[tokio::test]
async fn broad_blocks_are_refused_even_if_a_policy_allowed_them() {
    let dir = tempfile::tempdir().unwrap();
    let edl = edl(dir.path());
    let s = step("block_ip", "ip", "10.0.0.0/8", &[]);
    let e = Adapter::execute(&edl, action(IntentId::generate(), &s))
        .await
        .unwrap_err();
    assert!(!e.retryable());
    assert_eq!(edl.render("block").unwrap(), "");
}

#[tokio::test]
async fn the_change_log_is_folded_into_a_snapshot_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = edl(dir.path());
    let mut handles = Vec::new();
    for i in 0..1500u32 {
        let s = step(
            "block_ip",
            "ip",
            &format!("10.2.{}.{}", i / 250, i % 250),
            &[],
        );
        handles.push(
            Adapter::execute(&adapter, action(IntentId::generate(), &s))
                .await
                .unwrap(),
        );
    }
    for h in handles.drain(..1000) {
        Adapter::rollback(&adapter, h).await.unwrap();
    }
    let log_lines = std::fs::read_to_string(dir.path().join("edl.log"))
        .unwrap()
        .lines()
        .count();
    assert!(
        log_lines < 2500,
        "the log was never folded: {log_lines} lines"
    );
    let reopened = edl(dir.path());
    assert_eq!(
        reopened.render("block").unwrap(),
        adapter.render("block").unwrap()
    );
    assert_eq!(reopened.render("block").unwrap().lines().count(), 500);
}

#[tokio::test]
async fn a_torn_last_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let adapter = edl(dir.path());
        let s = step("block_ip", "ip", "192.0.2.77", &[]);
        Adapter::execute(&adapter, action(IntentId::generate(), &s))
            .await
            .unwrap();
    }
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("edl.log"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"{\"hold\":true,\"li").unwrap();
    let reopened = edl(dir.path());
    assert_eq!(reopened.render("block").unwrap(), "192.0.2.77\n");
    // what comes after the cut is readable again
    let s = step("block_ip", "ip", "192.0.2.78", &[]);
    Adapter::execute(&reopened, action(IntentId::generate(), &s))
        .await
        .unwrap();
    assert_eq!(
        edl(dir.path()).render("block").unwrap(),
        "192.0.2.77\n192.0.2.78\n"
    );
}

struct EdlSubject {
    dir: tempfile::TempDir,
}

impl crate::conformance::Subject for EdlSubject {
    fn open(&self) -> crate::BoxFuture<'_, Arc<dyn DynAdapter>> {
        Box::pin(async { Arc::new(edl(self.dir.path())) as Arc<dyn DynAdapter> })
    }

    fn step(&self, n: u32) -> Step {
        step("block_ip", "ip", &format!("198.51.100.{n}"), &[])
    }

    fn in_force(&self, n: u32) -> crate::BoxFuture<'_, bool> {
        // What a firewall would fetch: a fresh open reads the lists from disk.
        let listed = edl(self.dir.path()).render("block").unwrap();
        Box::pin(async move { listed.lines().any(|l| l == format!("198.51.100.{n}")) })
    }
}

#[tokio::test]
async fn the_edl_adapter_passes_the_conformance_kit() {
    let subject = EdlSubject {
        dir: tempfile::tempdir().unwrap(),
    };
    crate::conformance::run(&subject).await;
    let broad = step("block_ip", "ip", "10.0.0.0/8", &[]);
    let message = crate::conformance::permanent(&edl(subject.dir.path()), &broad).await;
    assert!(message.contains("broader than /24"), "{message}");
}
