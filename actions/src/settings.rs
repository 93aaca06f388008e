//! What every adapter's settings share: names fit for files and keys, durations, credentials
//! read from a file or the environment, and the errors that say which setting is wrong.

use std::path::PathBuf;

/// A name fit for handles, files and keys: letters, digits, `_` and the `extra` bytes, at most
/// 64 of them.
pub fn is_word(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.contains(&b))
}

/// Durations written as `30s`, `5m`, `1h`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(D::Error::custom)
    }
}

/// Why an adapter's credential cannot be had. Names where it looked, never what it found.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("set `secret_file` or `secret_env`, not both")]
    Both,
    #[error("set one of `secret_file` and `secret_env`")]
    Missing,
    #[error("secret_file `{}`: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret_env `{0}` is not set")]
    Unset(String),
}

/// Whether a credential's source is set right: one of the file and the variable, or neither
/// when the credential is optional.
pub fn check_secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
    required: bool,
) -> Result<(), SecretError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(SecretError::Both),
        (None, None) if required => Err(SecretError::Missing),
        _ => Ok(()),
    }
}

/// Reads a credential from its file (without the final line break) or environment variable.
pub fn read_secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<String>, SecretError> {
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|source| SecretError::Unreadable {
                path: path.clone(),
                source,
            });
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| SecretError::Unset(var.clone()));
    }
    Ok(None)
}

/// One setting that is wrong: its key, and why (the message names it as the file does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct Setting {
    pub key: &'static str,
    pub problem: String,
}

impl Setting {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
        }
    }
}

/// What is wrong with one adapter's settings.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(transparent)]
    Setting(#[from] Setting),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The kernel would not take the firewall table.
    #[error("cannot install table `{table}`: {error}")]
    Table { table: String, error: crate::Error },
}

/// An `[[adapters]]` entry that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("adapter name `{0}` must be letters, digits, `-` and `_`")]
    Name(String),
    #[error("adapter `{name}`: {problem}")]
    Adapter { name: String, problem: Problem },
}
