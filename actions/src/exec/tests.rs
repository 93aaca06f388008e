use std::path::Path;

use super::*;
use crate::{
    BoxFuture, DynAdapter,
    conformance::{self, action},
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn config(script: &str, extra: &Path) -> ExecConfig {
    ExecConfig {
        name: "ar".into(),
        command: fixture(script),
        extra_args: vec![extra.display().to_string()],
        kinds: vec!["block_ip".parse().unwrap()],
        timeout: Duration::from_secs(10),
        concurrency: 4,
        env: Default::default(),
    }
}

fn step(kind: &str, id: &str) -> Step {
    conformance::step("block_ip", kind, id, &[])
}

struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn listed(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("blocked")).unwrap_or_default()
    }
}

impl conformance::Subject for Script {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>> {
        let c = config("ar-stateful.py", &self.dir.path().join("blocked"));
        let exec = Exec::open(c, &self.dir.path().join("state")).unwrap();
        Box::pin(async move { Arc::new(exec) as Arc<dyn DynAdapter> })
    }

    fn step(&self, n: u32) -> Step {
        step("ip", &format!("198.51.100.{n}"))
    }

    fn in_force(&self, n: u32) -> BoxFuture<'_, bool> {
        let listed = self.listed();
        Box::pin(async move { listed.lines().any(|l| l == format!("198.51.100.{n}")) })
    }
}

#[tokio::test]
async fn a_stateful_wazuh_script_passes_the_conformance_kit() {
    let script = Script {
        dir: tempfile::tempdir().unwrap(),
    };
    conformance::run(&script).await;
    // Every last rollback ran the script's `delete`: nothing is left listed.
    assert_eq!(script.listed(), "");
}

#[tokio::test]
async fn the_script_gets_the_wazuh_message_and_untrusted_text_stays_data() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("messages");
    let exec = Exec::open(config("ar-record.py", &record), dir.path()).unwrap();
    let hostile = step("user", "$(touch${IFS}pwned);rm${IFS}-rf${IFS}~");
    let handle = Adapter::execute(&exec, action(&hostile)).await.unwrap();
    assert_eq!(handle.status, Some(0));
    assert_eq!(handle.keys, None);
    Adapter::rollback(&exec, handle).await.unwrap();

    let text = std::fs::read_to_string(&record).unwrap();
    let messages: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["version"], 1);
    assert_eq!(messages[0]["command"], "add");
    assert_eq!(messages[1]["command"], "delete");
    let params = &messages[0]["parameters"];
    assert_eq!(params["extra_args"][0], record.display().to_string());
    assert_eq!(
        params["alert"]["data"]["dstuser"],
        "$(touch${IFS}pwned);rm${IFS}-rf${IFS}~"
    );
    assert_eq!(params["alert"]["parapet"]["kind"], "block_ip");
    assert_eq!(
        messages[1]["parameters"], *params,
        "delete gets the add's parameters"
    );
    assert!(!Path::new("pwned").exists());
}

#[tokio::test]
async fn a_refusing_script_fails_permanently_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::open(config("ar-refuse.sh", dir.path()), dir.path()).unwrap();
    let message = conformance::permanent(&exec, &step("ip", "198.51.100.1")).await;
    assert!(
        message.contains("ar-refuse.sh` exited 1: no such account"),
        "{message}"
    );
}

#[tokio::test]
async fn a_script_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let mut c = config("ar-slow.py", &pidfile);
    c.timeout = Duration::from_millis(1500);
    let exec = Exec::open(c, &dir.path().join("state")).unwrap();
    let message =
        conformance::bounded(&exec, &step("ip", "198.51.100.1"), exec.config.timeout).await;
    assert!(message.contains("process group was killed"), "{message}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild goes with the group; give the kernel a moment to reap it.
    let mut alive = true;
    for _ in 0..50 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        alive = !status.is_empty() && !status.contains(") Z ");
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive, "the script's child {pid} outlived the timeout");
}

#[test]
fn a_missing_or_non_executable_script_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("no-such-script", dir.path());
    let err = c.check().unwrap_err().to_string();
    assert!(err.contains("no-such-script"), "{err}");
    c.command = fixture("../../Cargo.toml");
    let err = c.check().unwrap_err().to_string();
    assert!(err.contains("is not an executable file"), "{err}");
}

/// Runs `n` steps of one exec instance at once; returns each run's record.
async fn runs(c: ExecConfig, n: u32, dir: &Path) -> Vec<Value> {
    let record = PathBuf::from(&c.extra_args[0]);
    let exec = Exec::open(c, &dir.join("state")).unwrap();
    let steps: Vec<Step> = (0..n)
        .map(|i| step("ip", &format!("198.51.100.{i}")))
        .collect();
    let done =
        futures::future::join_all(steps.iter().map(|s| Adapter::execute(&exec, action(s)))).await;
    for d in done {
        d.unwrap();
    }
    std::fs::read_to_string(record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_script_gets_only_the_environment_its_configuration_gives() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("ar-env.py", &dir.path().join("runs"));
    c.extra_args.push("0".into());
    c.env = [("AR_MODE".to_owned(), "strict".to_owned())].into();
    let ran = runs(c, 1, dir.path()).await;
    let env = ran[0]["env"].as_object().unwrap();
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    // nothing of this process's environment (HOME, PATH, credentials) is passed on
    assert_eq!(names, ["AR_MODE", "LANG", "PATH"], "{env:?}");
    assert_eq!(env["AR_MODE"], "strict");
}

#[tokio::test]
async fn scripts_run_side_by_side_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("ar-env.py", &dir.path().join("runs"));
    c.extra_args.push("0.5".into());
    c.concurrency = 2;
    let ran = runs(c, 6, dir.path()).await;
    assert_eq!(ran.len(), 6);
    // at each start, how many were running
    let spans: Vec<(f64, f64)> = ran
        .iter()
        .map(|r| (r["start"].as_f64().unwrap(), r["end"].as_f64().unwrap()))
        .collect();
    let most = spans
        .iter()
        .map(|(at, _)| spans.iter().filter(|(s, e)| s <= at && at < e).count())
        .max()
        .unwrap();
    assert_eq!(most, 2, "{spans:?}");
}

#[tokio::test]
async fn waiting_for_a_turn_does_not_count_against_a_scripts_timeout() {
    // one at a time, each run taking most of its timeout: the last waits for three runs
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("ar-env.py", &dir.path().join("runs"));
    c.extra_args.push("0.6".into());
    c.concurrency = 1;
    c.timeout = Duration::from_secs(1);
    assert_eq!(runs(c, 4, dir.path()).await.len(), 4);
}
