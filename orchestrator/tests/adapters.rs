//! Adapters declared in a config file, as an operator sets them up: `parapet policy check
//! --config` catching a misconfigured adapter or route, `serve` refusing to start on one, and
//! an exec script and a webhook doing their work from the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
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

const TOKEN_ENV: (&str, &str) = ("PARAPET_TEST_ACCOUNTS_TOKEN", "t0ken-value");

fn check(policy: &Path, config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(policy)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

type Edit = fn(&str) -> String;

/// Every mistake the README says both refuse: `policy check --config` and `serve` answer it
/// from one function, so each row must be refused by both, in the same words.
#[test]
fn policy_check_and_serve_refuse_the_same_mistakes_in_the_same_words() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, conf) = (
        dir.path().join("policy.toml"),
        dir.path().join("parapet.toml"),
    );
    let good = config(dir.path(), "http://127.0.0.1:9");
    std::fs::write(&policy, POLICY).unwrap();
    std::fs::write(&conf, &good).unwrap();
    let (ok, stderr) = check(&policy, &conf, &[TOKEN_ENV]);
    assert!(ok, "{stderr}");

    let same: Edit = |t| t.to_owned();
    // (case, config edit, policy edit, environment, what both must say)
    let rows: Vec<(&str, Edit, Edit, bool, &str)> = vec![
        (
            "a route to an instance that is not configured",
            same,
            |p| p.replace("\"firewall-drop\"", "\"fw-drop\""),
            true,
            "line 10, column 1: the route for `block_ip` names adapter `fw-drop`, which is not configured",
        ),
        (
            "two instances for a kind and no route",
            same,
            |p| p.replace("block_ip = \"firewall-drop\"", ""),
            true,
            "`edl`, `firewall-drop` all perform `block_ip`: say which in the policy's [routes]",
        ),
        (
            "a missing script",
            |c| c.replace("ar-stateful.py", "missing.py"),
            same,
            true,
            "adapter `firewall-drop`: `",
        ),
        (
            "an unreadable secret file",
            |c| {
                c.replace(
                    "secret_env = \"PARAPET_TEST_ACCOUNTS_TOKEN\"",
                    "secret_file = \"/nonexistent/accounts-token\"",
                )
            },
            same,
            true,
            "adapter `accounts`: secret_file `/nonexistent/accounts-token`: No such file or directory",
        ),
        (
            "a secret variable that is not set",
            same,
            same,
            false,
            "adapter `accounts`: secret_env `PARAPET_TEST_ACCOUNTS_TOKEN` is not set",
        ),
        (
            "an nft that cannot install its table",
            |c| {
                format!(
                    "{c}{}",
                    r#"
[[adapters]]
type = "nftables"
name = "gw"
nft = "/nonexistent/nft"
"#
                )
            },
            same,
            true,
            "adapter `gw`: cannot install table `parapet`: cannot run `/nonexistent/nft`",
        ),
        (
            "an unreadable token for the lists",
            |c| format!("[edl]\ntoken_file = \"/nonexistent/edl-token\"\n{c}"),
            same,
            true,
            "cannot read `/nonexistent/edl-token`",
        ),
        (
            "an unreadable TLS certificate",
            |c| {
                format!(
                    "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n[auth]\ntokens = \"/nonexistent/tokens.toml\"\n{c}"
                )
            },
            same,
            true,
            "cannot read",
        ),
    ];
    for (case, edit_config, edit_policy, with_env, says) in rows {
        std::fs::write(&conf, edit_config(&good)).unwrap();
        std::fs::write(&policy, edit_policy(POLICY)).unwrap();
        let env: &[(&str, &str)] = if with_env { &[TOKEN_ENV] } else { &[] };
        let (ok, checked) = check(&policy, &conf, env);
        assert!(!ok, "{case}: policy check passed");
        assert!(
            checked.contains(says),
            "{case}: policy check said {checked}"
        );
        let (policy_arg, conf_arg) = (policy.display().to_string(), conf.display().to_string());
        let mut args = vec![
            "--policy",
            policy_arg.as_str(),
            "--config",
            conf_arg.as_str(),
        ];
        if case.contains("TLS") {
            args.push("--secure");
        }
        let served = common::refused_start_with(&dir.path().join("data"), &args, env);
        assert!(served.contains(says), "{case}: serve said {served}");
    }
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
