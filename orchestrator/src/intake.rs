//! Webhook intake: what SIEMs and alerting tools send, as they send it, mapped to intents.
//!
//! An `[[intake]]` table names a preset (the platform's documented payload), the source its
//! intents carry, how its caller authenticates, and a map that overrides how any field is found.
//! A payload is split into items (the alerts of an Alertmanager group or of a Kibana action,
//! else the payload itself); each item maps to one submission or to an error naming the field
//! and the preset, so one bad alert does not drop the good ones of its group.
//!
//! A field's lookup is `/a/b` (a JSON pointer into the item), `=text` (that text), or a name,
//! which each preset reads its own way: an Alertmanager label (then annotation), a Splunk
//! result field, a dotted ECS field of an Elastic alert (flat or nested), a Sentinel alert
//! property (then extended property), a dotted field of a Wazuh alert or a generic payload.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use parapet_model::{Invalid, limits};
use parapet_proto::v1 as pb;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    Alertmanager,
    Splunk,
    Elastic,
    Sentinel,
    Wazuh,
    /// CrowdSec's `http` notification plugin: alerts, each with its decisions.
    Crowdsec,
    Generic,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Splunk => "splunk",
            Self::Elastic => "elastic",
            Self::Sentinel => "sentinel",
            Self::Wazuh => "wazuh",
            Self::Crowdsec => "crowdsec",
            Self::Generic => "generic",
        }
    }
}

/// How an intake's caller proves who it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`, a token of the token file, as for the API.
    #[default]
    Bearer,
    /// The same token in the URL's `token` parameter, for a sender that cannot set a header
    /// (Splunk's webhook alert action); `splunk` only.
    QueryToken,
    /// An HMAC-SHA256 of the timestamp and the body with a shared secret, in
    /// `X-Parapet-Signature` (`sha256=HEX`) and `X-Parapet-Timestamp` (Unix seconds);
    /// `generic` only.
    Hmac,
}

/// The fields of an intent an intake finds in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Detection,
    Action,
    Target,
    TargetKind,
    Severity,
    Confidence,
    Ttl,
    Title,
    Evidence,
    IdempotencyKey,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detection => "detection",
            Self::Action => "action",
            Self::Target => "target",
            Self::TargetKind => "target_kind",
            Self::Severity => "severity",
            Self::Confidence => "confidence",
            Self::Ttl => "ttl",
            Self::Title => "title",
            Self::Evidence => "evidence",
            Self::IdempotencyKey => "idempotency_key",
        }
    }
}

/// Where a field's value is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Lookup {
    /// A JSON pointer into the item (`/labels/target`).
    Pointer(String),
    /// This text (`=block_ip`).
    Constant(String),
    /// A name the preset reads its own way.
    Name(String),
}

impl TryFrom<String> for Lookup {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is empty: give `/json/pointer`, `=text` or a field name".into());
        }
        Ok(match s.as_bytes()[0] {
            b'/' => Self::Pointer(s),
            b'=' => Self::Constant(s[1..].to_owned()),
            _ => Self::Name(s),
        })
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pointer(p) => write!(f, "pointer `{p}`"),
            Self::Constant(c) => write!(f, "`={c}`"),
            Self::Name(n) => write!(f, "`{n}`"),
        }
    }
}

/// One `[[intake]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intake {
    /// The path segment: `POST /v1/ingest/{name}`.
    pub name: String,
    pub preset: Preset,
    /// The intents' source; with authentication, the caller's identity must be allowed it.
    pub source: String,
    #[serde(default)]
    pub auth: Auth,
    /// The file holding the HMAC secret (`auth = "hmac"`).
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub map: BTreeMap<Field, Lookup>,
}

impl Intake {
    /// What the config may not hold: a name that is not a path segment, an authentication
    /// the preset does not allow, an HMAC without a secret.
    pub fn check(&self) -> Result<(), String> {
        if !parapet_actions::settings::is_word(&self.name, b"-") {
            return Err(format!(
                "intake `{}`: name must be letters, digits, `_` or `-` (at most 64)",
                self.name
            ));
        }
        match (self.auth, self.preset) {
            (Auth::QueryToken, p) if p != Preset::Splunk => Err(format!(
                "intake `{}`: auth = \"query_token\" is for the splunk preset only (a token in a \
                 URL ends up in logs); use a bearer token",
                self.name
            )),
            (Auth::Hmac, p) if p != Preset::Generic => Err(format!(
                "intake `{}`: auth = \"hmac\" is for the generic preset only",
                self.name
            )),
            (Auth::Hmac, _) if self.secret_file.is_none() => Err(format!(
                "intake `{}`: auth = \"hmac\" needs secret_file",
                self.name
            )),
            _ => Ok(()),
        }
    }
}

/// What became of one item of a payload.
#[derive(Debug)]
pub enum Item {
    Submit(Box<pb::SubmitIntentRequest>),
    /// Nothing to do (a resolved alert), and why.
    Skip(&'static str),
    /// The item cannot be mapped.
    Invalid(Invalid),
}

/// Alerts one payload may carry: each is a submission, and a sender is answered only once
/// all are decided.
pub const MAX_ITEMS: usize = 1000;

/// CrowdSec's alerts (a list, as its `http` plugin's default format sends them, or one) as one
/// item per decision: the decision, with its alert beside it under `alert`.
fn crowdsec_items(payload: &Value) -> Vec<Value> {
    let alerts: Vec<&Value> = match payload {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let mut out = Vec::new();
    for alert in alerts {
        let mut context = alert.clone();
        if let Some(o) = context.as_object_mut() {
            o.remove("decisions");
            o.remove("events");
        }
        for d in alert
            .get("decisions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut item = d.clone();
            if let Some(o) = item.as_object_mut() {
                o.insert("alert".into(), context.clone());
            }
            out.push(item);
        }
    }
    out
}

/// The items of `payload`, each mapped: in order, one per alert (or one for the payload).
/// `Err` when the payload has no items where the preset expects them, or too many.
pub fn map(intake: &Intake, payload: &Value) -> Result<Vec<Item>, Invalid> {
    let owned;
    let items: Vec<&Value> = match intake.preset {
        Preset::Crowdsec => {
            owned = crowdsec_items(payload);
            if owned.is_empty() {
                return Err(Invalid::new(
                    "decisions",
                    "crowdsec: no alert in the payload carries a decision",
                ));
            }
            owned.iter().collect()
        }
        Preset::Alertmanager => payload
            .get("alerts")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Invalid::new(
                    "alerts",
                    "alertmanager: the payload has no `alerts` list (Alertmanager's webhook \
                     payload version 4)",
                )
            })?
            .iter()
            .collect(),
        Preset::Elastic => match payload.get("alerts").and_then(Value::as_array) {
            Some(alerts) => alerts.iter().collect(),
            None => vec![payload],
        },
        Preset::Wazuh => vec![payload.get("all_fields").unwrap_or(payload)],
        _ => vec![payload],
    };
    if items.len() > MAX_ITEMS {
        return Err(Invalid::new(
            "alerts",
            format!(
                "{}: {} alerts in one payload; at most {MAX_ITEMS} (Alertmanager: \
                 `max_alerts` on the webhook)",
                intake.preset.as_str(),
                items.len()
            ),
        ));
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |e: Invalid| match intake.preset {
                Preset::Alertmanager | Preset::Elastic if payload.get("alerts").is_some() => {
                    e.under(&format!("alerts[{i}]"))
                }
                Preset::Crowdsec => e.under(&format!("decisions[{i}]")),
                _ => e,
            };
            if intake.preset == Preset::Alertmanager
                && item.get("status").and_then(Value::as_str) == Some("resolved")
            {
                return Item::Skip("resolved");
            }
            match Mapper::new(intake, item, payload).request() {
                Ok(r) => Item::Submit(Box::new(r)),
                Err(e) => Item::Invalid(at(e)),
            }
        })
        .collect())
}

struct Mapper<'a> {
    intake: &'a Intake,
    item: &'a Value,
    payload: &'a Value,
}

impl<'a> Mapper<'a> {
    fn new(intake: &'a Intake, item: &'a Value, payload: &'a Value) -> Self {
        Self {
            intake,
            item,
            payload,
        }
    }

    fn preset(&self) -> &'static str {
        self.intake.preset.as_str()
    }

    /// A field's value: the map's lookup, else the preset's; `None` when absent.
    fn find(&self, field: Field) -> Option<String> {
        if let Some(lookup) = self.intake.map.get(&field) {
            return self.lookup(lookup);
        }
        self.default(field)
    }

    fn missing(&self, field: Field, how: &str) -> Invalid {
        let how = match self.intake.map.get(&field) {
            Some(lookup) => format!("the map's {lookup} finds nothing"),
            None => format!("{how}; or set it in [intake.map] {}", field.as_str()),
        };
        Invalid::new(field.as_str(), format!("{}: {how}", self.preset()))
    }

    fn require(&self, field: Field, how: &str) -> Result<String, Invalid> {
        self.find(field).ok_or_else(|| self.missing(field, how))
    }

    fn lookup(&self, lookup: &Lookup) -> Option<String> {
        match lookup {
            Lookup::Pointer(p) => text(self.item.pointer(p)?),
            Lookup::Constant(c) => Some(c.clone()),
            Lookup::Name(n) => self.name(n),
        }
    }

    /// A name as the preset reads it.
    fn name(&self, name: &str) -> Option<String> {
        let item = self.item;
        let within = |key: &str| item.get(key).and_then(|v| v.get(name)).and_then(text);
        match self.intake.preset {
            Preset::Alertmanager => within("labels").or_else(|| within("annotations")),
            Preset::Splunk => within("result").or_else(|| item.get(name).and_then(text)),
            // `ExtendedProperties` is an object, or a JSON text of one (the SecurityAlert table)
            Preset::Sentinel => {
                item.get(name)
                    .and_then(text)
                    .or_else(|| match item.get("ExtendedProperties")? {
                        Value::String(s) => text(serde_json::from_str::<Value>(s).ok()?.get(name)?),
                        _ => within("ExtendedProperties"),
                    })
            }
            // a Kibana action's alert, then the body around it (the rule, a constant action)
            Preset::Elastic => dotted(item, name)
                .or_else(|| dotted(self.payload, name))
                .and_then(text),
            Preset::Wazuh | Preset::Crowdsec | Preset::Generic => dotted(item, name).and_then(text),
        }
    }

    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.name(n))
    }

    /// The preset's own way to find a field.
    fn default(&self, field: Field) -> Option<String> {
        use Field::*;
        use Preset::*;
        let item = self.item;
        match (self.intake.preset, field) {
            (Alertmanager, Detection) => {
                let labels = item.get("labels")?;
                text(
                    labels
                        .get("detection")
                        .or_else(|| labels.get("alertname"))?,
                )
            }
            (Alertmanager, Title) => self
                .first(&["summary"])
                .or_else(|| text(item.get("labels")?.get("alertname")?)),
            (Alertmanager, Evidence) => text(item.get("generatorURL")?),
            (Alertmanager, IdempotencyKey) => {
                let fingerprint = text(item.get("fingerprint")?)?;
                let starts = text(item.get("startsAt")?)?;
                Some(format!("{fingerprint}:{starts}"))
            }
            (Splunk, Detection) => self
                .first(&["detection"])
                .or_else(|| text(item.get("search_name")?)),
            (Splunk, Title) => text(item.get("search_name")?),
            (Splunk, Evidence) => text(item.get("results_link")?),
            (Splunk, IdempotencyKey) => text(item.get("sid")?),
            (Elastic, Detection) => self.first(&[
                "detection",
                "kibana.alert.rule.rule_id",
                "kibana.alert.rule.uuid",
                "rule.id",
            ]),
            (Elastic, Severity) => self.first(&["severity", "kibana.alert.severity"]),
            (Elastic, Confidence) => self.first(&["confidence"]).or_else(|| {
                let score: f64 = self.name("kibana.alert.risk_score")?.parse().ok()?;
                Some((score / 100.0).to_string())
            }),
            (Elastic, Title) => self.first(&["kibana.alert.rule.name", "rule.name"]),
            (Elastic, Evidence) => self.first(&["kibana.alert.reason", "kibana.alert.url"]),
            (Elastic, IdempotencyKey) => self.first(&["kibana.alert.uuid", "_id"]),
            (Sentinel, Detection) => self.first(&["detection", "AlertType"]),
            (Sentinel, Severity) => self.first(&["Severity"]),
            (Sentinel, Confidence) => self.first(&["confidence", "ConfidenceScore"]),
            (Sentinel, Title) => self.first(&["AlertDisplayName"]),
            (Sentinel, Evidence) => self.first(&["AlertLink"]),
            (Sentinel, IdempotencyKey) => self.first(&["SystemAlertId"]),
            (Wazuh, Detection) => self
                .first(&["detection"])
                .or_else(|| Some(format!("wazuh.{}", self.name("rule.id")?))),
            (Wazuh, Severity) => self.first(&["severity"]).or_else(|| {
                // Wazuh's rule levels: 0–3 low, 4–7 medium, 8–11 high, 12–15 critical
                let level: u32 = self.name("rule.level")?.parse().ok()?;
                Some(
                    match level {
                        0..=3 => "low",
                        4..=7 => "medium",
                        8..=11 => "high",
                        _ => "critical",
                    }
                    .to_owned(),
                )
            }),
            (Wazuh, Title) => self.first(&["rule.description"]),
            (Wazuh, Evidence) => self.first(&["full_log"]),
            (Wazuh, IdempotencyKey) => self.first(&["id"]),
            (Crowdsec, Detection) => self.first(&["detection"]).or_else(|| {
                let scenario = self.name("scenario")?;
                if scenario.chars().any(|c| c.is_whitespace() || c == '\'') {
                    Some(format!("crowdsec.{}", self.name("origin")?))
                } else {
                    Some(format!("crowdsec.{scenario}"))
                }
            }),
            (Crowdsec, Action) => match self.name("type")?.to_ascii_lowercase().as_str() {
                "ban" => Some("block_ip".into()),
                _ => None,
            },
            (Crowdsec, Target) => self.first(&["value"]),
            (Crowdsec, TargetKind) => {
                let scope = self.name("scope")?.to_ascii_lowercase();
                (scope == "ip" || scope == "range").then(|| "ip".to_owned())
            }
            (Crowdsec, Ttl) => {
                let left = crate::sources::go_duration(&self.name("duration")?)?;
                Some(left.as_secs().to_string())
            }
            (Crowdsec, Title) => self.first(&["alert.message", "scenario"]),
            (Crowdsec, IdempotencyKey) => self.first(&["uuid", "id"]).or_else(|| {
                let alert = self.first(&["alert.uuid", "alert.id"])?;
                Some(format!("{alert}:{}", self.name("value")?))
            }),
            (_, Target) => self.target(),
            (_, TargetKind) => self.first(&["target_kind"]),
            (_, field) => self.name(field.as_str()),
        }
    }

    /// The target: a field named `target`, else where the preset keeps an address, a host or
    /// a user, by the target kind.
    fn target(&self) -> Option<String> {
        if let Some(t) = self.name("target") {
            return Some(t);
        }
        let kind = self.target_kind().ok()?;
        let names: &[&str] = match (self.intake.preset, kind.as_str()) {
            (Preset::Alertmanager | Preset::Generic, _) => &[],
            (Preset::Splunk, "ip") => &["src_ip", "src"],
            (Preset::Splunk, "host") => &["dest_host", "host"],
            (Preset::Splunk, "user") => &["user"],
            (Preset::Elastic, "ip") => &["source.ip"],
            (Preset::Elastic, "host") => &["host.name"],
            (Preset::Elastic, "user") => &["user.name"],
            (Preset::Wazuh, "ip") => &["data.srcip"],
            (Preset::Wazuh, "host") => &["agent.name"],
            (Preset::Wazuh, "user") => &["data.srcuser", "data.dstuser"],
            (Preset::Sentinel, kind) => return self.sentinel_entity(kind),
            _ => &[],
        };
        self.first(names)
    }

    /// The first of a Sentinel alert's entities of the kind (`Entities` is a list, or a JSON
    /// text of one, as the SecurityAlert table keeps it).
    fn sentinel_entity(&self, kind: &str) -> Option<String> {
        let entities = self.item.get("Entities")?;
        let parsed;
        let list = match entities {
            Value::String(s) => {
                parsed = serde_json::from_str::<Value>(s).ok()?;
                parsed.as_array()?
            }
            v => v.as_array()?,
        };
        let (entity_type, field) = match kind {
            "ip" => ("ip", "Address"),
            "host" => ("host", "HostName"),
            "user" => ("account", "Name"),
            _ => return None,
        };
        list.iter()
            .filter(|e| {
                e.get("Type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(entity_type))
            })
            .find_map(|e| {
                let value = text(e.get(field)?)?;
                match (kind, e.get("UPNSuffix").and_then(Value::as_str)) {
                    ("user", Some(suffix)) if !suffix.is_empty() => {
                        Some(format!("{value}@{suffix}"))
                    }
                    _ => Some(value),
                }
            })
    }

    fn action(&self) -> Result<String, Invalid> {
        let how = match self.intake.preset {
            Preset::Alertmanager => "the alert has no label `action`",
            Preset::Crowdsec => "the decision is not a `ban`",
            _ => "the payload has no field `action`",
        };
        self.require(Field::Action, how)
    }

    /// The target kind: found, else the action's usual kind.
    fn target_kind(&self) -> Result<String, Invalid> {
        if let Some(k) = self.find(Field::TargetKind) {
            return Ok(k);
        }
        let action = self.action()?;
        usual_kind(&action).map(str::to_owned).ok_or_else(|| {
            self.missing(
                Field::TargetKind,
                &format!("`{action}` has no usual target kind"),
            )
        })
    }

    fn request(&self) -> Result<pb::SubmitIntentRequest, Invalid> {
        use Field::*;
        let detection = match self.intake.preset {
            Preset::Alertmanager => self.require(
                Detection,
                "the alert has neither label `detection` nor `alertname`",
            )?,
            _ => self.require(Detection, "the payload names no detection rule")?,
        };
        let action = self.action()?;
        let kind = self.target_kind()?;
        let target = self.require(Target, &format!("no `target` and no {kind} in the payload"))?;
        let severity = self.require(Severity, "no severity")?;
        let severity = severity_of(&severity).ok_or_else(|| {
            Invalid::new(
                "severity",
                format!(
                    "{}: `{severity}` is not a severity (informational, low, medium, high, critical)",
                    self.preset()
                ),
            )
        })?;
        let confidence = self.require(Confidence, "no confidence")?;
        let confidence = confidence_of(&confidence).ok_or_else(|| {
            Invalid::new(
                "confidence",
                format!(
                    "{}: `{confidence}` is not a confidence between 0 and 1",
                    self.preset()
                ),
            )
        })?;
        let ttl = match self.find(Ttl) {
            None => None,
            Some(t) => Some(ttl_of(&t).ok_or_else(|| {
                Invalid::new(
                    "ttl",
                    format!(
                        "{}: `{t}` is not a duration (`4h`, `30m`, `3600s`, `3600`)",
                        self.preset()
                    ),
                )
            })?),
        };
        let key = self.require(IdempotencyKey, "nothing identifies the alert for retries")?;
        let title = self.find(Title).unwrap_or_default();
        let evidence = self.find(Evidence).unwrap_or_default();
        let reason = match (title.is_empty(), evidence.is_empty()) {
            (false, false) => format!("{}: {title} ({evidence})", self.preset()),
            (false, true) => format!("{}: {title}", self.preset()),
            (true, false) => format!("{}: {evidence}", self.preset()),
            (true, true) => format!("{} alert", self.preset()),
        };
        Ok(pb::SubmitIntentRequest {
            idempotency_key: idempotency_key(&self.intake.name, &key),
            source: self.intake.source.clone(),
            detection: Some(pb::Detection {
                rule_id: detection,
                severity: severity as i32,
                confidence,
                title: clip(&title, limits::MAX_TEXT_LEN),
            }),
            steps: vec![pb::Step {
                kind: action,
                target: Some(pb::Target {
                    kind,
                    id: target,
                    attributes: Default::default(),
                }),
                params: Default::default(),
            }],
            ttl: ttl.map(Into::into),
            reason: clip(&reason, limits::MAX_TEXT_LEN),
            ..Default::default()
        })
    }
}

/// The kind of target an action usually takes.
pub fn usual_kind(action: &str) -> Option<&'static str> {
    match action {
        "block_ip" => Some("ip"),
        "isolate_host" => Some("host"),
        "revoke_credentials" | "disable_user" => Some("user"),
        _ => None,
    }
}

/// A JSON scalar as text; nothing for objects, lists and null.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A dotted name in a document whose keys may themselves hold dots (ECS documents come flat,
/// nested, or both): `kibana.alert.rule.name` is tried whole, then split at each dot.
fn dotted<'v>(doc: &'v Value, name: &str) -> Option<&'v Value> {
    let object = doc.as_object()?;
    if let Some(v) = object.get(name) {
        return Some(v);
    }
    let mut at = name.len();
    while let Some(dot) = name[..at].rfind('.') {
        if let Some(inner) = object.get(&name[..dot])
            && let Some(v) = dotted(inner, &name[dot + 1..])
        {
            return Some(v);
        }
        at = dot;
    }
    None
}

fn severity_of(s: &str) -> Option<pb::Severity> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "informational" | "info" | "debug" | "none" => pb::Severity::Informational,
        "low" => pb::Severity::Low,
        "medium" | "moderate" | "warning" | "warn" => pb::Severity::Medium,
        "high" | "error" | "major" => pb::Severity::High,
        "critical" | "crit" | "fatal" | "emergency" => pb::Severity::Critical,
        _ => return None,
    })
}

/// A confidence from 0 to 1, or a percentage (`93%`).
fn confidence_of(s: &str) -> Option<f64> {
    let s = s.trim();
    let value = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => s.parse::<f64>().ok()?,
    };
    (0.0..=1.0).contains(&value).then_some(value)
}

/// `4h`, `30m`, `3600s`, or a number of seconds.
fn ttl_of(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    humantime::parse_duration(s).ok()
}

/// The idempotency key of an item: the intake's name and the platform's key, which makes a
/// platform's retries and re-fires one intent; a key too long for the journal, or with
/// whitespace in it, by its digest.
fn idempotency_key(intake: &str, key: &str) -> String {
    let plain = format!("{intake}:{key}");
    let fits = plain.len() <= limits::MAX_ID_LEN
        && !plain.chars().any(|c| c.is_whitespace() || c.is_control());
    if fits {
        plain
    } else {
        format!("{intake}:b3:{}", blake3::hash(key.as_bytes()).to_hex())
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests;
