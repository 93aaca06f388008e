//! Adapter instances as the config file declares them: `[[adapters]]` tables, each with a
//! `name` and a `type`, checked without I/O ([`AdapterConfig::check`]) and built with it
//! ([`AdapterConfig::build`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Deserialize;

use crate::{
    DynAdapter, Result, exec, falcon, ldap, nftables,
    settings::{ConfigError, Problem, is_word, read_secret},
    webhook,
};

/// One `[[adapters]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdapterConfig {
    Nftables(nftables::NftablesConfig),
    Exec(exec::ExecConfig),
    Webhook(webhook::WebhookConfig),
    Falcon(falcon::FalconConfig),
    Ldap(ldap::LdapConfig),
}

impl AdapterConfig {
    pub fn name(&self) -> &str {
        match self {
            Self::Nftables(c) => &c.name,
            Self::Exec(c) => &c.name,
            Self::Webhook(c) => &c.name,
            Self::Falcon(c) => &c.name,
            Self::Ldap(c) => &c.name,
        }
    }

    /// The action kinds the instance performs, known before it is built.
    pub fn kinds(&self) -> Vec<parapet_model::ActionKind> {
        match self {
            Self::Nftables(c) => c.block.iter().chain(&c.isolate).cloned().collect(),
            Self::Exec(c) => c.kinds.clone(),
            Self::Webhook(c) => c.kinds.clone(),
            Self::Falcon(c) => c.kinds.clone(),
            Self::Ldap(c) => c.kinds.clone(),
        }
    }

    /// Checks the settings, without I/O; the error names what is wrong.
    pub fn check(&self) -> Result<(), ConfigError> {
        let name = self.name();
        if !is_word(name, b"-") {
            return Err(ConfigError::Name(name.to_owned()));
        }
        match self {
            Self::Nftables(c) => c.check().map_err(Problem::from),
            Self::Exec(c) => c.check().map_err(Problem::from),
            Self::Webhook(c) => c.check(),
            Self::Falcon(c) => c.check(),
            Self::Ldap(c) => c.check(),
        }
        .map_err(|problem| self.misconfigured(problem))
    }

    fn misconfigured(&self, problem: Problem) -> ConfigError {
        ConfigError::Adapter {
            name: self.name().to_owned(),
            problem,
        }
    }

    /// What building this instance would refuse, found without building it or changing
    /// anything: its settings, its credential (read), its script (executable), its firewall
    /// table (checked by the kernel). `parapet policy check` and `serve` both ask this.
    pub async fn preflight(&self) -> Result<(), ConfigError> {
        self.check()?;
        let secret = |file: &Option<PathBuf>, env: &Option<String>| {
            read_secret(file, env).map(drop).map_err(Problem::from)
        };
        match self {
            Self::Nftables(c) => nftables::Nftables::preflight(c).await,
            Self::Exec(_) => Ok(()),
            Self::Webhook(c) => secret(&c.secret_file, &c.secret_env),
            Self::Falcon(c) => secret(&c.secret_file, &c.secret_env),
            Self::Ldap(c) => secret(&c.secret_file, &c.secret_env),
        }
        .map_err(|problem| self.misconfigured(problem))
    }

    /// Makes relative paths in the settings relative to `base` (the config file's directory).
    pub fn rebase(&mut self, base: &Path) {
        let rebase = |p: &mut std::path::PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match self {
            Self::Nftables(_) => {}
            Self::Exec(c) => rebase(&mut c.command),
            Self::Webhook(c) => {
                if let Some(p) = &mut c.secret_file {
                    rebase(p);
                }
            }
            Self::Falcon(c) => {
                if let Some(p) = &mut c.secret_file {
                    rebase(p);
                }
            }
            Self::Ldap(c) => {
                if let Some(p) = &mut c.secret_file {
                    rebase(p);
                }
            }
        }
    }

    /// Builds the instance; `state_dir` is its own directory for what it must remember.
    pub async fn build(&self, state_dir: &Path) -> Result<Arc<dyn DynAdapter>> {
        let built: Arc<dyn DynAdapter> = match self {
            Self::Nftables(c) => Arc::new(nftables::Nftables::open(c.clone(), state_dir).await?),
            Self::Exec(c) => Arc::new(exec::Exec::open(c.clone(), state_dir)?),
            Self::Webhook(c) => Arc::new(webhook::Webhook::open(c.clone(), state_dir)?),
            Self::Falcon(c) => Arc::new(falcon::Falcon::open(c.clone(), state_dir)?),
            Self::Ldap(c) => Arc::new(ldap::Ldap::open(c.clone(), state_dir)?),
        };
        Ok(built)
    }
}
