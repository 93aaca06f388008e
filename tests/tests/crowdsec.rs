//! CrowdSec's own bouncers, from Debian's packages, enforcing Parapet's blocks through the
//! bouncer API: the firewall bouncer in nftables mode inside a private network namespace
//! (across a restart of Parapet too), and the custom bouncer running its script.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use parapet_orchestrator::{
    auth::token_hash,
    service::bouncers::{Entry, File},
};
use parapet_tests::{
    Parapet, block,
    netns::{HostLink, nftables_missing},
};

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bouncer file holding one bouncer; its key.
fn bouncer_file(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = format!("key-of-{name}-{}", std::process::id());
    let file = File {
        bouncers: vec![Entry {
            name: name.into(),
            sha256: hex::encode(token_hash(&key)),
            lists: vec![],
        }],
    };
    let path = dir.join("bouncers.toml");
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    (path, key)
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "waited 20 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The addresses in the firewall bouncer's IPv4 set inside `link`'s namespace.
fn blacklisted(link: &HostLink) -> Vec<String> {
    let out = link.ns.exec(&[
        "nft",
        "-j",
        "list",
        "set",
        "ip",
        "crowdsec",
        "crowdsec-blacklists",
    ]);
    if !out.status.success() {
        return Vec::new();
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["set"]["elem"].as_array())
        .flatten()
        .filter_map(|e| {
            e["elem"]["val"]
                .as_str()
                .or_else(|| e.as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firewall_bouncer_enforces_blocks_and_their_rollbacks_across_a_restart() {
    if let Some(why) = nftables_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let link = HostLink::create("cs");
    let dir = tempfile::tempdir().unwrap();
    let (bouncers, key) = bouncer_file(dir.path(), "gateway-1");
    let port = free_port(&link.host);
    let addr = format!("{}:{port}", link.host);
    let configure = |c: &mut parapet_orchestrator::config::Config, _: &Path| {
        c.http_addr = addr.parse().unwrap();
        c.crowdsec.bouncers = Some(bouncers.clone());
    };
    let p = Parapet::start_configured(None, configure).await.unwrap();

    let config = dir.path().join("firewall-bouncer.yaml");
    std::fs::write(
        &config,
        format!(
            "mode: nftables\nupdate_frequency: 1s\ndaemonize: false\nlog_mode: stdout\n\
             log_level: info\napi_url: http://{addr}/\napi_key: {key}\ndisable_ipv6: false\n\
             deny_action: DROP\ndeny_log: false\nsupported_decisions_types:\n  - ban\n\
             blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
             nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n\
             \x20   chain: crowdsec-chain\n  ipv6:\n    enabled: true\n    set-only: false\n\
             \x20   table: crowdsec6\n    chain: crowdsec6-chain\nprometheus:\n  enabled: false\n\
             pid_dir: {}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let _bouncer = Running(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &link.ns.name,
                "crowdsec-firewall-bouncer",
                "-c",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("crowdsec-firewall-bouncer (scripts/install-test-deps installs it)"),
    );

    // a block: the bouncer's set gains it; its rollback: the set loses it
    let first = p
        .submit(block("cs-1", "198.51.100.71"))
        .await
        .unwrap()
        .intent_id;
    wait_until("the block in the bouncer's set", || {
        blacklisted(&link).contains(&"198.51.100.71".to_owned())
    })
    .await;
    p.rollback(&first, "false positive").await;
    wait_until("the rollback in the bouncer's set", || {
        !blacklisted(&link).contains(&"198.51.100.71".to_owned())
    })
    .await;

    // across a restart: what changes after it still reaches the bouncer, which never starts
    // over (it asks `startup=false`), so Parapet must know how far it had read
    let second = p
        .submit(block("cs-2", "198.51.100.72"))
        .await
        .unwrap()
        .intent_id;
    wait_until("the second block", || {
        blacklisted(&link).contains(&"198.51.100.72".to_owned())
    })
    .await;
    let stopped = p.stop().await;
    let p = stopped.start_configured(configure).await;
    p.rollback(&second, "false positive").await;
    p.submit(block("cs-3", "198.51.100.73")).await.unwrap();
    wait_until("the changes made after the restart", || {
        let set = blacklisted(&link);
        !set.contains(&"198.51.100.72".to_owned()) && set.contains(&"198.51.100.73".to_owned())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_bouncer_runs_its_script_for_each_add_and_del() {
    let dir = tempfile::tempdir().unwrap();
    let (bouncers, key) = bouncer_file(dir.path(), "script-1");
    let seen = dir.path().join("seen.log");
    let script = dir.path().join("on-decision.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1 $2 $4\" >> {}\n", seen.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&script)
        .status()
        .unwrap();
    let port = free_port("127.0.0.1");
    let p = Parapet::start_configured(None, |c, _| {
        c.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
        c.crowdsec.bouncers = Some(bouncers.clone());
    })
    .await
    .unwrap();
    let config = dir.path().join("custom-bouncer.yaml");
    std::fs::write(
        &config,
        format!(
            "bin_path: {}\nfeed_via_stdin: false\ntotal_retries: 0\nscenarios_containing: []\n\
             scenarios_not_containing: []\norigins: []\npiddir: {}\nupdate_frequency: 1s\n\
             cache_retention_duration: 10s\ndaemonize: false\nlog_mode: stdout\nlog_level: info\n\
             api_url: http://127.0.0.1:{port}/\napi_key: {key}\nprometheus:\n  enabled: false\n",
            script.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let _bouncer = Running(
        Command::new("crowdsec-custom-bouncer")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("crowdsec-custom-bouncer (scripts/install-test-deps installs it)"),
    );
    let read = || std::fs::read_to_string(&seen).unwrap_or_default();
    let id = p
        .submit(block("script-1", "198.51.100.81"))
        .await
        .unwrap()
        .intent_id;
    wait_until("`add`", || {
        read().contains("add 198.51.100.81 edr.c2_beacon")
    })
    .await;
    p.rollback(&id, "false positive").await;
    wait_until("`del`", || read().contains("del 198.51.100.81")).await;
    // each once
    assert_eq!(read().matches("add 198.51.100.81").count(), 1, "{}", read());
}

/// A CrowdSec Local API from Debian's package, on SQLite in a directory of its own, with a
/// machine (for `cscli decisions`) and a bouncer key for Parapet.
struct Lapi {
    _process: Running,
    dir: PathBuf,
    url: String,
    key: String,
}

impl Lapi {
    fn start(dir: &Path) -> Self {
        let dir = dir.join("crowdsec");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port("127.0.0.1");
        let d = dir.display();
        std::fs::write(dir.join("acquis.yaml"), "").unwrap();
        std::fs::write(
            dir.join("config.yaml"),
            format!(
                "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\n\
                 config_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n\
                 \x20 simulation_path: /etc/crowdsec/simulation.yaml\n  hub_dir: /var/lib/crowdsec/hub/\n\
                 \x20 index_path: /var/lib/crowdsec/hub/.index.json\n  notification_dir: {d}/notifications/\n\
                 \x20 plugin_dir: /usr/lib/crowdsec/plugins/\n\
                 crowdsec_service:\n  acquisition_path: {d}/acquis.yaml\n  parser_routines: 1\n\
                 cscli:\n  output: human\n\
                 db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n\
                 api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {d}/local_api_credentials.yaml\n\
                 \x20 server:\n    log_level: info\n    listen_uri: 127.0.0.1:{port}\n\
                 \x20   profiles_path: /etc/crowdsec/profiles.yaml\n    trusted_ips:\n      - 127.0.0.1\n\
                 prometheus:\n  enabled: false\n"
            ),
        )
        .unwrap();
        let creds = dir.join("local_api_credentials.yaml");
        cscli(
            &dir,
            &[
                "machines",
                "add",
                "parapet-test",
                "--auto",
                "-f",
                creds.to_str().unwrap(),
            ],
        );
        let process = Running(
            Command::new("crowdsec")
                .args(["-no-cs", "-no-capi", "-c"])
                .arg(dir.join("config.yaml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("crowdsec (scripts/install-test-deps installs it)"),
        );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "LAPI did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let key = cscli(&dir, &["bouncers", "add", "parapet", "-o", "raw"])
            .trim()
            .to_owned();
        Self {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            key,
        }
    }

    fn cscli(&self, args: &[&str]) -> String {
        cscli(&self.dir, args)
    }
}

fn cscli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("cscli")
        .arg("-c")
        .arg(dir.join("config.yaml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cscli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowdsec_decisions_go_through_the_guardrails() {
    let dir = tempfile::tempdir().unwrap();
    let lapi = Lapi::start(dir.path());
    let key_file = dir.path().join("lapi.key");
    std::fs::write(&key_file, &lapi.key).unwrap();
    // the example policy, with CrowdSec's manual decisions in its inventory and a range no
    // block may touch
    let policy = format!(
        "{}\n[[detections]]\nid = \"crowdsec.cscli\"\nowner = \"soc@example.com\"\n\
         [detections.actions]\nblock_ip = \"auto\"\n\
         [[protected]]\nname = \"partners\"\ncidrs = [\"203.0.113.0/24\"]\neffect = \"deny\"\n",
        include_str!("../../policy/example.toml")
    );
    let source: parapet_orchestrator::sources::CrowdSecSource = toml::from_str(&format!(
        "url = \"{}\"\napi_key_file = \"{}\"\ninterval = \"1s\"\n",
        lapi.url,
        key_file.display()
    ))
    .unwrap();
    let p = Parapet::start_configured(Some(&policy), |c, _| c.crowdsec_sources = vec![source])
        .await
        .unwrap();
    let intent_on = |target: &'static str| {
        let p = &p;
        async move {
            let list = p
                .intents()
                .list(parapet_proto::v1::ListIntentsRequest {
                    source: "crowdsec".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            list.intents
                .into_iter()
                .find(|i| i.steps[0].target.as_ref().unwrap().id == target)
        }
    };
    let state_of = |target: &'static str| async move { intent_on(target).await.map(|i| i.state) };
    use parapet_proto::v1::IntentState;

    // a normal address: an executed block
    lapi.cscli(&["decisions", "add", "-i", "198.51.100.91", "-d", "2h"]);
    // everything, and a /8: CrowdSec takes them, the guardrails do not
    lapi.cscli(&["decisions", "add", "-r", "0.0.0.0/0", "-d", "4h"]);
    lapi.cscli(&["decisions", "add", "-r", "10.0.0.0/8", "-d", "4h"]);
    // a protected address
    lapi.cscli(&["decisions", "add", "-i", "203.0.113.5", "-d", "4h"]);
    // a ban for over a hundred years: longer than any TTL Parapet takes
    lapi.cscli(&["decisions", "add", "-i", "198.51.100.92", "-d", "1000000h"]);
    let started = Instant::now();
    loop {
        let (a, b, c, d) = (
            state_of("198.51.100.91").await,
            state_of("0.0.0.0/0").await,
            state_of("10.0.0.0/8").await,
            state_of("203.0.113.5").await,
        );
        let denied = Some(IntentState::Denied as i32);
        if a == Some(IntentState::Active as i32) && b == denied && c == denied && d == denied {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "states: {a:?} {b:?} {c:?} {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(p.edl("block").await.contains("198.51.100.91"));
    // not an intent at all, so not journaled: counted, and logged
    let metrics = format!("http://{}/metrics", p.http_addr);
    let started = Instant::now();
    loop {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        if text.lines().any(|l| {
            l.starts_with("parapet_calls_refused_total") && l.contains("upstream_decision")
        }) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(intent_on("198.51.100.92").await.is_none());
    let refused = intent_on("0.0.0.0/0").await.unwrap();
    let reasons: Vec<String> = refused
        .decision
        .unwrap()
        .reasons
        .iter()
        .map(|r| r.guardrail.clone())
        .collect();
    assert!(reasons.contains(&"target_scope".to_owned()), "{reasons:?}");
    // the refusals are in the status, as upstream decisions refused
    let status = p
        .admin()
        .get_status(parapet_proto::v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut refused: Vec<String> = status
        .refused_upstream
        .iter()
        .map(|i| i.steps[0].target.as_ref().unwrap().id.clone())
        .collect();
    refused.sort();
    assert_eq!(refused, ["0.0.0.0/0", "10.0.0.0/8", "203.0.113.5"]);
    let protected = intent_on("203.0.113.5").await.unwrap();
    assert!(
        protected
            .decision
            .unwrap()
            .reasons
            .iter()
            .any(|r| r.message.contains("partners")),
        "the protected range named"
    );
    let block = intent_on("198.51.100.91").await.unwrap();
    assert_eq!(block.detection.unwrap().rule_id, "crowdsec.cscli");
    let ttl = block.ttl.unwrap().seconds;
    assert!((7000..=7200).contains(&ttl), "{ttl}");

    // deleted in CrowdSec: rolled back in Parapet
    lapi.cscli(&["decisions", "delete", "-i", "198.51.100.91"]);
    let started = Instant::now();
    while state_of("198.51.100.91").await != Some(IntentState::RolledBack as i32) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not rolled back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!p.edl("block").await.contains("198.51.100.91"));
}
