//! exec: runs existing response scripts, speaking the Wazuh active-response protocol on stdin,
//! so Wazuh AR scripts (`firewall-drop`, `disable-account`, your own) run unchanged.
//!
//! For each execution the script is started (never through a shell) and given one JSON line:
//! `{"version":1,"origin":{..},"command":"add","parameters":{"extra_args":[..],"alert":{..},
//! "program":".."}}`. The alert carries the target as Wazuh scripts expect it (`data.srcip`,
//! `data.dstuser`) plus Parapet's own fields. A stateful script answers with `check_keys` and the
//! keys it acts on; Parapet answers `continue`, or `abort` when those keys are already in force
//! for another intent, which then shares them ([`crate::holds`]). Rollback runs the script
//! again with `"command":"delete"` and the same parameters, once the last holder lets go.
//!
//! A run that outlives the timeout has its whole process group killed. Exit status and output
//! (bounded) go into the rollback handle or the error, and so into the journal.
//!
//! Up to `concurrency` scripts of an instance run at once; the rest wait their turn, and the
//! wait does not count against a script's `timeout`. Runs on the same `check_keys` keys go one
//! at a time, so the second sees the first's keys in force. A script gets only the environment
//! its configuration gives it (`env`, a plain `PATH` and `LANG`): nothing of Parapet's own, such as
//! another adapter's credential variables.

mod run;

use std::{path::PathBuf, sync::Arc, time::Duration};

use parapet_model::{ActionKind, Invalid, Step, intent::Field};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    Action, Adapter, Error, Result,
    holds::Holds,
    settings::{Setting, duration},
};

/// One exec instance, as the config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    pub name: String,
    /// The script; an absolute path, or relative to the config file.
    pub command: PathBuf,
    /// Passed as `parameters.extra_args`, as Wazuh's `<extra_args>`.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// The action kinds this script performs.
    pub kinds: Vec<ActionKind>,
    /// How long one run may take before its process group is killed; counted from its
    /// start, not from when it was asked for.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Scripts of this instance running at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The script's environment, besides `PATH` and `LANG` (which it may override); nothing
    /// else of Parapet's environment reaches it.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_concurrency() -> usize {
    4
}

impl ExecConfig {
    pub fn check(&self) -> Result<(), Setting> {
        if self.kinds.is_empty() {
            return Err(Setting::new("kinds", "`kinds` names no action kind"));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(Setting::new(
                "concurrency",
                "`concurrency` must be between 1 and 256",
            ));
        }
        use std::os::unix::fs::PermissionsExt;
        let command = self.command.display();
        match std::fs::metadata(&self.command) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(_) => Err(Setting::new(
                "command",
                format!("`{command}` is not an executable file"),
            )),
            Err(e) => Err(Setting::new("command", format!("`{command}`: {e}"))),
        }
    }
}

/// What undoes one exec run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecHandle {
    pub holder: String,
    /// The keys a stateful script said it acts on; `None` for a stateless one.
    pub keys: Option<Vec<String>>,
    /// The `parameters` of the `add` message, given again to `delete`.
    pub parameters: Value,
    /// The run's exit status and output, for the journal.
    pub status: Option<i32>,
    pub output: String,
}

/// An exec instance.
#[derive(Clone)]
pub struct Exec {
    config: Arc<ExecConfig>,
    holds: Arc<Holds>,
    /// One permit per script that may run at once.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Holds list of the keys in force.
const KEYS: &str = "keys";
/// Lock names of the steps being run (never a list of holds).
const RUNNING: &str = "running";

impl Exec {
    pub fn open(config: ExecConfig, state_dir: &std::path::Path) -> Result<Self> {
        config
            .check()
            .map_err(|e| Error::permanent(e.to_string()))?;
        Ok(Self {
            holds: Arc::new(Holds::open(state_dir, "exec")?),
            slots: Arc::new(tokio::sync::Semaphore::new(config.concurrency)),
            config: Arc::new(config),
        })
    }

    fn message(&self, command: &str, parameters: &Value) -> Value {
        json!({
            "version": 1,
            "origin": {"name": "parapet", "module": "wazuh-execd"},
            "command": command,
            "parameters": parameters,
        })
    }

    /// The alert as Wazuh AR scripts read it, with the target where they look for it.
    fn parameters(&self, action: &Action<'_>) -> Value {
        let step = action.step;
        let target = &step.target;
        let mut data = serde_json::Map::new();
        for (k, v) in &target.attributes {
            data.insert(k.clone(), Value::String(v.clone()));
        }
        match target.kind.as_str() {
            "ip" => {
                data.insert("srcip".into(), target.id.clone().into());
            }
            "user" | "account" => {
                data.insert("dstuser".into(), target.id.clone().into());
            }
            _ => {}
        }
        if let Some(ip) = target.attributes.get("ip") {
            data.insert("srcip".into(), ip.clone().into());
        }
        json!({
            "extra_args": self.config.extra_args,
            "alert": {
                "id": action.holder(),
                "rule": {"description": format!("{} {}:{}", step.kind, target.kind, target.id)},
                "data": data,
                "parapet": {
                    "intent_id": action.intent_id.to_string(),
                    "step": action.step_index,
                    "kind": step.kind.as_str(),
                    "target": {"kind": target.kind, "id": target.id, "attributes": target.attributes},
                    "params": step.params,
                    "ttl_seconds": action.ttl.map(|t| t.as_secs()),
                },
            },
            "program": self.config.command.display().to_string(),
        })
    }
}

impl Adapter for Exec {
    type Handle = ExecHandle;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn kinds(&self) -> Vec<ActionKind> {
        self.config.kinds.clone()
    }

    /// The target's address, where a script or request takes it from: the id of an `ip`
    /// target, and the `ip` attribute.
    fn addresses(&self, step: &Step) -> Vec<Field> {
        crate::address::named(step)
    }

    fn validate(&self, _step: &Step) -> Result<(), Invalid> {
        Ok(())
    }

    async fn execute(&self, action: Action<'_>) -> Result<ExecHandle> {
        let holder = action.holder();
        // the same step twice at once would run twice
        let _mine = self.holds.lock(RUNNING, &holder).await;
        if let Some(done) = self.holds.kept(&holder)? {
            // This step already ran.
            return Ok(done);
        }
        let _slot = self.slot().await?;
        let parameters = self.parameters(&action);
        let message = self.message("add", &parameters);
        let holds = &self.holds;
        let mut shared = false;
        // Held from the handshake until the keys are recorded: a second run on the same keys
        // waits, then finds them in force.
        let mut keys_lock = None;
        let outcome = run::run(&self.config, &message, |keys: Vec<String>| {
            let (shared, keys_lock) = (&mut shared, &mut keys_lock);
            async move {
                let entry = keys_entry(&keys);
                *keys_lock = Some(holds.lock(KEYS, &entry).await);
                let taken = holds
                    .get(KEYS, &entry)
                    .is_some_and(|h| !h.holders.is_empty());
                *shared = taken;
                !taken
            }
        })
        .await?;
        let keys = outcome.keys.clone();
        if !shared && !outcome.success() {
            return Err(outcome.failure(&self.config.command));
        }
        let handle = ExecHandle {
            holder: holder.clone(),
            keys: keys.clone(),
            parameters,
            status: outcome.status,
            output: outcome.output,
        };
        if let Some(keys) = &keys {
            holds.hold(KEYS, &keys_entry(keys), &holder, None).await?;
        }
        holds.keep(&holder, &handle).await?;
        drop(keys_lock);
        Ok(handle)
    }

    async fn rollback(&self, handle: ExecHandle) -> Result<()> {
        let _mine = self.holds.lock(RUNNING, &handle.holder).await;
        if self.holds.kept::<ExecHandle>(&handle.holder)?.is_none() {
            // Undone already (or never done by this adapter): nothing to do.
            return Ok(());
        }
        // in the order `execute` takes them: a turn, then the keys
        let _slot = self.slot().await?;
        let _keys = match &handle.keys {
            Some(keys) => Some(self.holds.lock(KEYS, &keys_entry(keys)).await),
            None => None,
        };
        let others = handle.keys.as_ref().is_some_and(|keys| {
            self.holds
                .get(KEYS, &keys_entry(keys))
                .is_some_and(|h| h.holders.iter().any(|x| *x != handle.holder))
        });
        if !others {
            let message = self.message("delete", &handle.parameters);
            let outcome = run::run(&self.config, &message, |_| async { true }).await?;
            if !outcome.success() {
                return Err(outcome.failure(&self.config.command));
            }
        }
        if let Some(keys) = &handle.keys {
            self.holds
                .release(KEYS, &keys_entry(keys), &handle.holder)
                .await?;
        }
        self.holds.forget(&handle.holder).await
    }
}

impl Exec {
    /// Waits for a turn to run a script.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.slots
            .acquire()
            .await
            .map_err(|_| Error::transient("the exec adapter is closing"))
    }
}

fn keys_entry(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_default()
}

#[cfg(test)]
mod tests;
