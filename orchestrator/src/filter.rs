//! Which intents: the one filter that listing, bulk rollback and journal queries share.

use std::{fmt, time::SystemTime};

use parapet_model::Outcome;

use crate::lifecycle::{IntentRecord, State};

/// Intents matching every criterion that is set; an empty filter matches every intent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntentFilter {
    /// In one of these states; any when empty.
    pub states: Vec<State>,
    pub detection: Option<String>,
    /// The platform that submitted the intent.
    pub source: Option<String>,
    /// A step acts on this target: kind and id.
    pub target: Option<(String, String)>,
    /// A step of this action kind.
    pub action_kind: Option<String>,
    /// The decision (after an approval, the re-check's) had this outcome.
    pub outcome: Option<Outcome>,
    /// Received in `[received_since, received_until)`.
    pub received_since: Option<SystemTime>,
    pub received_until: Option<SystemTime>,
}

impl IntentFilter {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn matches(&self, r: &IntentRecord) -> bool {
        let i = &r.intent;
        (self.states.is_empty() || self.states.contains(&r.state))
            && self
                .detection
                .as_ref()
                .is_none_or(|d| *d == i.detection.rule_id)
            && self.source.as_ref().is_none_or(|s| *s == i.source)
            && self.target.as_ref().is_none_or(|(kind, id)| {
                i.steps
                    .iter()
                    .any(|s| s.target.kind == *kind && s.target.id == *id)
            })
            && self
                .action_kind
                .as_ref()
                .is_none_or(|k| i.steps.iter().any(|s| s.kind.as_str() == k))
            && self
                .outcome
                .is_none_or(|o| r.decision.as_ref().is_some_and(|d| d.outcome == o))
            && self.received_since.is_none_or(|t| i.received_at >= t)
            && self.received_until.is_none_or(|t| i.received_at < t)
    }
}

/// The filter as the journal keeps it (a bulk rollback's selector): `detection=D source=S`.
impl fmt::Display for IntentFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let states = (!self.states.is_empty()).then(|| {
            let names: Vec<_> = self.states.iter().map(|s| s.as_str()).collect();
            format!("state={}", names.join(","))
        });
        let parts = [
            self.detection.as_ref().map(|d| format!("detection={d}")),
            self.source.as_ref().map(|s| format!("source={s}")),
            self.action_kind
                .as_ref()
                .map(|k| format!("action_kind={k}")),
            self.target
                .as_ref()
                .map(|(k, id)| format!("target={k}:{id}")),
            self.received_since.map(|t| format!("since={}", time(t))),
            self.received_until.map(|t| format!("until={}", time(t))),
            states,
            self.outcome.map(|o| format!("outcome={}", o.as_str())),
        ];
        let parts: Vec<_> = parts.into_iter().flatten().collect();
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, detection: &str, kind: &str, target: &str) -> IntentRecord {
        let mut intent = crate::journal::fixtures::varied("k", source, detection, kind, target);
        intent.received_at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        IntentRecord::received(intent, 1)
    }

    #[test]
    fn every_criterion_set_must_match() {
        let r = record("xdr", "edr.c2", "block_ip", "198.51.100.7");
        let at = r.intent.received_at;
        assert!(IntentFilter::default().matches(&r));
        let yes = IntentFilter {
            states: vec![State::Received],
            detection: Some("edr.c2".into()),
            source: Some("xdr".into()),
            target: Some(("ip".into(), "198.51.100.7".into())),
            action_kind: Some("block_ip".into()),
            received_since: Some(at),
            received_until: Some(at + std::time::Duration::from_secs(1)),
            ..Default::default()
        };
        assert!(yes.matches(&r));
        let misses = [
            IntentFilter {
                states: vec![State::Active],
                ..yes.clone()
            },
            IntentFilter {
                detection: Some("edr.other".into()),
                ..yes.clone()
            },
            IntentFilter {
                source: Some("siem".into()),
                ..yes.clone()
            },
            IntentFilter {
                target: Some(("ip".into(), "198.51.100.8".into())),
                ..yes.clone()
            },
            IntentFilter {
                target: Some(("host".into(), "198.51.100.7".into())),
                ..yes.clone()
            },
            IntentFilter {
                action_kind: Some("isolate_host".into()),
                ..yes.clone()
            },
            IntentFilter {
                outcome: Some(Outcome::Execute),
                ..yes.clone()
            },
            IntentFilter {
                received_since: Some(at + std::time::Duration::from_secs(1)),
                ..yes.clone()
            },
            IntentFilter {
                received_until: Some(at),
                ..yes.clone()
            },
        ];
        for (i, f) in misses.iter().enumerate() {
            assert!(!f.matches(&r), "case {i}: {f}");
        }
    }

    #[test]
    fn described_as_the_journal_keeps_a_selector() {
        let f = IntentFilter {
            detection: Some("edr.c2".into()),
            target: Some(("ip".into(), "198.51.100.7".into())),
            received_since: Some(SystemTime::UNIX_EPOCH),
            ..Default::default()
        };
        assert_eq!(
            f.to_string(),
            "detection=edr.c2 target=ip:198.51.100.7 since=1970-01-01T00:00:00Z"
        );
    }
}
