//! One run of a script: the message on stdin, the `check_keys` handshake, bounded output, and
//! the process group killed when the time is up.

use std::{path::Path, process::Stdio};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use super::ExecConfig;
use crate::{Error, Result};

/// Output kept per stream; the rest is read and dropped so the script never blocks on a full
/// pipe.
const MAX_OUTPUT: usize = 4096;

/// Exit status a script uses to say "try again later" (`EX_TEMPFAIL` of sysexits.h).
const TEMPFAIL: i32 = 75;

pub(super) struct Outcome {
    pub status: Option<i32>,
    /// Stdout (after the handshake) and stderr, bounded.
    pub output: String,
    /// What a stateful script's `check_keys` named.
    pub keys: Option<Vec<String>>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn failure(&self, command: &Path) -> Error {
        let status = self
            .status
            .map_or("was killed by a signal".to_owned(), |s| {
                format!("exited {s}")
            });
        let message = format!("`{}` {status}: {}", command.display(), self.output.trim());
        if self.status == Some(TEMPFAIL) {
            Error::transient(message)
        } else {
            Error::permanent(message)
        }
    }
}

/// The `PATH` a script gets unless its configuration sets another (with `LANG=C.UTF-8`).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the script with `message`. When it asks `check_keys`, `proceed(keys)` says whether it
/// may go on (`continue`) or must stop (`abort`).
pub(super) async fn run<F: std::future::Future<Output = bool>>(
    config: &ExecConfig,
    message: &Value,
    proceed: impl FnOnce(Vec<String>) -> F,
) -> Result<Outcome> {
    let mut child = Command::new(&config.command)
        .env_clear()
        .env("PATH", PATH)
        .env("LANG", "C.UTF-8")
        .envs(&config.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::permanent(format!("cannot run `{}`: {e}", config.command.display())))?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::permanent("the script's pipes could not be opened"));
    };
    let talk = async {
        let mut line = serde_json::to_vec(message)
            .map_err(|e| Error::permanent(format!("cannot encode the message: {e}")))?;
        line.push(b'\n');
        let broken = |e: std::io::Error| Error::transient(format!("talking to the script: {e}"));
        // A script that exits without reading its input is its own business.
        let _ = stdin.write_all(&line).await;
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout.read_line(&mut first).await.map_err(broken)?;
        let mut keys = None;
        let mut output = String::new();
        match check_keys(&first) {
            Some(k) => {
                let answer = if proceed(k.clone()).await {
                    "continue"
                } else {
                    "abort"
                };
                let mut reply = serde_json::to_vec(&json!({
                    "version": 1,
                    "origin": {"name": "parapet", "module": "wazuh-execd"},
                    "command": answer,
                    "parameters": {},
                }))
                .map_err(|e| Error::permanent(format!("cannot encode the answer: {e}")))?;
                reply.push(b'\n');
                let _ = stdin.write_all(&reply).await;
                keys = Some(k);
            }
            None => output.push_str(&first),
        }
        drop(stdin);
        let (rest, err) = tokio::join!(bounded(stdout), bounded(stderr));
        output.push_str(&rest);
        if !err.is_empty() {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str(&err);
        }
        let status = child.wait().await.map_err(broken)?;
        Ok(Outcome {
            status: status.code(),
            output: clip(output),
            keys,
        })
    };
    match tokio::time::timeout(config.timeout, talk).await {
        Ok(outcome) => outcome,
        Err(_) => {
            if let Some(pid) = group.and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            Err(Error::transient(format!(
                "`{}` did not finish within {}; its process group was killed",
                config.command.display(),
                humantime::format_duration(config.timeout)
            )))
        }
    }
}

/// The keys of a `check_keys` message, if that is what the line is.
fn check_keys(line: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    if v["command"] != "check_keys" {
        return None;
    }
    let keys = v["parameters"]["keys"].as_array()?;
    Some(
        keys.iter()
            .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_owned))
            .collect(),
    )
}

async fn bounded(mut from: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
