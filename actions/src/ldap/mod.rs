//! LDAP: `revoke_credentials` disables a directory account, and rollback restores it exactly
//! as it was. Two styles:
//!
//! - `active_directory`: sets the ACCOUNTDISABLE bit (2) of `userAccountControl`; the value
//!   before is restored.
//! - `openldap`: sets the ppolicy overlay's `pwdAccountLockedTime` to `000001010000Z` (locked
//!   until an administrator unlocks it); the values before (usually none) are restored.
//!
//! The account's state before Parapet's first hold is recorded durably with the hold
//! ([`crate::holds`]) *before* the account is changed, so a crash in between cannot leave
//! Parapet believing the disabled state was the original. Two intents on one account share
//! the change; the last rollback restores.
//!
//! The account is found by the target id in `user_attribute` (`sAMAccountName` or `uid` by
//! default) under `base_dn`; the id is escaped for the filter.

use std::{collections::HashSet, path::Path, sync::Arc, time::Duration};

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry, ldap_escape};
use parapet_model::{ActionKind, Invalid, Step, intent::clip};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::secret::Secrets;
use crate::{
    Action, Adapter, Error, Result,
    holds::Holds,
    settings::{Problem, Setting, check_secret, duration, read_secret},
};

/// How the directory marks an account disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    ActiveDirectory,
    Openldap,
}

const UAC: &str = "userAccountControl";
const ACCOUNTDISABLE: u32 = 2;
const LOCKED: &str = "pwdAccountLockedTime";
/// ppolicy's "locked until an administrator unlocks it".
const LOCKED_FOR_GOOD: &str = "000001010000Z";

/// One LDAP instance, as the config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    pub name: String,
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    pub style: Style,
    pub bind_dn: String,
    /// A file holding the bind password, or an environment variable.
    pub secret_file: Option<std::path::PathBuf>,
    pub secret_env: Option<String>,
    /// Where accounts are searched for (subtree).
    pub base_dn: String,
    /// The attribute the target id is matched against [default: `sAMAccountName` or `uid`].
    pub user_attribute: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    #[serde(default = "default_kinds")]
    pub kinds: Vec<ActionKind>,
    /// All of one execution or rollback (connect, bind, search, modify).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_kinds() -> Vec<ActionKind> {
    ["revoke_credentials"]
        .iter()
        .filter_map(|k| k.parse().ok())
        .collect()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl LdapConfig {
    pub fn check(&self) -> Result<(), Problem> {
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            let problem = format!("url `{}` must start with ldap:// or ldaps://", self.url);
            return Err(Setting::new("url", problem).into());
        }
        check_secret(&self.secret_file, &self.secret_env, true)?;
        if self.base_dn.is_empty() || self.bind_dn.is_empty() {
            return Err(Setting::new("base_dn", "`base_dn` and `bind_dn` must be set").into());
        }
        if self.kinds.is_empty() {
            return Err(Setting::new("kinds", "`kinds` names no action kind").into());
        }
        Ok(())
    }

    fn user_attribute(&self) -> &str {
        match (&self.user_attribute, self.style) {
            (Some(a), _) => a,
            (None, Style::ActiveDirectory) => "sAMAccountName",
            (None, Style::Openldap) => "uid",
        }
    }

    fn state_attribute(&self) -> &'static str {
        match self.style {
            Style::ActiveDirectory => UAC,
            Style::Openldap => LOCKED,
        }
    }
}

/// What undoes one revocation: the account. The state restored is the one the first holder
/// found, kept with the hold; `before` is what this execution found, for the journal's reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LdapHandle {
    pub dn: String,
    pub holder: String,
    #[serde(default)]
    pub before: Vec<String>,
}

/// An LDAP instance.
#[derive(Clone)]
pub struct Ldap {
    config: Arc<LdapConfig>,
    password: Arc<String>,
    /// The bind password in every form a server's diagnostic might echo it in.
    secrets: Secrets,
    holds: Arc<Holds>,
}

const ACCOUNTS: &str = "accounts";

/// One bound connection.
struct Session(ldap3::Ldap);

impl Ldap {
    pub fn open(config: LdapConfig, state_dir: &Path) -> Result<Self> {
        config
            .check()
            .map_err(|e| Error::permanent(e.to_string()))?;
        let password = read_secret(&config.secret_file, &config.secret_env)
            .map_err(|e| Error::permanent(e.to_string()))?
            .unwrap_or_default();
        Ok(Self {
            holds: Arc::new(Holds::open(state_dir, "ldap")?),
            secrets: Secrets::of(Some(&password)),
            password: Arc::new(password),
            config: Arc::new(config),
        })
    }

    async fn session(&self) -> Result<Session> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.timeout)
            .set_starttls(self.config.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| classify("connect", e))?;
        ldap3::drive!(conn);
        ldap.simple_bind(&self.config.bind_dn, &self.password)
            .await
            .and_then(ldap3::LdapResult::success)
            .map_err(|e| classify("bind", e))?;
        Ok(Session(ldap))
    }

    /// The account's DN and the values of its state attribute.
    async fn find(&self, s: &mut Session, user: &str) -> Result<(String, Vec<String>)> {
        let filter = format!("({}={})", self.config.user_attribute(), ldap_escape(user));
        let attr = self.config.state_attribute();
        let (entries, _) =
            s.0.search(&self.config.base_dn, Scope::Subtree, &filter, vec![attr])
                .await
                .and_then(ldap3::SearchResult::success)
                .map_err(|e| classify("search", e))?;
        let mut found: Vec<SearchEntry> = entries.into_iter().map(SearchEntry::construct).collect();
        match found.len() {
            1 => {
                let e = found.remove(0);
                let values = e.attrs.get(attr).cloned().unwrap_or_default();
                Ok((e.dn, values))
            }
            0 => Err(Error::permanent(format!(
                "no account `{}` under `{}`",
                clip(user),
                self.config.base_dn
            ))),
            n => Err(Error::permanent(format!(
                "{n} accounts match `{}` under `{}`; refusing to guess",
                clip(user),
                self.config.base_dn
            ))),
        }
    }

    async fn set(&self, s: &mut Session, dn: &str, values: &[String]) -> Result<()> {
        let attr = self.config.state_attribute();
        let values: HashSet<&str> = values.iter().map(String::as_str).collect();
        // Replace with no values removes the attribute, and is no error if it is absent.
        s.0.modify(dn, vec![Mod::Replace(attr, values)])
            .await
            .and_then(ldap3::LdapResult::success)
            .map_err(|e| classify("modify", e))
            .map(drop)
    }

    fn timed_out(&self) -> Error {
        Error::transient(format!(
            "ldap: no answer within {}",
            humantime::format_duration(self.config.timeout)
        ))
    }

    /// The state attribute's values for a disabled account, given its values now.
    fn disabled(&self, now: &[String]) -> Result<Vec<String>> {
        match self.config.style {
            Style::Openldap => Ok(vec![LOCKED_FOR_GOOD.to_owned()]),
            Style::ActiveDirectory => {
                let flags: u32 = match now.first() {
                    Some(v) => v.trim().parse().map_err(|_| {
                        Error::permanent(format!("{UAC} `{}` is not a number", clip(v)))
                    })?,
                    // A directory that keeps no flags: a normal account.
                    None => 512,
                };
                Ok(vec![(flags | ACCOUNTDISABLE).to_string()])
            }
        }
    }
}

/// Whether a retry can help, from the LDAP result code (RFC 4511): busy (51), unavailable (52),
/// other transport trouble; everything the server refuses is permanent.
fn classify(what: &str, e: LdapError) -> Error {
    match e {
        LdapError::LdapResult { result } => {
            let message = format!("ldap {what}: result {} {}", result.rc, result.text.trim());
            if matches!(result.rc, 51 | 52 | 3 | 80) {
                Error::transient(message)
            } else {
                Error::permanent(message)
            }
        }
        LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => {
            Error::permanent(format!("ldap {what}: {e}"))
        }
        other => Error::transient(format!("ldap {what}: {other}")),
    }
}

impl Adapter for Ldap {
    type Handle = LdapHandle;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn kinds(&self) -> Vec<ActionKind> {
        self.config.kinds.clone()
    }

    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        match step.target.kind.as_str() {
            "user" | "account" => Ok(()),
            other => Err(Invalid::new(
                "target.kind",
                format!("the LDAP adapter acts on `user` or `account` targets, not `{other}`"),
            )),
        }
    }

    async fn execute(&self, action: Action<'_>) -> Result<LdapHandle> {
        let holder = action.holder();
        let work = async {
            let mut s = self.session().await?;
            let (dn, _) = self.find(&mut s, &action.step.target.id).await?;
            // The state is read again once no other intent works on the account.
            let _one = self.holds.lock(ACCOUNTS, &dn).await;
            let (dn, now) = self.find(&mut s, &action.step.target.id).await?;
            let handle = LdapHandle {
                dn: dn.clone(),
                holder: holder.clone(),
                before: now.clone(),
            };
            let held_before = self
                .holds
                .get(ACCOUNTS, &dn)
                .is_some_and(|h| h.holders.contains(&holder));
            // The state before goes to disk before the account changes; only the first hold
            // keeps it.
            self.holds
                .hold(ACCOUNTS, &dn, &holder, Some(json!({ "values": now })))
                .await?;
            let disabled = self.disabled(&now)?;
            if let Err(e) = self.set(&mut s, &dn, &disabled).await {
                if !held_before {
                    // Failed: this step will not be rolled back, so it must not hold.
                    let _ = self.holds.release(ACCOUNTS, &dn, &holder).await;
                }
                return Err(e);
            }
            let _ = s.0.unbind().await;
            Ok(handle)
        };
        tokio::time::timeout(self.config.timeout, work)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
            .map_err(|e| e.redacted(&self.secrets))
    }

    async fn rollback(&self, handle: LdapHandle) -> Result<()> {
        let _one = self.holds.lock(ACCOUNTS, &handle.dn).await;
        let Some(held) = self.holds.get(ACCOUNTS, &handle.dn) else {
            return Ok(());
        };
        if !held.holders.contains(&handle.holder) {
            return Ok(());
        }
        if held.holders.iter().all(|h| *h == handle.holder) {
            let before: Vec<String> = held
                .data
                .as_ref()
                .and_then(|d| d.get("values"))
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                .unwrap_or_default();
            let work = async {
                let mut s = self.session().await?;
                self.set(&mut s, &handle.dn, &before).await?;
                let _ = s.0.unbind().await;
                Ok::<(), Error>(())
            };
            tokio::time::timeout(self.config.timeout, work)
                .await
                .unwrap_or_else(|_| Err(self.timed_out()))
                .map_err(|e| e.redacted(&self.secrets))?;
        }
        self.holds
            .release(ACCOUNTS, &handle.dn, &handle.holder)
            .await
            .map(drop)
    }
}
