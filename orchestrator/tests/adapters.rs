//! Adapters declared in a config file, as an operator sets them up: `parapet policy check
//! --config` catching a misconfigured adapter or route, `serve` refusing to start on one, and
//! an exec script and a webhook doing their work from the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use axum::{Router, extract::Path as UrlPath, extract::State, routing::post};
use common::{BIN, Server};
use parking_lot::Mutex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../actions/tests/fixtures")
        .join(name)
}

const POLICY: &str = r#"
[[detections]]
id = "ids.ssh_bruteforce"

[detections.actions]
block_ip = "auto"
suspend_user = "auto"

[routes]
block_ip = "firewall-drop"
"#;

fn config(dir: &Path, webhook: &str) -> String {
    format!(
        r#"
[[adapters]]
type = "exec"
name = "firewall-drop"
command = "{script}"
extra_args = ["{blocked}"]
kinds = ["block_ip"]
timeout = "10s"

[[adapters]]
type = "webhook"
name = "accounts"
kinds = ["suspend_user"]
secret_env = "PARAPET_TEST_ACCOUNTS_TOKEN"
[adapters.execute]
url = "{webhook}/users/{{{{target.id}}}}/suspend"
headers = {{ Authorization = "Bearer {{{{secret}}}}" }}
[adapters.rollback]
url = "{webhook}/users/{{{{target.id}}}}/unsuspend"
headers = {{ Authorization = "Bearer {{{{secret}}}}" }}
"#,
        script = fixture("ar-stateful.py").display(),
        blocked = dir.join("blocked").display(),
    )
}

fn check(policy: &Path, config: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(policy)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_check_catches_a_misconfigured_adapter_or_route() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, conf) = (
        dir.path().join("policy.toml"),
        dir.path().join("parapet.toml"),
    );
    std::fs::write(&policy, POLICY).unwrap();
    std::fs::write(&conf, config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let (ok, stderr) = check(&policy, &conf);
    assert!(ok, "{stderr}");

    std::fs::write(&policy, POLICY.replace("\"firewall-drop\"", "\"fw-drop\"")).unwrap();
    let (ok, stderr) = check(&policy, &conf);
    assert!(!ok);
    assert!(
        stderr.contains("line 10") && stderr.contains("adapter `fw-drop`, which is not configured"),
        "{stderr}"
    );

    // Without a route, two adapters doing `block_ip` (the EDL and the script) is ambiguous.
    std::fs::write(&policy, POLICY.replace("block_ip = \"firewall-drop\"", "")).unwrap();
    let (ok, stderr) = check(&policy, &conf);
    assert!(!ok);
    assert!(
        stderr.contains("`edl`, `firewall-drop` all perform `block_ip`"),
        "{stderr}"
    );

    std::fs::write(&policy, POLICY).unwrap();
    let broken = config(dir.path(), "http://127.0.0.1:9").replace("ar-stateful.py", "missing.py");
    std::fs::write(&conf, broken).unwrap();
    let (ok, stderr) = check(&policy, &conf);
    assert!(!ok);
    assert!(
        stderr.contains("adapter `firewall-drop`") && stderr.contains("missing.py"),
        "{stderr}"
    );

    // `serve` refuses the same config before listening.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--policy")
        .arg(&policy)
        .arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("adapter `firewall-drop`"), "{stderr}");
}

type Suspended = Arc<Mutex<BTreeSet<String>>>;

async fn accounts_api() -> (String, Suspended) {
    let suspended = Suspended::default();
    let app = Router::new()
        .route(
            "/users/{user}/{verb}",
            post(
                |State(s): State<Suspended>,
                 UrlPath((user, verb)): UrlPath<(String, String)>,
                 headers: axum::http::HeaderMap| async move {
                    if headers["authorization"] != "Bearer token-from-env" {
                        return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                    }
                    // a careless API that echoes the request's headers in its errors
                    if user == "echo" {
                        let said = format!("bad request with {:?}", headers["authorization"]);
                        return (axum::http::StatusCode::BAD_REQUEST, said);
                    }
                    if verb == "suspend" {
                        s.lock().insert(user);
                    } else {
                        s.lock().remove(&user);
                    }
                    (axum::http::StatusCode::NO_CONTENT, String::new())
                },
            ),
        )
        .with_state(suspended.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, suspended)
}

// The CLI calls block their thread; the accounts API needs another to answer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_and_a_webhook_act_and_undo_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (url, suspended) = accounts_api().await;
    let (policy, conf) = (
        dir.path().join("policy.toml"),
        dir.path().join("parapet.toml"),
    );
    std::fs::write(&policy, POLICY).unwrap();
    std::fs::write(&conf, config(dir.path(), &url)).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&policy),
        &["--config", conf.to_str().unwrap()],
        &[
            ("PARAPET_TEST_ACCOUNTS_TOKEN", "token-from-env"),
            ("PARAPET_LOG", "debug"),
        ],
    );
    let submit = |action: &str, target: &str, key: &str| {
        server.json(&[
            "submit",
            "--detection",
            "ids.ssh_bruteforce",
            "--action",
            action,
            "--target",
            target,
            "--key",
            key,
            "--wait",
        ])
    };
    let blocked = submit("block_ip", "ip:203.0.113.9", "k1");
    assert_eq!(blocked[0]["state"], "active", "{blocked:?}");
    let listed = std::fs::read_to_string(dir.path().join("blocked")).unwrap();
    assert_eq!(listed, "203.0.113.9\n");
    assert_eq!(
        server.edl("block").await,
        "",
        "the route sent the block to the script alone"
    );

    let user = submit("suspend_user", "user:alice", "k2");
    assert_eq!(user[0]["state"], "active", "{user:?}");
    assert!(suspended.lock().contains("alice"));

    for intent in [&blocked[0], &user[0]] {
        let id = intent["intent_id"].as_str().unwrap();
        let rolled = server.json(&["rollback", id, "--reason", "test over", "--yes"]);
        assert_eq!(rolled[0]["state"], "rolled_back", "{rolled:?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("blocked")).unwrap(),
        ""
    );
    assert!(suspended.lock().is_empty());

    // an API that quotes the credential back: the failure is reported without it
    let out = server.run(&[
        "submit",
        "--detection",
        "ids.ssh_bruteforce",
        "--action",
        "suspend_user",
        "--target",
        "user:echo",
        "--key",
        "k3",
        "--wait",
        "--json",
    ]);
    let answer =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(answer.contains("400"), "{answer}");
    let journal = String::from_utf8(server.run(&["journal", "export"]).stdout).unwrap();
    assert!(journal.contains("step_failed"), "{journal}");
    let logs = server.terminate();
    for (what, text) in [("logs", &logs), ("journal", &journal), ("answer", &answer)] {
        assert!(
            !text.contains("token-from-env"),
            "the credential is in the {what}"
        );
    }
}

/// The README's adapter examples are real config: each parses as the server reads it.
#[test]
fn the_readme_adapter_examples_parse() {
    #[derive(serde::Deserialize)]
    struct File {
        adapters: Vec<parapet_actions::config::AdapterConfig>,
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("[[adapters]]"))
        .collect();
    let mut types = BTreeSet::new();
    for block in &blocks {
        let file: File = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        for a in &file.adapters {
            types.insert(format!("{:?}", a).split('(').next().unwrap().to_owned());
        }
    }
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["Exec", "Falcon", "Ldap", "Nftables", "Webhook"]
    );
}
