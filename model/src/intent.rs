//! Intents and their validated parts.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration, time::SystemTime};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Address, Invalid};

/// Bounds on what a submitter may send; larger input is refused, never truncated.
pub mod limits {
    use std::time::Duration;

    pub const MAX_STEPS: usize = 16;
    pub const MAX_ID_LEN: usize = 256;
    pub const MAX_TEXT_LEN: usize = 1024;
    pub const MAX_MAP_ENTRIES: usize = 32;
    pub const MAX_KEY_LEN: usize = 64;
    pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
    /// An OCSF Detection Finding carried as evidence.
    pub const MAX_FINDING_BYTES: usize = 64 * 1024;
}

/// Identifies an intent; a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IntentId(Uuid);

impl IntentId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for IntentId {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Invalid::new("", format!("`{}` is not an intent id", clip(s))))
    }
}

/// How bad the detected activity is; the OCSF severity scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Self::Informational,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "informational",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| {
                Invalid::new(
                    "",
                    format!(
                        "`{}` is not one of informational, low, medium, high, critical",
                        clip(s)
                    ),
                )
            })
    }
}

/// A detection's certainty, a finite number in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Confidence(f64);

impl Confidence {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Confidence {
    type Error = Invalid;

    fn try_from(value: f64) -> Result<Self, Invalid> {
        if (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(Invalid::new("", format!("`{value}` is outside 0..1")))
        }
    }
}

impl From<Confidence> for f64 {
    fn from(c: Confidence) -> f64 {
        c.0
    }
}

/// Name of an action or target kind: lowercase ASCII letters, digits and `_`, starting with a
/// letter, so it is safe in keys, metrics and file names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ActionKind(String);

impl ActionKind {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ActionKind {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        check_name(&s)?;
        Ok(Self(s))
    }
}

impl FromStr for ActionKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::try_from(s.to_owned())
    }
}

impl From<ActionKind> for String {
    fn from(k: ActionKind) -> String {
        k.0
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What fired, how sure it is, and how bad it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub rule_id: String,
    pub severity: Severity,
    pub confidence: Confidence,
    pub title: String,
}

impl Detection {
    pub fn new(
        rule_id: String,
        severity: Severity,
        confidence: Confidence,
        title: String,
    ) -> Result<Self, Invalid> {
        check_id(&rule_id).map_err(|e| e.under("rule_id"))?;
        check_text(&title, limits::MAX_TEXT_LEN).map_err(|e| e.under("title"))?;
        Ok(Self {
            rule_id,
            severity,
            confidence,
            title,
        })
    }
}

/// What an action is aimed at: kind (`ip`, `host`, `user`), identity, and facts about it.
///
/// Every value that is an address (the id, any attribute) is kept in its canonical form
/// ([`Address`]), so the guardrails and the adapters read the same text. The id of an `ip`
/// target and the `ip` attribute must be addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub kind: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
}

/// The target kind whose id is an address.
pub const IP_KIND: &str = "ip";
/// The attribute that holds a target's address.
pub const IP_ATTRIBUTE: &str = "ip";

impl Target {
    pub fn new(
        kind: String,
        mut id: String,
        mut attributes: BTreeMap<String, String>,
    ) -> Result<Self, Invalid> {
        check_name(&kind).map_err(|e| e.under("kind"))?;
        check_id(&id).map_err(|e| e.under("id"))?;
        check_map(&attributes).map_err(|e| e.under("attributes"))?;
        // every value read once: rewritten if it is an address, refused if it must be one
        if let Err(m) = canonical(&mut id)
            && kind == IP_KIND
        {
            return Err(Invalid::new("id", m.to_string()));
        }
        for (name, value) in &mut attributes {
            if let Err(m) = canonical(value)
                && name == IP_ATTRIBUTE
            {
                return Err(Invalid::new(
                    format!("attributes.{IP_ATTRIBUTE}"),
                    m.to_string(),
                ));
            }
        }
        Ok(Self {
            kind,
            id,
            attributes,
        })
    }

    /// Every address the target names, where: the id and each attribute that is one, in
    /// canonical form. The guardrails judge all of them, whichever an adapter acts on.
    pub fn addresses(&self) -> impl Iterator<Item = (Field, Address)> + '_ {
        std::iter::once((Field::Id, &self.id))
            .chain(
                self.attributes
                    .iter()
                    .map(|(k, v)| (Field::Attribute(k.clone()), v)),
            )
            .filter_map(|(field, value)| Some((field, Address::parse(value).ok()?)))
    }

    /// The value of a field, if the target has it.
    pub fn get(&self, field: &Field) -> Option<&str> {
        match field {
            Field::Id => Some(&self.id),
            Field::Attribute(name) => self.attributes.get(name).map(String::as_str),
        }
    }
}

/// Rewrites a value that is an address into its canonical form; what is wrong with it as
/// an address otherwise.
fn canonical(value: &mut String) -> Result<(), crate::address::AddressError> {
    let a = Address::parse(value)?;
    let text = a.to_string();
    if *value != text {
        *value = text;
    }
    Ok(())
}

/// A place in a target that holds a value an adapter may act on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Id,
    Attribute(String),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id => f.write_str("target.id"),
            Self::Attribute(name) => write!(f, "target.attributes.{name}"),
        }
    }
}

/// One action of an intent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    pub kind: ActionKind,
    pub target: Target,
    pub params: BTreeMap<String, String>,
}

impl Step {
    pub fn new(
        kind: ActionKind,
        target: Target,
        params: BTreeMap<String, String>,
    ) -> Result<Self, Invalid> {
        check_map(&params).map_err(|e| e.under("params"))?;
        Ok(Self {
            kind,
            target,
            params,
        })
    }
}

/// A request to act, as received and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub id: IntentId,
    pub idempotency_key: String,
    pub source: String,
    pub detection: Detection,
    pub steps: Vec<Step>,
    #[serde(with = "crate::serde_time::opt_duration")]
    pub ttl: Option<Duration>,
    pub reason: String,
    #[serde(with = "crate::serde_time::time")]
    pub received_at: SystemTime,
    /// The detection platform's OCSF Detection Finding, when it sent one.
    pub finding: Option<crate::Finding>,
    /// The W3C `traceparent` of the submission, when traces are on: later work for the
    /// intent joins that trace.
    pub trace: Option<String>,
}

/// What a submitter asks for, before Parapet gives it an id and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentRequest {
    pub idempotency_key: String,
    pub source: String,
    pub detection: Detection,
    pub steps: Vec<Step>,
    pub ttl: Option<Duration>,
    pub reason: String,
    pub finding: Option<crate::Finding>,
}

impl IntentRequest {
    pub fn new(
        idempotency_key: String,
        source: String,
        detection: Detection,
        steps: Vec<Step>,
        ttl: Option<Duration>,
        reason: String,
    ) -> Result<Self, Invalid> {
        check_id(&idempotency_key).map_err(|e| e.under("idempotency_key"))?;
        check_id(&source).map_err(|e| e.under("source"))?;
        if steps.is_empty() {
            return Err(Invalid::new("steps", "at least one step is required"));
        }
        if steps.len() > limits::MAX_STEPS {
            return Err(Invalid::new(
                "steps",
                format!(
                    "{} steps exceed the limit of {}",
                    steps.len(),
                    limits::MAX_STEPS
                ),
            ));
        }
        if let Some(ttl) = ttl {
            if ttl.is_zero() {
                return Err(Invalid::new("ttl", "must be positive when set"));
            }
            if ttl > limits::MAX_TTL {
                return Err(Invalid::new("ttl", "exceeds the limit of 366 days"));
            }
        }
        check_text(&reason, limits::MAX_TEXT_LEN).map_err(|e| e.under("reason"))?;
        Ok(Self {
            idempotency_key,
            source,
            detection,
            steps,
            ttl,
            reason,
            finding: None,
        })
    }

    /// Attaches the detection platform's OCSF Detection Finding as evidence.
    #[must_use]
    pub fn with_finding(mut self, finding: crate::Finding) -> Self {
        self.finding = Some(finding);
        self
    }

    pub fn into_intent(self, id: IntentId, received_at: SystemTime) -> Intent {
        Intent {
            id,
            idempotency_key: self.idempotency_key,
            source: self.source,
            detection: self.detection,
            steps: self.steps,
            ttl: self.ttl,
            reason: self.reason,
            received_at,
            finding: self.finding,
            trace: None,
        }
    }
}

/// Shortens user input quoted back in an error, so a huge value does not make a huge error.
pub fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn check_name(s: &str) -> Result<(), Invalid> {
    let mut chars = s.chars();
    let ok = s.len() <= limits::MAX_KEY_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else if s.is_empty() {
        Err(Invalid::new("", "is required"))
    } else {
        Err(Invalid::new(
            "",
            format!(
                "`{}` must be lowercase letters, digits and `_`, start with a letter, at most {} long",
                clip(s),
                limits::MAX_KEY_LEN
            ),
        ))
    }
}

fn check_id(s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::new("", "is required"));
    }
    if s.len() > limits::MAX_ID_LEN {
        return Err(Invalid::new(
            "",
            format!("is longer than {} bytes", limits::MAX_ID_LEN),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || invisible(c))
    {
        return Err(Invalid::new(
            "",
            "contains whitespace, control or invisible formatting characters",
        ));
    }
    Ok(())
}

/// Checks free text a person wrote (a reason, a title, a note): at most `max` bytes, no
/// control characters but newline and tab, no bidirectional overrides (which make a journal
/// line read differently from what it says).
pub fn check_text(s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        return Err(Invalid::new("", format!("is longer than {max} bytes")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Invalid::new("", "contains control characters"));
    }
    if let Some(c) = s.chars().find(|c| bidi(*c)) {
        return Err(Invalid::new(
            "",
            format!(
                "contains the bidirectional control character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Bidirectional formatting characters (Unicode's `Bidi_Control`).
fn bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that change how an identifier shows without showing themselves: bidirectional
/// controls, zero-width characters, the byte-order mark, soft hyphen.
fn invisible(c: char) -> bool {
    bidi(c)
        || matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

fn check_map(map: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if map.len() > limits::MAX_MAP_ENTRIES {
        return Err(Invalid::new(
            "",
            format!(
                "{} entries exceed the limit of {}",
                map.len(),
                limits::MAX_MAP_ENTRIES
            ),
        ));
    }
    for (key, value) in map {
        check_name(key).map_err(|e| e.under(&format!("key `{}`", clip(key))))?;
        check_text(value, limits::MAX_ID_LEN).map_err(|e| e.under(key))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
