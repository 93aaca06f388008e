//! The policy file: its TOML schema, validation, and errors that point at a line.
//!
//! Parsing happens in two passes: serde reads the raw schema (unknown keys are errors, so a typo
//! cannot silently disable a guardrail), then [`Policy::from_toml`] checks what serde cannot
//! (duplicates, ranges, ATT&CK ids) while it still knows where each value came from.

use std::{collections::BTreeMap, fmt, ops::Range, time::Duration};

use ipnet::IpNet;
use parapet_model::{
    ActionKind, Address, Confidence, Severity,
    address::{SPECIAL_NAMES, Special},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::rules::{
    Approvals, Budget, CircuitBreaker, Fleet, Freeze, ProtectedRule, RateLimit, RawFreeze, Verdicts,
};

/// A detection × action kind's autonomy: how far Parapet may go without a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Auto,
    Approval,
    Shadow,
    Forbidden,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Approval => "approval",
            Self::Shadow => "shadow",
            Self::Forbidden => "forbidden",
        }
    }
}

/// What happens to an intent whose detection is not in the inventory. There is deliberately no
/// `auto`: an undocumented detection never acts alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownDetection {
    Approval,
    Deny,
}

/// A place in the policy file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    fn of(text: &str, span: Range<usize>) -> Self {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Self { line, column }
    }
}

/// A policy file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(
                f,
                "line {}, column {}: {}",
                at.line, at.column, self.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

/// One detection of the inventory and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionPolicy {
    pub id: String,
    pub description: String,
    /// MITRE ATT&CK technique ids, e.g. `T1071.001`.
    pub attack: Vec<String>,
    pub data_sources: Vec<String>,
    pub owner: String,
    /// How often the detection is expected to fire; a baseline to spot a misfiring rule.
    pub expected_alerts_per_day: Option<f64>,
    /// Below these Parapet does not act alone on this detection: `auto` becomes `approval`.
    pub min_severity: Option<Severity>,
    pub min_confidence: Option<Confidence>,
    /// Below these Parapet does not act on this detection at all, not even with approval.
    pub approval_min_severity: Option<Severity>,
    pub approval_min_confidence: Option<Confidence>,
    /// Autonomy per action kind; a kind not listed is `forbidden`.
    pub actions: BTreeMap<ActionKind, Tier>,
    /// Where each action kind was granted, so a later check can point at it.
    action_locations: BTreeMap<ActionKind, Location>,
}

/// A validated policy. Build it with [`Policy::from_toml`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub(crate) digest: String,
    /// The file as loaded, for those who ask what decided.
    text: std::sync::Arc<str>,
    pub unknown_detection: UnknownDetection,
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// Special-purpose ranges the policy lets be acted on, by name or block.
    pub allow_special: Vec<AllowSpecial>,
    /// Parapet's own addresses (where it listens), each with what it is: never acted on.
    /// Given by the server, not the file; not part of the digest.
    pub own: Vec<(IpNet, String)>,
    /// Shadow mode for everything: decide and record, never act.
    pub shadow: bool,
    pub detections: BTreeMap<String, DetectionPolicy>,
    pub protected: Vec<ProtectedRule>,
    pub budgets: Vec<Budget>,
    pub fleet: Fleet,
    pub rate_limits: Vec<RateLimit>,
    pub freezes: Vec<Freeze>,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub approvals: Approvals,
    pub verdicts: Verdicts,
    /// Which adapter instances perform each action kind; a kind without a route goes to the
    /// one instance that performs it.
    pub routes: BTreeMap<ActionKind, Vec<String>>,
    route_locations: BTreeMap<ActionKind, Location>,
}

/// A route names one adapter instance or several (the step is done on each).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    detections: Vec<RawDetection>,
    #[serde(default)]
    protected: Vec<Spanned<ProtectedRule>>,
    #[serde(default)]
    budgets: Vec<Spanned<Budget>>,
    #[serde(default)]
    fleet: Fleet,
    #[serde(default)]
    rate_limits: Vec<RateLimit>,
    #[serde(default)]
    freezes: Vec<Spanned<RawFreeze>>,
    circuit_breaker: Option<Spanned<CircuitBreaker>>,
    #[serde(default)]
    approvals: Approvals,
    #[serde(default)]
    verdicts: Verdicts,
    #[serde(default)]
    routes: BTreeMap<Spanned<ActionKind>, RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default = "default_unknown")]
    unknown_detection: UnknownDetection,
    min_prefix_v4: Option<Spanned<u8>>,
    min_prefix_v6: Option<Spanned<u8>>,
    #[serde(default)]
    allow_special: Vec<Spanned<String>>,
    #[serde(default)]
    shadow: bool,
}

impl Default for RawDefaults {
    fn default() -> Self {
        Self {
            unknown_detection: default_unknown(),
            min_prefix_v4: None,
            min_prefix_v6: None,
            allow_special: Vec::new(),
            shadow: false,
        }
    }
}

/// A special-purpose range a policy allows: all of one kind (`link_local`), or a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowSpecial {
    Named(&'static str),
    Block(IpNet),
}

/// An `allow_special` entry that names neither a special-purpose range nor a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is neither a special-purpose range ({names}) nor an address block", names = SPECIAL_NAMES.join(", "))]
pub struct NotSpecial(pub String);

impl AllowSpecial {
    fn parse(text: &str) -> Result<Self, NotSpecial> {
        if let Some(name) = SPECIAL_NAMES.iter().find(|n| **n == text) {
            return Ok(Self::Named(name));
        }
        Address::parse(text)
            .map(|a| Self::Block(a.net()))
            .map_err(|_| NotSpecial(text.to_owned()))
    }

    /// Whether this lets `net` (which overlaps `special`) be acted on.
    pub fn allows(&self, special: &Special, net: &IpNet) -> bool {
        match self {
            Self::Named(name) => *name == special.name,
            Self::Block(block) => block.contains(net),
        }
    }
}

fn default_unknown() -> UnknownDetection {
    UnknownDetection::Approval
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetection {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    attack: Vec<Spanned<String>>,
    #[serde(default)]
    data_sources: Vec<String>,
    #[serde(default)]
    owner: String,
    expected_alerts_per_day: Option<Spanned<f64>>,
    min_severity: Option<Severity>,
    min_confidence: Option<Confidence>,
    approval_min_severity: Option<Severity>,
    approval_min_confidence: Option<Confidence>,
    #[serde(default)]
    actions: BTreeMap<Spanned<ActionKind>, Tier>,
}

impl Policy {
    /// Parses and validates a policy file's text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
            location: e.span().map(|s| Location::of(text, s)),
            message: e.message().trim_end().to_owned(),
        })?;
        let at = |span: Range<usize>, message: String| PolicyError {
            location: Some(Location::of(text, span)),
            message,
        };

        let prefix = |value: &Option<Spanned<u8>>, default: u8, max: u8, name: &str| match value {
            None => Ok(default),
            Some(v) if *v.get_ref() <= max => Ok(*v.get_ref()),
            Some(v) => Err(at(v.span(), format!("`{name}` must be at most {max}"))),
        };
        let min_prefix_v4 = prefix(&raw.defaults.min_prefix_v4, 24, 32, "min_prefix_v4")?;
        let min_prefix_v6 = prefix(&raw.defaults.min_prefix_v6, 48, 128, "min_prefix_v6")?;
        let allow_special = raw
            .defaults
            .allow_special
            .iter()
            .map(|a| AllowSpecial::parse(a.get_ref()).map_err(|e| at(a.span(), e.to_string())))
            .collect::<Result<_, _>>()?;

        let mut detections = BTreeMap::new();
        for d in raw.detections {
            let id = d.id.get_ref();
            if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(at(
                    d.id.span(),
                    format!("detection id `{id}` must be non-empty without spaces"),
                ));
            }
            if detections.contains_key(id) {
                return Err(at(d.id.span(), format!("detection `{id}` is listed twice")));
            }
            for technique in &d.attack {
                if !is_attack_id(technique.get_ref()) {
                    return Err(at(
                        technique.span(),
                        format!(
                            "`{}` is not an ATT&CK technique id like `T1071` or `T1071.001`",
                            technique.get_ref()
                        ),
                    ));
                }
            }
            if let Some(rate) = &d.expected_alerts_per_day
                && !(rate.get_ref().is_finite() && *rate.get_ref() >= 0.0)
            {
                return Err(at(
                    rate.span(),
                    "`expected_alerts_per_day` must be zero or more".into(),
                ));
            }
            let action_locations = d
                .actions
                .keys()
                .map(|k| (k.get_ref().clone(), Location::of(text, k.span())))
                .collect();
            let policy = DetectionPolicy {
                id: id.clone(),
                description: d.description,
                attack: d.attack.into_iter().map(Spanned::into_inner).collect(),
                data_sources: d.data_sources,
                owner: d.owner,
                expected_alerts_per_day: d.expected_alerts_per_day.map(Spanned::into_inner),
                min_severity: d.min_severity,
                min_confidence: d.min_confidence,
                approval_min_severity: d.approval_min_severity,
                approval_min_confidence: d.approval_min_confidence,
                actions: d
                    .actions
                    .into_iter()
                    .map(|(k, t)| (k.into_inner(), t))
                    .collect(),
                action_locations,
            };
            detections.insert(policy.id.clone(), policy);
        }

        let mut protected = Vec::new();
        for rule in raw.protected {
            if rule.get_ref().is_empty() {
                return Err(at(
                    rule.span(),
                    format!(
                        "protection `{}` matches nothing: set ids, cidrs, tags or attributes",
                        rule.get_ref().name
                    ),
                ));
            }
            protected.push(rule.into_inner().canonical());
        }
        let mut budgets: Vec<Budget> = Vec::new();
        for budget in raw.budgets {
            let span = budget.span();
            budget
                .get_ref()
                .check()
                .map_err(|e| at(span.clone(), e.to_string()))?;
            if budgets.iter().any(|b| b.name == budget.get_ref().name) {
                return Err(at(
                    span,
                    format!("budget `{}` is listed twice", budget.get_ref().name),
                ));
            }
            budgets.push(budget.into_inner());
        }
        let freezes = raw
            .freezes
            .into_iter()
            .map(|f| {
                let span = f.span();
                f.into_inner()
                    .resolve()
                    .map_err(|e| at(span, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let circuit_breaker = match raw.circuit_breaker {
            Some(cb) if !(0.0..=1.0).contains(&cb.get_ref().max_failure_rate) => {
                return Err(at(
                    cb.span(),
                    "`max_failure_rate` must be between 0 and 1".into(),
                ));
            }
            cb => cb.map(Spanned::into_inner),
        };

        let route_locations = raw
            .routes
            .keys()
            .map(|k| (k.get_ref().clone(), Location::of(text, k.span())))
            .collect();
        let routes = raw
            .routes
            .into_iter()
            .map(|(k, r)| {
                let names = match r {
                    RawRoute::One(n) => vec![n],
                    RawRoute::Many(n) => n,
                };
                (k.into_inner(), names)
            })
            .collect();

        Ok(Self {
            digest: format!("sha256:{:x}", Sha256::digest(text.as_bytes())),
            text: text.into(),
            unknown_detection: raw.defaults.unknown_detection,
            min_prefix_v4,
            min_prefix_v6,
            allow_special,
            own: Vec::new(),
            shadow: raw.defaults.shadow,
            detections,
            protected,
            budgets,
            fleet: raw.fleet,
            rate_limits: raw.rate_limits,
            freezes,
            circuit_breaker,
            approvals: raw.approvals,
            verdicts: raw.verdicts,
            routes,
            route_locations,
        })
    }

    /// The same policy, knowing Parapet's own addresses (its listeners'), which it then never
    /// lets be acted on: blocking them would cut Parapet off from those who could undo it.
    #[must_use]
    pub fn with_own_addresses(mut self, own: Vec<(IpNet, String)>) -> Self {
        self.own = own
            .into_iter()
            .map(|(net, what)| (Address::from_net(net).net(), what))
            .collect();
        self
    }

    /// The adapter instances routed to perform `kind`, if the policy names them.
    pub fn route(&self, kind: &ActionKind) -> Option<&[String]> {
        self.routes.get(kind).map(Vec::as_slice)
    }

    /// The longest budget window: usage older than this no longer matters.
    pub fn longest_window(&self) -> Duration {
        self.budgets
            .iter()
            .filter_map(|b| b.window.as_ref())
            .map(|w| w.0)
            .max()
            .unwrap_or_default()
    }

    /// `sha256:` and the hex SHA-256 of the file's bytes: `sha256sum` of the file gives the same.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The policy file as it was loaded: the bytes [`Self::digest`] is of.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks that every route names adapters that can carry it and that every action kind the
    /// policy grants has an adapter, pointing at the first that does not. `resolve` answers for
    /// the configured adapters (see `parapet_actions::registry::resolve_names`): a policy that
    /// allows what no adapter does is a mistake to catch at load, not at the first intent.
    pub fn check_adapters<E: std::fmt::Display>(
        &self,
        resolve: impl Fn(&ActionKind, Option<&[String]>) -> Result<(), E>,
    ) -> Result<(), PolicyError> {
        for (kind, names) in &self.routes {
            resolve(kind, Some(names)).map_err(|e| PolicyError {
                location: self.route_locations.get(kind).copied(),
                message: e.to_string(),
            })?;
        }
        for d in self.detections.values() {
            for kind in d.actions.keys() {
                resolve(kind, self.route(kind)).map_err(|e| PolicyError {
                    location: d.action_locations.get(kind).copied(),
                    message: format!("detection `{}` grants `{kind}`, but {e}", d.id),
                })?;
            }
        }
        Ok(())
    }
}

fn is_attack_id(s: &str) -> bool {
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    match s.strip_prefix('T').map(|rest| rest.split_once('.')) {
        Some(Some((main, sub))) => digits(main, 4) && digits(sub, 3),
        Some(None) => digits(&s[1..], 4),
        None => false,
    }
}

#[cfg(test)]
mod tests;
