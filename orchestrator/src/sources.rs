//! Sources Parapet pulls intents from, rather than being sent them.
//!
//! - `crowdsec`: a CrowdSec Local API, read as a bouncer reads it. Each new decision becomes
//!   an intent through the same submission as any other (so the guardrails judge
//!   `0.0.0.0/0` and a million-hour ban as they judge anything), each deleted decision a
//!   rollback of its intent. A refused decision stays in the journal as a denied intent, with
//!   the guardrails' reasons; `status` lists the latest.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use parapet_model::{IntentRequest, limits};
use parapet_proto::v1 as pb;
use serde::Deserialize;

use crate::{
    error::Error,
    filter::IntentFilter,
    lifecycle::State,
    service::{
        Caller, Change, Identity, Role, Service,
        intents::{List, Submit},
        rollbacks::Rollback,
    },
};

/// One `[[sources.crowdsec]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdSecSource {
    /// The intents' source (and the actor of their rollbacks).
    #[serde(default = "CrowdSecSource::default_name")]
    pub name: String,
    /// The Local API, `http://127.0.0.1:8080`.
    pub url: String,
    /// The bouncer key (`cscli bouncers add parapet`), from a file or the environment.
    pub api_key_file: Option<PathBuf>,
    pub api_key_env: Option<String>,
    #[serde(
        default = "CrowdSecSource::default_interval",
        deserialize_with = "parapet_actions::settings::duration::deserialize"
    )]
    pub interval: Duration,
    /// The severity and confidence its decisions carry (CrowdSec's have none).
    #[serde(default = "CrowdSecSource::default_severity")]
    pub severity: String,
    #[serde(default = "CrowdSecSource::default_confidence")]
    pub confidence: f64,
    /// Scenario → detection; otherwise `crowdsec.` + the scenario (or, when the scenario is
    /// free text, as a manual `cscli` decision's is, + the origin).
    #[serde(default)]
    pub detections: BTreeMap<String, String>,
}

impl CrowdSecSource {
    fn default_name() -> String {
        "crowdsec".into()
    }

    fn default_interval() -> Duration {
        Duration::from_secs(10)
    }

    fn default_severity() -> String {
        "high".into()
    }

    fn default_confidence() -> f64 {
        0.9
    }

    /// What the config may not hold.
    pub fn check(&self) -> Result<(), String> {
        let at = |e: String| format!("sources.crowdsec `{}`: {e}", self.name);
        if !parapet_actions::settings::is_word(&self.name, b"-.") {
            return Err(at("name must be letters, digits, `_`, `-` or `.`".into()));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(at(format!("url `{}` is not http(s)", self.url)));
        }
        if self.api_key_file.is_none() && self.api_key_env.is_none() {
            return Err(at("api_key_file or api_key_env is required".into()));
        }
        if self.interval < Duration::from_secs(1) {
            return Err(at("interval must be at least 1s".into()));
        }
        if severity(&self.severity).is_none() {
            return Err(at(format!("severity `{}` is not one", self.severity)));
        }
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(at("confidence must be within 0..1".into()));
        }
        Ok(())
    }

    fn key(&self) -> anyhow::Result<String> {
        parapet_actions::settings::read_secret(&self.api_key_file, &self.api_key_env)
            .map_err(|e| anyhow::anyhow!("sources.crowdsec `{}`: {e}", self.name))?
            .ok_or_else(|| anyhow::anyhow!("sources.crowdsec `{}`: no api key", self.name))
    }

    /// The detection a decision's scenario maps to.
    fn detection(&self, d: &LapiDecision) -> String {
        if let Some(mapped) = self.detections.get(&d.scenario) {
            return mapped.clone();
        }
        let word = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '\'');
        if word(&d.scenario) {
            format!("crowdsec.{}", d.scenario)
        } else {
            format!("crowdsec.{}", d.origin)
        }
    }
}

fn severity(s: &str) -> Option<pb::Severity> {
    pb::Severity::from_str_name(&format!("SEVERITY_{}", s.to_ascii_uppercase()))
}

/// A decision as LAPI writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct LapiDecision {
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub scope: String,
    pub value: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub scenario: String,
}

#[derive(Debug, Default, Deserialize)]
struct Stream {
    new: Option<Vec<LapiDecision>>,
    deleted: Option<Vec<LapiDecision>>,
}

/// A Go duration (`3h59m59.59s`, `-1h2m`), as LAPI writes them; `None` for one gone by.
pub fn go_duration(text: &str) -> Option<Duration> {
    if text.starts_with('-') {
        return None;
    }
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if (c == 'm' || c == 'u' || c == 'µ' || c == 'n') && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
    }
    if !number.is_empty() {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The pull of one Local API, until Parapet stops.
pub struct Puller {
    source: CrowdSecSource,
    key: String,
    http: reqwest::Client,
    service: Service,
}

impl Puller {
    pub fn new(source: CrowdSecSource, service: Service) -> anyhow::Result<Self> {
        let key = source.key()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("parapet/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            source,
            key,
            http,
            service,
        })
    }

    /// The identity its submissions and rollbacks are journaled under.
    fn caller(&self, role: Role) -> Caller {
        Caller {
            identity: Some(Arc::new(Identity {
                name: self.source.name.clone(),
                roles: [role].into(),
                detections: None,
                action_kinds: None,
                max_tier: None,
            })),
            peer: None,
        }
    }

    pub async fn run(self) {
        let stop = self.service.stopping();
        let mut startup = true;
        loop {
            // a stop does not wait for LAPI: what was taken is journaled, the rest comes again
            let pulled = tokio::select! {
                () = stop.cancelled() => return,
                pulled = self.pull(startup) => pulled,
            };
            match pulled {
                Ok(()) => startup = false,
                Err(e) => tracing::warn!(
                    source = %self.source.name, error = %e,
                    "cannot read CrowdSec's decisions; trying again"
                ),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.source.interval) => {}
            }
        }
    }

    async fn pull(&self, startup: bool) -> anyhow::Result<()> {
        let url = format!(
            "{}/v1/decisions/stream?startup={startup}",
            self.source.url.trim_end_matches('/')
        );
        let answer = self
            .http
            .get(&url)
            .header("X-Api-Key", &self.key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.without_url()))?;
        let status = answer.status();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        let stream: Stream = serde_json::from_slice(&answer.bytes().await?)?;
        let new = stream.new.unwrap_or_default();
        if startup {
            self.reconcile(&new).await?;
        }
        for d in &new {
            self.take(d).await;
        }
        for d in stream.deleted.unwrap_or_default() {
            self.undo(&d).await;
        }
        Ok(())
    }

    fn key_of(&self, d: &LapiDecision) -> String {
        format!("crowdsec:{}:{}", self.source.name, d.id)
    }

    /// A new decision: an intent, judged by the guardrails like any other.
    async fn take(&self, d: &LapiDecision) {
        let request = match self.request(d) {
            Ok(r) => r,
            Err(e) => {
                // never an intent, so not in the journal: logged and counted
                tracing::warn!(source = %self.source.name, decision = d.id, value = %d.value, error = %e, "CrowdSec decision not taken");
                self.service.count_refused(e.code(), "upstream_decision");
                return;
            }
        };
        let submit = Submit {
            intent: request,
            wait: false,
            trace: opentelemetry::Context::new(),
        };
        match self
            .service
            .submit(&self.caller(Role::Detector), submit)
            .await
        {
            Ok(s) if s.record.state == State::Denied => tracing::info!(
                source = %self.source.name, decision = d.id, value = %d.value,
                intent = %s.record.intent.id, "CrowdSec decision refused by the guardrails"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                source = %self.source.name, decision = d.id, error = %e, "CrowdSec decision not taken"
            ),
        }
    }

    fn request(&self, d: &LapiDecision) -> Result<IntentRequest, Error> {
        if !d.kind.eq_ignore_ascii_case("ban") {
            return Err(Error::invalid(
                "type",
                format!("`{}` decisions are not taken: ban only", d.kind),
            ));
        }
        if !(d.scope.eq_ignore_ascii_case("ip") || d.scope.eq_ignore_ascii_case("range")) {
            return Err(Error::invalid(
                "scope",
                format!("scope `{}`: Ip and Range only", d.scope),
            ));
        }
        let ttl = go_duration(&d.duration).ok_or_else(|| {
            Error::invalid("duration", format!("`{}` is no duration left", d.duration))
        })?;
        let req = pb::SubmitIntentRequest {
            idempotency_key: self.key_of(d),
            source: self.source.name.clone(),
            detection: Some(pb::Detection {
                rule_id: self.source.detection(d),
                severity: severity(&self.source.severity).unwrap_or(pb::Severity::High) as i32,
                confidence: self.source.confidence,
                title: parapet_model::intent::clip(&d.scenario).to_owned(),
            }),
            steps: vec![pb::Step {
                kind: "block_ip".into(),
                target: Some(pb::Target {
                    kind: "ip".into(),
                    id: d.value.clone(),
                    attributes: Default::default(),
                }),
                params: Default::default(),
            }],
            // the policy bounds a TTL; a longer one is refused by name, as any caller's
            ttl: Some(crate::api::convert::pb_duration(ttl)),
            reason: crate::intake::clip(
                &format!(
                    "CrowdSec decision {} ({}, {})",
                    d.id,
                    d.origin,
                    parapet_model::intent::clip(&d.scenario)
                ),
                limits::MAX_TEXT_LEN,
            ),
            ..Default::default()
        };
        Ok(crate::api::convert::intent_request(req)?)
    }

    /// A deleted decision: its intent rolled back, if it acted.
    async fn undo(&self, d: &LapiDecision) {
        let Ok(Some(id)) = self
            .service
            .intent_by_key(&self.source.name, &self.key_of(d))
        else {
            return;
        };
        self.roll_back(id, &format!("CrowdSec deleted decision {}", d.id))
            .await;
    }

    async fn roll_back(&self, id: parapet_model::IntentId, reason: &str) {
        let rollback = Rollback {
            intent_id: id.to_string(),
            change: Change {
                reason: reason.to_owned(),
                requested_by: self.source.name.clone(),
            },
            wait: false,
        };
        match self
            .service
            .rollback(&self.caller(Role::Operator), &rollback)
            .await
        {
            Ok(_) | Err(Error::FailedPrecondition(_)) => {}
            Err(e) => {
                tracing::warn!(source = %self.source.name, intent = %id, error = %e, "cannot roll back")
            }
        }
    }

    /// At start-up LAPI sends what is in force, not what was deleted meanwhile: an active
    /// intent of this source whose decision is not among them was deleted while Parapet did
    /// not look, and is rolled back.
    async fn reconcile(&self, in_force: &[LapiDecision]) -> anyhow::Result<()> {
        let keys: std::collections::BTreeSet<String> =
            in_force.iter().map(|d| self.key_of(d)).collect();
        let mut page_token = String::new();
        loop {
            let list = List {
                filter: IntentFilter {
                    states: vec![State::Active],
                    source: Some(self.source.name.clone()),
                    ..Default::default()
                },
                page_size: 1000,
                page_token,
            };
            let page = self
                .service
                .list_intents(&self.caller(Role::Operator), &list)?;
            for r in &page.intents {
                if !keys.contains(&r.intent.idempotency_key) {
                    self.roll_back(
                        r.intent.id,
                        "CrowdSec deleted the decision while Parapet was down",
                    )
                    .await;
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            page_token = page.next_page_token;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn go_durations_read_as_lapi_writes_them() {
        assert_eq!(go_duration("1h59m59.5980938s").unwrap().as_secs(), 7199);
        assert_eq!(go_duration("4h").unwrap().as_secs(), 14_400);
        assert_eq!(
            go_duration("999999h59m59.598091543s").unwrap().as_secs() / 3600,
            999_999
        );
        assert_eq!(go_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(go_duration("250ms").unwrap().as_millis(), 250);
        assert!(go_duration("-1h2m").is_none());
        assert!(go_duration("12").is_none());
        assert!(go_duration("3x").is_none());
    }
}
