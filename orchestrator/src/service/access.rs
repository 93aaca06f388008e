//! Who may do what: roles, identities, the caller of one operation, and the roles of each
//! operation. Every front door authenticates in its own way (a client certificate, a bearer
//! token) and then asks here.

use std::{collections::BTreeSet, fmt, net::SocketAddr, sync::Arc};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits intents; reads its own.
    Detector,
    /// Rolls back, judges, flips the kill switch.
    Operator,
    /// Approves and rejects waiting intents.
    Approver,
    /// Queries, verifies and exports the journal; reads everything.
    Auditor,
    /// Reloads the policy, compacts the journal, resets demotions.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Detector,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detector => "detector",
            Self::Operator => "operator",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: detector, operator, approver, auditor or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// An identity and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The certificate's common name or a subject alternative name; for a token, its owner.
    pub name: String,
    pub roles: BTreeSet<Role>,
    /// A detector may be held to these detections; any when unset.
    pub detections: Option<BTreeSet<String>>,
    /// And to these action kinds.
    pub action_kinds: Option<BTreeSet<String>>,
    /// The most autonomy its intents may have, whatever the detection's tier: an agent held to
    /// `approval` waits for a person until it has earned more (a detector's source is its name,
    /// so this holds the source).
    #[serde(default)]
    pub max_tier: Option<parapet_policy::Tier>,
}

/// Every operation Parapet offers, whatever the front door it comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Submit,
    WhatIf,
    GetIntent,
    ListIntents,
    Watch,
    Rollback,
    RollbackSelected,
    QueryJournal,
    VerifyJournal,
    ExportJournal,
    ReplayPolicy,
    ListPending,
    Approve,
    Reject,
    Judge,
    Precision,
    SetKillSwitch,
    GetStatus,
    GetPolicy,
    ReloadPolicy,
    SetDemotion,
    CompactJournal,
}

impl Operation {
    pub const ALL: [Operation; 22] = [
        Self::Submit,
        Self::WhatIf,
        Self::GetIntent,
        Self::ListIntents,
        Self::Watch,
        Self::Rollback,
        Self::RollbackSelected,
        Self::QueryJournal,
        Self::VerifyJournal,
        Self::ExportJournal,
        Self::ReplayPolicy,
        Self::ListPending,
        Self::Approve,
        Self::Reject,
        Self::Judge,
        Self::Precision,
        Self::SetKillSwitch,
        Self::GetStatus,
        Self::GetPolicy,
        Self::ReloadPolicy,
        Self::SetDemotion,
        Self::CompactJournal,
    ];

    /// The operation a gRPC method's path names.
    pub fn of_method(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == path)
    }

    /// The operation's name, as the journal records a refusal of it: the gRPC method.
    pub fn name(self) -> &'static str {
        match self {
            Self::Submit => "/parapet.v1.Intents/Submit",
            Self::WhatIf => "/parapet.v1.Intents/WhatIf",
            Self::GetIntent => "/parapet.v1.Intents/Get",
            Self::ListIntents => "/parapet.v1.Intents/List",
            Self::Watch => "/parapet.v1.Intents/Watch",
            Self::Rollback => "/parapet.v1.Rollbacks/Rollback",
            Self::RollbackSelected => "/parapet.v1.Rollbacks/RollbackSelected",
            Self::QueryJournal => "/parapet.v1.Journal/Query",
            Self::VerifyJournal => "/parapet.v1.Journal/Verify",
            Self::ExportJournal => "/parapet.v1.Journal/Export",
            Self::ReplayPolicy => "/parapet.v1.Journal/ReplayPolicy",
            Self::ListPending => "/parapet.v1.Approvals/ListPending",
            Self::Approve => "/parapet.v1.Approvals/Approve",
            Self::Reject => "/parapet.v1.Approvals/Reject",
            Self::Judge => "/parapet.v1.Verdicts/Judge",
            Self::Precision => "/parapet.v1.Verdicts/Precision",
            Self::SetKillSwitch => "/parapet.v1.Admin/SetKillSwitch",
            Self::GetStatus => "/parapet.v1.Admin/GetStatus",
            Self::GetPolicy => "/parapet.v1.Admin/GetPolicy",
            Self::ReloadPolicy => "/parapet.v1.Admin/ReloadPolicy",
            Self::SetDemotion => "/parapet.v1.Admin/SetDemotion",
            Self::CompactJournal => "/parapet.v1.Admin/CompactJournal",
        }
    }

    /// The roles that may call it.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        const EVERYONE: &[Role] = &[Detector, Operator, Approver, Auditor, Admin];
        match self {
            Self::Submit | Self::WhatIf => &[Detector],
            Self::GetIntent
            | Self::ListIntents
            | Self::Watch
            | Self::GetStatus
            | Self::GetPolicy => EVERYONE,
            Self::Rollback | Self::RollbackSelected | Self::Judge | Self::SetKillSwitch => {
                &[Operator]
            }
            Self::QueryJournal | Self::VerifyJournal | Self::ExportJournal => &[Auditor],
            Self::ReplayPolicy => &[Auditor, Admin],
            Self::ListPending => &[Approver, Operator, Auditor],
            Self::Approve | Self::Reject => &[Approver],
            Self::Precision => &[Operator, Auditor, Admin],
            Self::ReloadPolicy | Self::SetDemotion | Self::CompactJournal => &[Admin],
        }
    }
}

/// The caller of one operation.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `None` when authentication is off (`insecure`): anyone may do anything.
    pub identity: Option<Arc<Identity>>,
    /// Where the call came from, when the front door knows.
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// Whether this caller may call `op`; the refusal names what it lacks.
    pub fn may(&self, op: Operation) -> Result<()> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        let roles = op.roles();
        if roles.iter().any(|r| id.roles.contains(r)) {
            return Ok(());
        }
        let names = |roles: &mut dyn Iterator<Item = &Role>, sep| {
            roles.map(|r| r.as_str()).collect::<Vec<_>>().join(sep)
        };
        Err(Error::Forbidden(format!(
            "`{}` ({}) may not call {}: it needs {}",
            id.name,
            names(&mut id.roles.iter(), ", "),
            op.name(),
            names(&mut roles.iter(), " or "),
        )))
    }

    /// Who the journal records: the authenticated identity, else the name the caller gives.
    pub fn actor<'a>(&'a self, requested_by: &'a str) -> &'a str {
        match &self.identity {
            Some(id) => &id.name,
            None if requested_by.is_empty() => "anonymous",
            None => requested_by,
        }
    }

    /// Whom the caller's open streams are counted against: its identity, else its address.
    pub fn counted_as(&self) -> String {
        match (&self.identity, self.peer) {
            (Some(id), _) => id.name.clone(),
            (None, Some(peer)) => peer.ip().to_string(),
            (None, None) => "anonymous".to_owned(),
        }
    }

    /// The one source whose intents this caller may read, when it is held to one (a
    /// detector); `None` for a caller who reads every source.
    pub fn own_source(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .filter(|id| id.roles.iter().all(|r| *r == Role::Detector))
            .map(|id| id.name.as_str())
    }

    /// Whether intents from `source` are this caller's to read: a detector reads its own only.
    pub fn reads(&self, source: &str) -> bool {
        match &self.identity {
            Some(id) => id.roles.iter().any(|r| *r != Role::Detector) || id.name == source,
            None => true,
        }
    }

    /// Checks a submission against the identity: its own source, its detections and kinds.
    pub fn may_submit(&self, source: &str, detection: &str, kinds: &[&str]) -> Result<()> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        if source != id.name {
            return Err(Error::Forbidden(format!(
                "source: `{source}` is not `{}`, the identity submitting",
                id.name
            )));
        }
        if let Some(allowed) = &id.detections
            && !allowed.contains(detection)
        {
            return Err(Error::Forbidden(format!(
                "detection.rule_id: `{}` may not submit for `{detection}`",
                id.name
            )));
        }
        if let Some(allowed) = &id.action_kinds
            && let Some(kind) = kinds.iter().find(|k| !allowed.contains(**k))
        {
            return Err(Error::Forbidden(format!(
                "steps: `{}` may not ask for `{kind}`",
                id.name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[Role]) -> Caller {
        Caller {
            identity: Some(Arc::new(Identity {
                name: "xdr".into(),
                roles: roles.iter().copied().collect(),
                detections: Some(["edr.c2".to_owned()].into()),
                action_kinds: None,
                max_tier: None,
            })),
            peer: None,
        }
    }

    #[test]
    fn a_role_opens_its_operations_only() {
        let detector = caller(&[Role::Detector]);
        assert!(detector.may(Operation::Submit).is_ok());
        let Err(Error::Forbidden(why)) = detector.may(Operation::Rollback) else {
            panic!("a detector rolled back");
        };
        assert_eq!(
            why,
            "`xdr` (detector) may not call /parapet.v1.Rollbacks/Rollback: it needs operator"
        );
        assert!(
            caller(&[Role::Auditor])
                .may(Operation::ExportJournal)
                .is_ok()
        );
        assert!(Caller::default().may(Operation::CompactJournal).is_ok());
    }

    #[test]
    fn a_detector_reads_and_submits_as_itself_alone() {
        let detector = caller(&[Role::Detector]);
        assert!(detector.reads("xdr") && !detector.reads("siem"));
        assert_eq!(detector.own_source(), Some("xdr"));
        assert!(caller(&[Role::Detector, Role::Auditor]).reads("siem"));
        assert!(detector.may_submit("xdr", "edr.c2", &["block_ip"]).is_ok());
        assert!(
            detector
                .may_submit("siem", "edr.c2", &["block_ip"])
                .is_err()
        );
        assert!(
            detector
                .may_submit("xdr", "edr.other", &["block_ip"])
                .is_err()
        );
    }

    #[test]
    fn every_method_of_the_api_is_an_operation() {
        use prost::Message as _;
        let set =
            prost_types::FileDescriptorSet::decode(parapet_proto::v1::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = 0;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/parapet.v1.{}/{}", service.name(), method.name());
                    assert!(Operation::of_method(&path).is_some(), "{path}");
                    methods += 1;
                }
            }
        }
        assert_eq!(methods, Operation::ALL.len());
    }
}
