//! CrowdStrike Falcon host containment: `isolate_host` contains the host through the Falcon
//! API (`POST /devices/entities/devices-actions/v2?action_name=contain`), rollback lifts the
//! containment (`action_name=lift_containment`). Authentication is OAuth2 client credentials
//! (`POST /oauth2/token`); the token is kept until shortly before it expires and fetched again
//! on a 401.
//!
//! Before containing, the host's state is read (`GET /devices/entities/devices/v2`). A host
//! someone had already contained is recorded as such and is not lifted by Parapet's rollback:
//! rollback restores the host as Parapet found it. Two intents on one host share the
//! containment ([`crate::holds`]).
//!
//! The host is named by the target's `falcon_aid` attribute, or by the target id itself when it
//! is a Falcon device id (32 hexadecimal digits).

use std::{path::Path, sync::Arc, time::Duration};

use parapet_model::{ActionKind, Invalid, Step};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::{sync::Mutex, time::Instant};

use crate::{
    Action, Adapter, Error, Result,
    holds::Holds,
    http::{self, Answer, Retry},
    secret::Secrets,
    settings::{Problem, Setting, check_secret, duration, read_secret},
};

/// One Falcon instance, as the config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalconConfig {
    pub name: String,
    /// The API of the tenant's cloud, e.g. `https://api.eu-1.crowdstrike.com`.
    pub base_url: String,
    pub client_id: String,
    /// A file holding the client secret, or an environment variable.
    pub secret_file: Option<std::path::PathBuf>,
    pub secret_env: Option<String>,
    #[serde(default = "default_kinds")]
    pub kinds: Vec<ActionKind>,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_kinds() -> Vec<ActionKind> {
    ["isolate_host"]
        .iter()
        .filter_map(|k| k.parse().ok())
        .collect()
}
fn default_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_retries() -> u32 {
    3
}

impl FalconConfig {
    pub fn check(&self) -> Result<(), Problem> {
        let url = self.base()?;
        if !matches!(url.scheme(), "http" | "https") {
            let problem = format!("base_url `{}` must be https", self.base_url);
            return Err(Setting::new("base_url", problem).into());
        }
        if self.client_id.is_empty() {
            return Err(Setting::new("client_id", "`client_id` is empty").into());
        }
        check_secret(&self.secret_file, &self.secret_env, true)?;
        if self.kinds.is_empty() {
            return Err(Setting::new("kinds", "`kinds` names no action kind").into());
        }
        Ok(())
    }

    /// The base URL, ending in `/` so paths join under it.
    fn base(&self) -> Result<Url, Setting> {
        let text = format!("{}/", self.base_url.trim_end_matches('/'));
        Url::parse(&text)
            .map_err(|e| Setting::new("base_url", format!("base_url `{}`: {e}", self.base_url)))
    }
}

/// What undoes one containment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FalconHandle {
    pub device_id: String,
    pub holder: String,
}

/// The host's state before Parapet's first hold, kept with the hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Before {
    status: String,
}

/// A Falcon instance.
#[derive(Clone)]
pub struct Falcon {
    config: Arc<FalconConfig>,
    base: Url,
    secret: Arc<String>,
    /// The client secret and every token fetched, in every form an answer might echo them.
    secrets: Secrets,
    client: reqwest::Client,
    token: Arc<Mutex<Option<(String, Instant)>>>,
    holds: Arc<Holds>,
}

const HOSTS: &str = "hosts";

impl Falcon {
    pub fn open(config: FalconConfig, state_dir: &Path) -> Result<Self> {
        config
            .check()
            .map_err(|e| Error::permanent(e.to_string()))?;
        let secret = read_secret(&config.secret_file, &config.secret_env)
            .map_err(|e| Error::permanent(e.to_string()))?
            .unwrap_or_default();
        Ok(Self {
            base: config.base().map_err(|e| Error::permanent(e.to_string()))?,
            client: http::client()?,
            holds: Arc::new(Holds::open(state_dir, "falcon")?),
            token: Arc::default(),
            secrets: Secrets::of(Some(&secret)),
            secret: Arc::new(secret),
            config: Arc::new(config),
        })
    }

    fn retry(&self) -> Retry {
        Retry {
            retries: self.config.retries,
            deadline: self.config.timeout,
        }
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| Error::permanent(format!("base_url: {e}")))
    }

    /// A token, fetched when there is none or it is about to expire.
    async fn token(&self, fresh: bool) -> Result<String> {
        let mut token = self.token.lock().await;
        if let Some((t, until)) = token.as_ref()
            && !fresh
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = self.url("oauth2/token")?;
        let form = [
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
        ];
        // the token itself comes in this answer: read it before it is redacted
        let answer = http::send("falcon token", self.retry(), &Secrets::new(), || {
            self.client.post(url.clone()).form(&form)
        })
        .await
        .map_err(|e| e.redacted(&self.secrets))?;
        let access = answer.body["access_token"]
            .as_str()
            .ok_or_else(|| Error::permanent("falcon token: the answer has no access_token"))?
            .to_owned();
        self.secrets.add(&access);
        let life = answer.body["expires_in"].as_u64().unwrap_or(1799);
        // A minute early, so a token never expires on its way.
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(60));
        *token = Some((access.clone(), until));
        Ok(access)
    }

    /// One API call with a bearer token, fetched again once if the API says it is no good.
    async fn api(
        &self,
        what: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer> {
        let mut fresh = false;
        loop {
            let token = self.token(fresh).await?;
            let answer = http::call(what, self.retry(), &self.secrets, || {
                make(&self.client).bearer_auth(&token)
            })
            .await
            .map_err(|e| e.redacted(&self.secrets))?;
            if answer.status == StatusCode::UNAUTHORIZED && !fresh {
                fresh = true;
                continue;
            }
            if answer.status.is_success() {
                return Ok(answer);
            }
            let error = match api_errors(&answer.body) {
                Some(m) => Error::permanent(format!("{what}: {}: {m}", answer.status)),
                None => http::refused(what, &answer),
            };
            return Err(error.redacted(&self.secrets));
        }
    }

    async fn status(&self, device: &str) -> Result<String> {
        let mut url = self.url("devices/entities/devices/v2")?;
        url.query_pairs_mut().append_pair("ids", device);
        let answer = self.api("falcon device", |c| c.get(url.clone())).await?;
        answer.body["resources"][0]["status"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::permanent(format!("falcon device: `{device}` is not known")))
    }

    async fn act(&self, action_name: &str, device: &str) -> Result<()> {
        let mut url = self.url("devices/entities/devices-actions/v2")?;
        url.query_pairs_mut()
            .append_pair("action_name", action_name);
        let body = json!({"ids": [device]});
        self.api(&format!("falcon {action_name}"), |c| {
            c.post(url.clone()).json(&body)
        })
        .await
        .map(drop)
    }

    fn device(step: &Step) -> Result<String, Invalid> {
        let (field, id) = match step.target.attributes.get("falcon_aid") {
            Some(aid) => ("target.attributes.falcon_aid", aid),
            None => ("target.id", &step.target.id),
        };
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(id.to_ascii_lowercase())
        } else {
            Err(Invalid::new(
                field,
                format!(
                    "`{}` is not a Falcon device id (32 hexadecimal digits); set the target's `falcon_aid` attribute",
                    parapet_model::intent::clip(id)
                ),
            ))
        }
    }
}

/// The messages of a Falcon error answer (`{"errors": [{"code": 404, "message": ".."}]}`).
fn api_errors(body: &Value) -> Option<String> {
    let messages: Vec<&str> = body["errors"]
        .as_array()?
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

impl Adapter for Falcon {
    type Handle = FalconHandle;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn kinds(&self) -> Vec<ActionKind> {
        self.config.kinds.clone()
    }

    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        Self::device(step).map(drop)
    }

    async fn execute(&self, action: Action<'_>) -> Result<FalconHandle> {
        let device = Self::device(action.step).map_err(|e| Error::permanent(e.to_string()))?;
        let handle = FalconHandle {
            device_id: device.clone(),
            holder: action.holder(),
        };
        let _one = self.holds.lock(HOSTS, &device).await;
        if let Some(held) = self.holds.get(HOSTS, &device) {
            // Already contained by Parapet, for this step or another: share it.
            if !held.holders.is_empty() {
                self.holds
                    .hold(HOSTS, &device, &handle.holder, None)
                    .await?;
                return Ok(handle);
            }
        }
        let status = self.status(&device).await?;
        if !matches!(status.as_str(), "contained" | "containment_pending") {
            self.act("contain", &device).await?;
        }
        let before = serde_json::to_value(Before { status })
            .map_err(|e| Error::permanent(format!("cannot encode host state: {e}")))?;
        self.holds
            .hold(HOSTS, &device, &handle.holder, Some(before))
            .await?;
        Ok(handle)
    }

    async fn rollback(&self, handle: FalconHandle) -> Result<()> {
        let _one = self.holds.lock(HOSTS, &handle.device_id).await;
        let Some(held) = self.holds.get(HOSTS, &handle.device_id) else {
            return Ok(());
        };
        if !held.holders.contains(&handle.holder) {
            return Ok(());
        }
        let last = held.holders.iter().all(|h| *h == handle.holder);
        let before: Option<Before> = held.data.and_then(|d| serde_json::from_value(d).ok());
        let ours = before
            .is_some_and(|b| !matches!(b.status.as_str(), "contained" | "containment_pending"));
        if last && ours {
            self.act("lift_containment", &handle.device_id).await?;
        }
        self.holds
            .release(HOSTS, &handle.device_id, &handle.holder)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests;
