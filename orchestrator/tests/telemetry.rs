//! What Parapet says about itself: `/metrics` after a scripted scenario, scraped as
//! Prometheus does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Server;

/// The value of one series: a metric name and labels that must all be present.
fn value(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, v) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let fits = metric == name
            && labels
                .iter()
                .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
        fits.then(|| v.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let server = Server::start();
    let submit = |rule: &str, ip: &str| {
        server.json(&[
            "submit",
            "--source",
            "xdr",
            "--detection",
            rule,
            "--severity",
            "critical",
            "--confidence",
            "0.95",
            "--action",
            "block_ip",
            "--target",
            &format!("ip:{ip}"),
            "--wait",
        ])[0]
            .clone()
    };
    let a = submit("edr.c2_beacon", "198.51.100.1");
    let b = submit("edr.c2_beacon", "198.51.100.2");
    submit("unknown.rule", "198.51.100.3"); // waits for approval: not in the inventory
    submit("edr.c2_beacon", "10.0.0.0/8"); // denied: far too broad
    let id = |v: &serde_json::Value| v["intent_id"].as_str().unwrap().to_owned();
    assert!(
        server
            .run(&["verdict", &id(&a), "--false-positive", "--note", "lab"])
            .status
            .success()
    );
    assert!(
        server
            .run(&["rollback", &id(&b), "--reason", "done", "--yes"])
            .status
            .success()
    );
    assert!(
        server
            .run(&[
                "kill-switch",
                "engage",
                "--kind",
                "isolate_host",
                "--reason",
                "drill"
            ])
            .status
            .success()
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("http://{}/metrics", server.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v = |name: &str, labels: &[(&str, &str)]| value(&metrics, name, labels);
    assert_eq!(
        v(
            "parapet_intents_decided_total",
            &[("outcome", "execute"), ("guardrail", "none")]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        v(
            "parapet_intents_decided_total",
            &[("outcome", "await_approval"), ("guardrail", "inventory")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "parapet_intents_decided_total",
            &[("outcome", "deny"), ("guardrail", "target_scope")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        v(
            "parapet_actions_total",
            &[
                ("adapter", "edl"),
                ("kind", "block_ip"),
                ("result", "success")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(
            "parapet_action_rollbacks_total",
            &[("adapter", "edl"), ("result", "success")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(
            "parapet_adapter_duration_seconds_count",
            &[("adapter", "edl"), ("operation", "execute")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v("parapet_rollbacks_total", &[("cause", "verdict")]),
        Some(1.0)
    );
    assert_eq!(
        v("parapet_rollbacks_total", &[("cause", "operator")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "parapet_verdicts_total",
            &[
                ("detection", "edr.c2_beacon"),
                ("kind", "block_ip"),
                ("verdict", "false_positive")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(v("parapet_pending_approvals", &[]), Some(1.0));
    assert!(v("parapet_pending_approval_oldest_age_seconds", &[]).unwrap() > 0.0);
    assert_eq!(
        v("parapet_kill_switch_engaged", &[("kind", "isolate_host")]),
        Some(1.0)
    );
    assert_eq!(
        v("parapet_kill_switch_engaged", &[("kind", "*")]),
        Some(0.0)
    );
    assert_eq!(
        v("parapet_active_intents", &[("kind", "block_ip")]),
        None,
        "both were rolled back"
    );
    assert_eq!(
        v(
            "parapet_budget_active",
            &[("budget", "blocks at once"), ("scope_value", "global")]
        ),
        Some(0.0)
    );
    let entries = v("parapet_journal_entries_total", &[]).unwrap();
    let commits = v("parapet_journal_group_commit_entries_count", &[]).unwrap();
    assert!(
        entries >= 20.0 && commits > 0.0 && commits <= entries,
        "{entries} {commits}"
    );
    assert_eq!(
        v("parapet_journal_sync_duration_seconds_count", &[]),
        Some(commits)
    );
    assert_eq!(
        v("parapet_journal_index_duration_seconds_count", &[]),
        Some(commits)
    );

    // the on-call summary says the same
    let status = String::from_utf8(server.run(&["status"]).stdout).unwrap();
    assert!(status.contains("active  nothing"), "{status}");
    assert!(
        status.contains("pending 1 approval, the oldest waiting"),
        "{status}"
    );
    assert!(
        status.contains("adapters edl (block_ip, isolate_host)"),
        "{status}"
    );
    assert!(
        status.contains("isolate_host") && status.contains("drill"),
        "{status}"
    );
    assert!(status.contains("USE"), "{status}");
}
