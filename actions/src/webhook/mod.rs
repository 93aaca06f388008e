//! webhook: any HTTP API, from request templates in the config. One request performs the
//! step, another undoes it; the rollback request may use the execute request's answer
//! (`{{response.id}}` of a created rule). Credentials are read once from a file or an
//! environment variable, used only in headers as `{{secret}}`, and never logged, journaled or
//! put in an error. 429 and 5xx are retried with backoff, honouring `Retry-After`.
//!
//! Two intents whose execute requests go to the same method and URL (one account suspended
//! twice) share it: the request is sent once, and the rollback request when the last lets go.

mod template;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use parapet_model::{ActionKind, Invalid, Step, intent::Field};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use template::{Place, Unfilled, Vars};

use crate::{
    Action, Adapter, Error, Result,
    holds::Holds,
    http::{self, Retry},
    secret::Secrets,
    settings::{Problem, Setting, check_secret, duration, read_secret},
};

/// One webhook instance, as the config file declares it. It names where the credential is,
/// never holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub kinds: Vec<ActionKind>,
    pub execute: RequestTemplate,
    pub rollback: RequestTemplate,
    /// A file holding the credential (its trimmed content).
    pub secret_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    pub secret_env: Option<String>,
    /// All attempts of one request end by then.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Attempts after the first, on 429, 5xx or no answer.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    3
}

/// One request, with `{{placeholders}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as JSON; its strings are filled.
    pub body: Option<Value>,
}

fn default_method() -> String {
    "POST".into()
}

/// What is wrong with a request template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    #[error("`{0}` is not a header name")]
    HeaderName(String),
    #[error(transparent)]
    Placeholder(#[from] template::Placeholder),
    #[error("url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("url `{0}` must be http or https")]
    Scheme(String),
}

impl RequestTemplate {
    fn check(&self, rollback: bool) -> Result<(), TemplateError> {
        Method::from_bytes(self.method.as_bytes())
            .map_err(|_| TemplateError::Method(self.method.clone()))?;
        let mut placed: Vec<(&str, Place)> = vec![(self.url.as_str(), Place::Url)];
        for (name, value) in &self.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| TemplateError::HeaderName(name.clone()))?;
            placed.push((value, Place::Header));
        }
        if let Some(body) = &self.body {
            placed.extend(
                template::strings(body)
                    .into_iter()
                    .map(|s| (s, Place::Body)),
            );
        }
        for (text, place) in placed {
            for name in template::names(text)? {
                template::known(name, place, rollback)?;
            }
        }
        // The URL with every placeholder filled must be http(s).
        let sample = self
            .url
            .split("{{")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once("}}").map_or(part, |p| p.1)
                }
            })
            .collect::<Vec<_>>()
            .join("x");
        let url = Url::parse(&sample).map_err(|e| TemplateError::Url {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TemplateError::Scheme(self.url.clone()));
        }
        Ok(())
    }
}

impl WebhookConfig {
    pub fn check(&self) -> Result<(), Problem> {
        if self.kinds.is_empty() {
            return Err(Setting::new("kinds", "`kinds` names no action kind").into());
        }
        check_secret(&self.secret_file, &self.secret_env, false)?;
        self.execute
            .check(false)
            .map_err(|e| Setting::new("execute", format!("execute: {e}")))?;
        self.rollback
            .check(true)
            .map_err(|e| Setting::new("rollback", format!("rollback: {e}")))?;
        let uses_secret = |t: &RequestTemplate| t.headers.values().any(|v| v.contains("secret"));
        if (uses_secret(&self.execute) || uses_secret(&self.rollback))
            && self.secret_file.is_none()
            && self.secret_env.is_none()
        {
            let problem =
                "the headers use `{{secret}}` but neither `secret_file` nor `secret_env` is set";
            return Err(Setting::new("secret_file", problem).into());
        }
        Ok(())
    }
}

/// What undoes one webhook execution: the values the rollback request is filled from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookHandle {
    pub holder: String,
    /// The execute request's method and URL, shared by intents that send the same.
    pub request: String,
    pub vars: BTreeMap<String, String>,
    /// The execute request's JSON answer.
    pub response: Value,
}

/// A request filled from a template.
struct Request {
    method: Method,
    url: Url,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

/// A webhook instance.
#[derive(Clone)]
pub struct Webhook {
    config: Arc<WebhookConfig>,
    secret: Arc<Option<String>>,
    /// The secret in every form a remote answer might echo it in.
    secrets: Secrets,
    client: reqwest::Client,
    holds: Arc<Holds>,
}

const SENT: &str = "sent";

impl Webhook {
    pub fn open(config: WebhookConfig, state_dir: &Path) -> Result<Self> {
        config
            .check()
            .map_err(|e| Error::permanent(e.to_string()))?;
        let secret = read_secret(&config.secret_file, &config.secret_env)
            .map_err(|e| Error::permanent(e.to_string()))?;
        Ok(Self {
            client: http::client()?,
            holds: Arc::new(Holds::open(state_dir, "webhook")?),
            secrets: Secrets::of(secret.as_deref()),
            secret: Arc::new(secret),
            config: Arc::new(config),
        })
    }

    fn vars(action: &Action<'_>) -> BTreeMap<String, String> {
        let step = action.step;
        let mut vars = BTreeMap::from([
            ("target.id".to_owned(), step.target.id.clone()),
            ("target.kind".to_owned(), step.target.kind.clone()),
            ("intent_id".to_owned(), action.intent_id.to_string()),
            ("step".to_owned(), action.step_index.to_string()),
            ("holder".to_owned(), action.holder()),
            ("kind".to_owned(), step.kind.to_string()),
        ]);
        if let Some(ttl) = action.ttl {
            vars.insert("ttl_seconds".into(), ttl.as_secs().to_string());
        }
        for (k, v) in &step.target.attributes {
            vars.insert(format!("target.attributes.{k}"), v.clone());
        }
        for (k, v) in &step.params {
            vars.insert(format!("params.{k}"), v.clone());
        }
        vars
    }

    /// The request a template makes with these values; the error names the value at fault.
    fn build(&self, template: &RequestTemplate, vars: &Vars) -> Result<Request, Unfilled> {
        let other = |m: String| Unfilled::Template(m);
        let method =
            Method::from_bytes(template.method.as_bytes()).map_err(|e| other(e.to_string()))?;
        let url = template::fill(&template.url, vars, Place::Url)?;
        let url = Url::parse(&url).map_err(|e| other(format!("url: {e}")))?;
        let mut headers = BTreeMap::new();
        for (k, v) in &template.headers {
            let value = template::fill(v, vars, Place::Header)?;
            if value.chars().any(char::is_control) {
                return Err(other(format!(
                    "header `{k}` would hold a control character"
                )));
            }
            headers.insert(k.clone(), value);
        }
        let body = template
            .body
            .as_ref()
            .map(|b| template::fill_json(b, vars))
            .transpose()?;
        Ok(Request {
            method,
            url,
            headers,
            body,
        })
    }

    async fn send(&self, what: &str, request: Request) -> Result<http::Answer> {
        let Request {
            method,
            url,
            headers,
            body,
        } = request;
        let retry = Retry {
            retries: self.config.retries,
            deadline: self.config.timeout,
        };
        http::send(what, retry, &self.secrets, || {
            let mut req = self.client.request(method.clone(), url.clone());
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            if let Some(body) = &body {
                req = req.json(body);
            }
            req
        })
        .await
        .map_err(|e| e.redacted(&self.secrets))
    }
}

impl Adapter for Webhook {
    type Handle = WebhookHandle;

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

    /// A step that lacks what the execute template needs is refused at submission.
    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        let action = Action {
            intent_id: parapet_model::IntentId::from_bytes([0; 16]),
            step_index: 0,
            step,
            ttl: Some(Duration::ZERO),
        };
        let vars = Vars {
            plain: Self::vars(&action),
            response: Value::Null,
            secret: Some(String::new()),
        };
        self.build(&self.config.execute, &vars)
            .map(drop)
            .map_err(|e| {
                let field = e.name().unwrap_or("target").to_owned();
                let how = match e {
                    Unfilled::Missing(_) => "needs",
                    _ => "refuses this step:",
                };
                Invalid::new(
                    field,
                    format!("the `{}` webhook {how} {e}", self.config.name),
                )
            })
    }

    async fn execute(&self, action: Action<'_>) -> Result<WebhookHandle> {
        let holder = action.holder();
        if let Some(done) = self.holds.kept(&holder)? {
            return Ok(done);
        }
        let vars = Vars {
            plain: Self::vars(&action),
            response: Value::Null,
            secret: (*self.secret).clone(),
        };
        let request = self
            .build(&self.config.execute, &vars)
            .map_err(|e| Error::permanent(e.to_string()))?;
        let key = format!("{} {}", request.method, request.url);
        let _one = self.holds.lock(SENT, &key).await;
        let response = match self.holds.get(SENT, &key) {
            // Another intent sent the same; its answer stands for this one too.
            Some(held) if !held.holders.is_empty() => held.data.unwrap_or(Value::Null),
            _ => self.send("execute", request).await?.body,
        };
        let handle = WebhookHandle {
            holder: holder.clone(),
            request: key.clone(),
            vars: vars.plain,
            response: response.clone(),
        };
        self.holds.hold(SENT, &key, &holder, Some(response)).await?;
        self.holds.keep(&holder, &handle).await?;
        Ok(handle)
    }

    async fn rollback(&self, handle: WebhookHandle) -> Result<()> {
        let _one = self.holds.lock(SENT, &handle.request).await;
        if self.holds.kept::<WebhookHandle>(&handle.holder)?.is_none() {
            return Ok(());
        }
        let others = self
            .holds
            .get(SENT, &handle.request)
            .is_some_and(|h| h.holders.iter().any(|x| *x != handle.holder));
        if !others {
            let vars = Vars {
                plain: handle.vars.clone(),
                response: handle.response.clone(),
                secret: (*self.secret).clone(),
            };
            let request = self
                .build(&self.config.rollback, &vars)
                .map_err(|e| Error::permanent(e.to_string()))?;
            self.send("rollback", request).await?;
        }
        self.holds
            .release(SENT, &handle.request, &handle.holder)
            .await?;
        self.holds.forget(&handle.holder).await
    }
}

#[cfg(test)]
mod tests;
