//! The guardrails' settings as the policy file states them: protected targets, budgets, rate
//! limits, change freezes, the circuit breaker. Each type checks itself when it is read, so an
//! invalid value is reported at its line.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use ipnet::IpNet;
use parapet_model::{ActionKind, Address, Step, address::overlap};
use serde::Deserialize;

/// A duration written as `90s`, `15m`, `1h 30m`, `7d`, and as it was written, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Span(pub Duration, pub String);

/// Why a duration cannot be a [`Span`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("a duration must be longer than zero")]
    Zero,
    #[error("`{0}` is longer than {MAX_SPAN_YEARS} years")]
    TooLong(String),
    #[error("`{text}` is not a duration like `15m` or `1h`: {reason}")]
    Unreadable { text: String, reason: String },
}

/// The longest span a policy may give: any time Parapet adds one to stays a time it can tell.
pub const MAX_SPAN_YEARS: u64 = 100;

impl TryFrom<String> for Span {
    type Error = SpanError;

    fn try_from(s: String) -> Result<Self, SpanError> {
        const MAX: Duration = Duration::from_secs(MAX_SPAN_YEARS * 366 * 24 * 3600);
        match humantime::parse_duration(&s) {
            Ok(d) if d.is_zero() => Err(SpanError::Zero),
            Ok(d) if d > MAX => Err(SpanError::TooLong(s)),
            Ok(d) => Ok(Self(d, s)),
            Err(e) => Err(SpanError::Unreadable {
                text: s,
                reason: e.to_string(),
            }),
        }
    }
}

/// Which action kinds a rule covers: all when the list is empty.
fn covers(kinds: &[ActionKind], kind: &ActionKind) -> bool {
    kinds.is_empty() || kinds.contains(kind)
}

/// Every network a step's target reaches, for the checks on addresses: each address the
/// target names (its id, any attribute; whichever an adapter acts on), canonical, and the
/// IPv4 networks an IPv6 notation carries or covers ([`Address::views`]).
pub fn reaches(step: &Step) -> impl Iterator<Item = (Address, IpNet, Option<&'static str>)> + '_ {
    step.target
        .addresses()
        .flat_map(|(_, a)| a.views().into_iter().map(move |(net, how)| (a, net, how)))
}

/// What happens when a protected target would be acted on automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectedEffect {
    Approval,
    Deny,
}

/// Crown jewels: targets never acted on without a person. A rule matches a step when every
/// criterion it sets matches; write several rules for "any of".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedRule {
    pub name: String,
    /// Target ids, exactly.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Address blocks; a target overlapping one matches (blocking a /24 that holds a domain
    /// controller touches the domain controller).
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
    /// Any of these in the target's comma-separated `tags` attribute.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Target attributes that must all be equal.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The action kinds the protection applies to; all when empty.
    #[serde(default)]
    pub action_kinds: Vec<ActionKind>,
    pub effect: ProtectedEffect,
}

impl ProtectedRule {
    /// The rule with its addresses in canonical form, as targets' are.
    pub(crate) fn canonical(mut self) -> Self {
        for cidr in &mut self.cidrs {
            *cidr = Address::from_net(*cidr).net();
        }
        for id in &mut self.ids {
            if let Ok(a) = Address::parse(id) {
                *id = a.to_string();
            }
        }
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.cidrs.is_empty()
            && self.tags.is_empty()
            && self.attributes.is_empty()
    }

    pub fn matches(&self, step: &Step) -> bool {
        let t = &step.target;
        covers(&self.action_kinds, &step.kind)
            && (self.ids.is_empty() || self.ids.contains(&t.id))
            && (self.cidrs.is_empty()
                || reaches(step).any(|(_, net, _)| self.cidrs.iter().any(|c| overlap(c, &net))))
            && (self.tags.is_empty()
                || t.attributes.get("tags").is_some_and(|tags| {
                    tags.split(',')
                        .map(str::trim)
                        .any(|tag| self.tags.iter().any(|p| p == tag))
                }))
            && self
                .attributes
                .iter()
                .all(|(k, v)| t.attributes.get(k) == Some(v))
    }
}

/// A blast-radius limit, per action kind and per scope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub name: String,
    /// The action kinds counted; all when empty.
    #[serde(default)]
    pub action_kinds: Vec<ActionKind>,
    /// The target attribute that divides the fleet (`site`, `business_unit`), or `global`.
    #[serde(default = "global")]
    pub scope: String,
    /// At most this many targets acted on per sliding `window`.
    pub max_per_window: Option<u32>,
    pub window: Option<Span>,
    /// At most this many active at once.
    pub max_active: Option<u32>,
    /// At most this share of the scope's fleet active at once, in percent.
    pub max_active_percent: Option<f64>,
}

fn global() -> String {
    GLOBAL.to_owned()
}

/// The scope name for a budget over the whole fleet.
pub const GLOBAL: &str = "global";

/// The scope value of a target that lacks the scope's attribute.
pub const UNSET: &str = "(unset)";

/// What is wrong with a budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("budget `{0}` sets `max_per_window` without `window`")]
    WindowMissing(String),
    #[error("budget `{0}` sets `window` without `max_per_window`")]
    MaxPerWindowMissing(String),
    #[error("budget `{0}` sets no limit")]
    NoLimit(String),
    #[error("budget `{0}`: `max_active_percent` must be in (0, 100]")]
    Percent(String),
}

impl Budget {
    pub(crate) fn check(&self) -> Result<(), BudgetError> {
        let name = || self.name.clone();
        match (self.max_per_window, &self.window) {
            (Some(_), None) => return Err(BudgetError::WindowMissing(name())),
            (None, Some(_)) => return Err(BudgetError::MaxPerWindowMissing(name())),
            _ => {}
        }
        if self.max_per_window.is_none()
            && self.max_active.is_none()
            && self.max_active_percent.is_none()
        {
            return Err(BudgetError::NoLimit(name()));
        }
        if let Some(p) = self.max_active_percent
            && !(p > 0.0 && p <= 100.0)
        {
            return Err(BudgetError::Percent(name()));
        }
        Ok(())
    }

    pub fn covers(&self, step: &Step) -> bool {
        covers(&self.action_kinds, &step.kind)
    }

    /// The scope value a step falls in.
    pub fn scope_of<'a>(&self, step: &'a Step) -> &'a str {
        if self.scope == GLOBAL {
            GLOBAL
        } else {
            step.target
                .attributes
                .get(&self.scope)
                .map_or(UNSET, String::as_str)
        }
    }
}

/// Fleet sizes per scope, for percentage budgets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Fleet {
    /// The whole fleet, for `global` budgets.
    pub global: Option<u64>,
    /// Attribute → value → size, e.g. `site` → `hq` → 400.
    #[serde(flatten)]
    pub scopes: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Fleet {
    pub fn size(&self, scope: &str, value: &str) -> Option<u64> {
        if scope == GLOBAL {
            self.global
        } else {
            self.scopes.get(scope)?.get(value).copied()
        }
    }
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    Source,
    Detection,
    ActionKind,
}

/// At most `max` executions per `per` for each source, detection or action kind, with bursts up
/// to `burst` (default `max`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub name: String,
    pub key: RateKey,
    pub max: std::num::NonZeroU32,
    pub per: Span,
    pub burst: Option<std::num::NonZeroU32>,
}

/// A change freeze: during it, the listed action kinds need approval. Times are wall-clock
/// times in the freeze's time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Freeze {
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub action_kinds: Vec<ActionKind>,
}

impl Freeze {
    pub fn applies(&self, step: &Step, now: SystemTime) -> bool {
        covers(&self.action_kinds, &step.kind) && self.start <= now && now < self.end
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFreeze {
    pub name: String,
    pub start: String,
    pub end: String,
    pub time_zone: String,
    #[serde(default)]
    pub action_kinds: Vec<ActionKind>,
}

/// What is wrong with a freeze.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    #[error("freeze `{name}`: `{zone}` is not a time zone")]
    Zone { name: String, zone: String },
    #[error("freeze `{name}`: `{text}` is not a date and time like `2026-12-20T00:00`")]
    Time { name: String, text: String },
    /// The time does not exist in the zone, or is beyond what can be told.
    #[error("freeze `{name}`: {reason}")]
    Instant { name: String, reason: String },
    #[error("freeze `{0}` ends before it starts")]
    Backwards(String),
}

impl RawFreeze {
    pub(crate) fn resolve(self) -> Result<Freeze, FreezeError> {
        let name = || self.name.clone();
        let tz = jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| FreezeError::Zone {
            name: name(),
            zone: self.time_zone.clone(),
        })?;
        let instant = |reason: &dyn std::fmt::Display| FreezeError::Instant {
            name: name(),
            reason: reason.to_string(),
        };
        let at = |text: &str| -> Result<SystemTime, FreezeError> {
            let civil: jiff::civil::DateTime = text.parse().map_err(|_| FreezeError::Time {
                name: name(),
                text: text.to_owned(),
            })?;
            let stamp = tz.to_timestamp(civil).map_err(|e| instant(&e))?;
            SystemTime::try_from(stamp).map_err(|e| instant(&e))
        };
        let (start, end) = (at(&self.start)?, at(&self.end)?);
        if end <= start {
            return Err(FreezeError::Backwards(name()));
        }
        Ok(Freeze {
            name: self.name,
            start,
            end,
            action_kinds: self.action_kinds,
        })
    }
}

/// Trips the kill switch of an action kind when its adapter fails too often.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    pub window: Span,
    /// Fewer calls than this in the window never trip it.
    pub min_calls: u32,
    /// Failed calls over all calls in the window, from 0 to 1.
    pub max_failure_rate: f64,
}

/// How waiting intents are handled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// A pending intent is rejected after this long without an answer.
    #[serde(default = "day")]
    pub timeout: Span,
    /// An approver may not approve an intent they submitted.
    #[serde(default)]
    pub four_eyes: bool,
    /// Who answers, in escalation order: a pending intent starts with the first group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Per severity, how long a group has before the intent escalates to the next one.
    #[serde(default)]
    pub escalate_after: BTreeMap<parapet_model::Severity, Span>,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            timeout: day(),
            four_eyes: false,
            groups: Vec::new(),
            escalate_after: BTreeMap::new(),
        }
    }
}

impl Approvals {
    /// When an intent of this severity, waiting since `since`, should reach escalation `level`
    /// (1 = the second group), if that level exists.
    pub fn escalation_due(
        &self,
        severity: parapet_model::Severity,
        since: SystemTime,
        level: u32,
    ) -> Option<SystemTime> {
        let step = self.escalate_after.get(&severity)?;
        ((level as usize) < self.groups.len()).then(|| since + step.0 * level)
    }
}

/// What a false-positive verdict does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdicts {
    /// How long new intents of the same detection on the same target are denied.
    #[serde(default = "day")]
    pub suppress_for: Span,
    /// Demote a detection's `auto` tiers to `approval` when false positives make more than
    /// this share (0 to 1) of its verdicts in `demote_window`; off when unset.
    pub demote_above: Option<f64>,
    #[serde(default = "week")]
    pub demote_window: Span,
    /// Fewer verdicts than this in the window never demote.
    #[serde(default = "five")]
    pub demote_min_verdicts: u32,
}

impl Default for Verdicts {
    fn default() -> Self {
        Self {
            suppress_for: day(),
            demote_above: None,
            demote_window: week(),
            demote_min_verdicts: five(),
        }
    }
}

fn week() -> Span {
    Span(Duration::from_secs(7 * 24 * 3600), "7d".into())
}

fn five() -> u32 {
    5
}

fn day() -> Span {
    Span(Duration::from_secs(24 * 3600), "24h".into())
}

/// Detection × target pairs judged false positives, and until when they are suppressed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suppressions {
    by_pair: std::collections::HashMap<(String, String, String), Suppression>,
}

/// Who suppressed a detection × target, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub until: SystemTime,
    pub by: String,
}

impl Suppressions {
    pub fn insert(&mut self, rule: &str, step: &Step, s: Suppression) {
        self.insert_target(rule, &step.target.kind, &step.target.id, s);
    }

    pub fn insert_target(&mut self, rule: &str, kind: &str, target: &str, s: Suppression) {
        let key = (rule.to_owned(), kind.to_owned(), target.to_owned());
        let longer = self.by_pair.get(&key).is_none_or(|old| old.until < s.until);
        if longer {
            self.by_pair.insert(key, s);
        }
    }

    /// The suppression in force for this detection on this step's target, if any.
    pub fn get(&self, rule: &str, step: &Step, now: SystemTime) -> Option<&Suppression> {
        let key = (
            rule.to_owned(),
            step.target.kind.clone(),
            step.target.id.clone(),
        );
        self.by_pair.get(&key).filter(|s| s.until > now)
    }
}
