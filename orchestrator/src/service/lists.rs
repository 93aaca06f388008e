//! What firewalls and scrapers read: the External Dynamic Lists and the metrics. Their readers
//! cannot present a client certificate or a Parapet identity, so each has credentials of its
//! own (`[edl]`, `[http] metrics_token_file`), kept as digests.

use std::sync::Arc;

use parapet_actions::edl::Edl;
use sha2::{Digest, Sha256};

use super::{Error, Result, Service};
use crate::telemetry::Telemetry;

/// A credential, kept as its SHA-256: compared by digest, never kept or logged in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Digest256([u8; 32]);

impl Digest256 {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }
}

impl std::fmt::Debug for Digest256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest256(..)")
    }
}

/// What the readers of the lists and the metrics must present; open where nothing is set.
#[derive(Debug, Clone, Default)]
pub struct Readers {
    /// The bearer token `/metrics` asks for.
    pub metrics_token: Option<Digest256>,
    /// The bearer token the lists accept.
    pub edl_token: Option<Digest256>,
    /// The Basic credentials the lists accept: user name and password.
    pub edl_basic: Option<(String, Digest256)>,
}

/// What a reader presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Bearer(String),
    Basic { user: String, password: String },
}

/// How a reader who presented nothing acceptable should authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Basic,
}

impl Readers {
    /// The credentials the configuration names, read from their files.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let read = |p: &std::path::Path| -> anyhow::Result<Digest256> {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read `{}`", p.display()))?;
            let secret = text.trim();
            anyhow::ensure!(!secret.is_empty(), "`{}` is empty", p.display());
            Ok(Digest256::of(secret))
        };
        let edl = &config.edl_access;
        Ok(Self {
            metrics_token: config
                .http
                .metrics_token_file
                .as_deref()
                .map(read)
                .transpose()?,
            edl_token: edl.token_file.as_deref().map(read).transpose()?,
            edl_basic: match (&edl.username, &edl.password_file) {
                (Some(user), Some(file)) => Some((user.clone(), read(file)?)),
                _ => None,
            },
        })
    }

    /// How the lists' readers authenticate: Basic when it is configured, else a token.
    pub fn list_scheme(&self) -> Scheme {
        if self.edl_basic.is_some() {
            Scheme::Basic
        } else {
            Scheme::Bearer
        }
    }

    fn may_read_lists(&self, presented: Option<&Credential>) -> Result<()> {
        if self.edl_token.is_none() && self.edl_basic.is_none() {
            return Ok(());
        }
        let accepted = match presented {
            Some(Credential::Bearer(token)) => {
                self.edl_token.as_ref() == Some(&Digest256::of(token))
            }
            Some(Credential::Basic { user, password }) => self
                .edl_basic
                .as_ref()
                .is_some_and(|(u, digest)| u == user && *digest == Digest256::of(password)),
            None => false,
        };
        accepted
            .then_some(())
            .ok_or_else(|| Error::Unauthenticated("credentials required".into()))
    }

    fn may_read_metrics(&self, presented: Option<&Credential>) -> Result<()> {
        match (&self.metrics_token, presented) {
            (None, _) => Ok(()),
            (Some(want), Some(Credential::Bearer(got))) if *want == Digest256::of(got) => Ok(()),
            (Some(_), _) => Err(Error::Unauthenticated("credentials required".into())),
        }
    }
}

/// What is published to readers: the lists, the metrics, and who may read them.
pub struct Published {
    pub edl: Edl,
    pub telemetry: Arc<Telemetry>,
    pub readers: Readers,
    /// The CrowdSec bouncers that read the decisions, when a bouncer file is configured.
    pub bouncers: Option<super::bouncers::Bouncers>,
    /// The sources Parapet pulls decisions from, by name (their refusals are in the status).
    pub upstream: Vec<String>,
}

impl Service {
    /// Publishes the lists and metrics; without, there are none.
    #[must_use]
    pub fn publishing(mut self, published: Published) -> Self {
        self.published = Some(Arc::new(published));
        self
    }

    fn published(&self) -> Result<&Published> {
        self.published.as_deref().ok_or_else(|| Error::NotFound {
            what: "list",
            name: String::new(),
        })
    }

    /// How readers of the lists authenticate.
    pub fn list_scheme(&self) -> Scheme {
        self.published
            .as_ref()
            .map_or(Scheme::Bearer, |p| p.readers.list_scheme())
    }

    /// The names of the lists served.
    pub fn list_names(&self, presented: Option<&Credential>) -> Result<Vec<String>> {
        let p = self.published()?;
        p.readers.may_read_lists(presented)?;
        Ok(p.edl.list_names())
    }

    /// One list, one entry per line: what PAN-OS, FortiGate and Check Point expect.
    pub fn list(&self, presented: Option<&Credential>, name: &str) -> Result<String> {
        let p = self.published()?;
        p.readers.may_read_lists(presented)?;
        p.edl.render(name).ok_or_else(|| Error::NotFound {
            what: "list",
            name: name.to_owned(),
        })
    }

    /// Every metric in the Prometheus text format.
    pub fn metrics(&self, presented: Option<&Credential>) -> Result<String> {
        let p = self.published()?;
        p.readers.may_read_metrics(presented)?;
        Ok(p.telemetry.render())
    }
}
