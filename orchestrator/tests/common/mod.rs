//! Runs the real `parapet` binary for tests: `serve` on random loopback ports, the client
//! commands against it, and stopping it gently or killing it.

#![allow(dead_code)]

pub mod pki;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_parapet");

pub struct Server {
    child: Child,
    pub grpc: String,
    pub http: String,
    stderr: mpsc::Receiver<String>,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server on the built-in example policy.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(&dir.path().join("data"), None);
        server._dir = Some(dir);
        server
    }

    /// A server over a given data directory, on a given policy file.
    pub fn start_in(data: &Path, policy: Option<&Path>) -> Self {
        Self::start_with(data, policy, &[], &[])
    }

    /// As `start_in`, with more `serve` arguments (`--config FILE`) and environment variables.
    pub fn start_with(
        data: &Path,
        policy: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data);
        if let Some(policy) = policy {
            cmd.arg("--policy").arg(policy);
        }
        if !extra.contains(&"--secure") {
            cmd.arg("--insecure");
        }
        cmd.args(extra.iter().filter(|a| **a != "--secure"))
            .envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let banner = loop {
            let line = stderr
                .recv_timeout(Duration::from_secs(30))
                .expect("parapet serve did not start");
            if line.starts_with("parapet: listening:") {
                break line;
            }
        };
        let field = |name: &str| {
            banner
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        Self {
            grpc: format!("http://{}", field("grpc")),
            http: field("http"),
            child,
            stderr,
            data: data.to_path_buf(),
            _dir: None,
        }
    }

    /// A server in `dir` (its data in `dir/data`) with `config` as its config file; `secure`
    /// leaves authentication on.
    pub fn configured(dir: &Path, config: &str, secure: bool) -> Self {
        let path = dir.join("parapet.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_str().unwrap();
        let args: &[&str] = if secure {
            &["--secure", "--config", path]
        } else {
            &["--config", path]
        };
        Self::start_with(&dir.join("data"), None, args, &[])
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("PARAPET_SERVER", &self.grpc)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let out = self.run(&[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn edl(&self, list: &str) -> String {
        // reqwest is built without a TLS provider of its own; Parapet installs ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::get(format!("http://{}/edl/{list}", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Whether the `block` list a firewall fetches holds `ip` (read with curl).
    pub fn edl_blocking(&self, ip: &str) -> bool {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .arg(format!("http://{}/edl/block", self.http))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .any(|l| l.split('/').next() == Some(ip))
    }

    /// Stops the server as a service manager does, and returns what it said.
    pub fn terminate(mut self) -> String {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = self.child.wait().unwrap();
        let said = self.stderr.try_iter().collect::<Vec<_>>().join("\n");
        assert!(status.success(), "{status}: {said}");
        said
    }

    /// Kills the server where it stands (SIGKILL), as a power cut or the OOM killer would.
    /// Returns the temporary directory holding its data, so the data outlives the server.
    pub fn kill(mut self) -> Option<tempfile::TempDir> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self._dir.take()
    }
}

/// A block of `ips` from the example policy's `edr.c2_beacon` (which acts alone), answered once
/// it is in force.
pub fn block(key: &str, ips: &[&str]) -> parapet_proto::v1::SubmitIntentRequest {
    use parapet_proto::v1 as pb;
    pb::SubmitIntentRequest {
        idempotency_key: key.into(),
        source: "xdr".into(),
        detection: Some(pb::Detection {
            rule_id: "edr.c2_beacon".into(),
            severity: pb::Severity::Critical.into(),
            confidence: 0.95,
            title: String::new(),
        }),
        steps: ips
            .iter()
            .map(|ip| pb::Step {
                kind: "block_ip".into(),
                target: Some(pb::Target {
                    kind: "ip".into(),
                    id: (*ip).into(),
                    ..Default::default()
                }),
                params: Default::default(),
            })
            .collect(),
        ttl: None,
        reason: String::new(),
        wait: true,
        finding: String::new(),
    }
}

/// Runs `parapet serve` on `data` expecting it to refuse to start; returns what it said.
/// A server that starts anyway is stopped and the test fails.
pub fn refused_start(data: &Path, extra: &[&str]) -> String {
    refused_start_with(data, extra, &[])
}

/// As `refused_start`, with environment variables; `--secure` among `extra` leaves
/// `--insecure` out.
pub fn refused_start_with(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let insecure = (!extra.contains(&"--secure")).then_some("--insecure");
    let mut child = Command::new(BIN)
        .args(["serve"])
        .args(insecure)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .args(extra.iter().filter(|a| **a != "--secure"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "parapet serve started: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

/// `parapet token create` for `identity` with `role`, appended to `file`; the token.
pub fn token(file: &Path, identity: &str, role: &str) -> String {
    token_with(file, identity, role, &[])
}

/// As [`token`], with more of `token create`'s flags (`--max-tier approval`).
pub fn token_with(file: &Path, identity: &str, role: &str, more: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--identity", identity, "--role", role])
        .args(more)
        .arg("--file")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The HTTP status curl gets for `url` with more arguments (headers, a body, a cookie jar).
pub fn status_of(args: &[&str], url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().parse().unwrap_or(0)
}

/// `curl` POSTs `body` as JSON to `url` with more headers; the status and the JSON answer
/// (null when it is not JSON).
pub fn post_json(url: &str, headers: &[String], body: &str) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
    ])
    .args([
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Runs a `parapet` command without a server; returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A test that fails midway must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped: a disk that fills.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(megabytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount (the disk-full tests need root)");
        assert!(
            status.success(),
            "mount -t tmpfs failed: the disk-full tests need root"
        );
        Self {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }

    /// Bytes free now.
    pub fn free(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut parts = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        parts.next().unwrap() * parts.next().unwrap()
    }

    /// Fills the disk until `leave` bytes are free; returns the file that holds the space.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.path.join(name);
        let take = self.free().saturating_sub(leave);
        let status = Command::new("fallocate")
            .args(["-l", &take.to_string()])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
