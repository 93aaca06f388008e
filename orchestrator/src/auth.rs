//! Who is calling, and what they may call.
//!
//! A caller proves who it is with a client certificate (mutual TLS; its identity is the
//! certificate's subject common name or one of its subject alternative names) or with a bearer
//! token, kept hashed in a token file. Each identity has roles; every RPC names the roles that
//! may call it ([`allowed`]), and [`AuthLayer`] checks each call before it reaches a handler,
//! puts the [`Caller`] in the request for the handler (who is journaled as the actor), and
//! journals refusals as security events.
//!
//! Without TLS there is no authentication at all, which the server allows only when told to
//! (`[auth] insecure = true`) and only on a loopback address.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    path::Path,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::{Status, codegen::http};

use crate::{engine::Engine, lifecycle::Event};

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

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a role: detector, operator, approver, auditor or admin")
            })
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
}

/// One line of the token file: the SHA-256 of a token, never the token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    sha256: String,
    #[serde(flatten)]
    identity: Identity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// The caller of one RPC, as handlers find it in the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` when authentication is off (`insecure`): anyone may do anything.
    pub identity: Option<Arc<Identity>>,
}

impl Caller {
    /// The caller of a request that passed [`AuthLayer`]; with no layer (tests in process),
    /// nobody in particular, with every right.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller { identity: None })
    }

    /// Who the journal records: the authenticated identity, else the name the caller gives.
    pub fn actor<'a>(&'a self, requested_by: &'a str) -> &'a str {
        match &self.identity {
            Some(id) => &id.name,
            None if requested_by.is_empty() => "anonymous",
            None => requested_by,
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
    pub fn may_submit(&self, source: &str, detection: &str, kinds: &[&str]) -> Result<(), Status> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        if source != id.name {
            return Err(Status::permission_denied(format!(
                "source: `{source}` is not `{}`, the identity submitting",
                id.name
            )));
        }
        if let Some(allowed) = &id.detections
            && !allowed.contains(detection)
        {
            return Err(Status::permission_denied(format!(
                "detection.rule_id: `{}` may not submit for `{detection}`",
                id.name
            )));
        }
        if let Some(allowed) = &id.action_kinds
            && let Some(kind) = kinds.iter().find(|k| !allowed.contains(**k))
        {
            return Err(Status::permission_denied(format!(
                "steps: `{}` may not ask for `{kind}`",
                id.name
            )));
        }
        Ok(())
    }
}

/// The roles that may call a method; `Some(&[])` for calls anyone may make unauthenticated
/// (health, reflection), `None` for a method Parapet does not know.
pub fn allowed(path: &str) -> Option<&'static [Role]> {
    use Role::*;
    const EVERYONE: &[Role] = &[Detector, Operator, Approver, Auditor, Admin];
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Some(&[]);
    }
    let method = path.strip_prefix("/parapet.v1.")?;
    Some(match method {
        "Intents/Submit" => &[Detector],
        "Intents/Get" | "Intents/List" | "Intents/Watch" => EVERYONE,
        "Rollbacks/Rollback" | "Rollbacks/RollbackSelected" => &[Operator],
        "Journal/Query" | "Journal/Verify" | "Journal/Export" => &[Auditor],
        "Journal/ReplayPolicy" => &[Auditor, Admin],
        "Approvals/ListPending" => &[Approver, Operator, Auditor],
        "Approvals/Approve" | "Approvals/Reject" => &[Approver],
        "Verdicts/Judge" => &[Operator],
        "Verdicts/Precision" => &[Operator, Auditor, Admin],
        "Admin/SetKillSwitch" => &[Operator],
        "Admin/GetStatus" => EVERYONE,
        "Admin/ReloadPolicy" | "Admin/SetDemotion" | "Admin/CompactJournal" => &[Admin],
        _ => return None,
    })
}

/// How callers are recognised.
pub struct Authenticator {
    /// No TLS, no authentication: only ever on loopback.
    insecure: bool,
    /// Certificate identities by name.
    identities: HashMap<String, Arc<Identity>>,
    /// Token identities by the SHA-256 of the token.
    tokens: HashMap<[u8; 32], Arc<Identity>>,
}

/// The SHA-256 of a token, as the token file keeps it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    pub fn insecure() -> Self {
        Self {
            insecure: true,
            identities: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// From the configured certificate identities and the token file, if any.
    pub fn new(identities: &[Identity], token_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for id in identities {
            check_identity(id)
                .map_err(|e| anyhow::anyhow!("auth.identities `{}`: {e}", id.name))?;
            if by_name
                .insert(id.name.clone(), Arc::new(id.clone()))
                .is_some()
            {
                anyhow::bail!("auth.identities: `{}` is listed twice", id.name);
            }
        }
        let mut tokens = HashMap::new();
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read token file `{}`: {e}", path.display()))?;
            let file: TokenFile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("token file `{}`: {e}", path.display()))?;
            for (i, t) in file.tokens.into_iter().enumerate() {
                let at = |e: String| {
                    anyhow::anyhow!("token file `{}`: tokens[{i}]: {e}", path.display())
                };
                let hash: [u8; 32] = hex::decode(&t.sha256)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        at("sha256 must be 64 hex digits (the token's SHA-256)".into())
                    })?;
                check_identity(&t.identity).map_err(at)?;
                if tokens.insert(hash, Arc::new(t.identity)).is_some() {
                    return Err(at("the same token is listed twice".into()));
                }
            }
        }
        Ok(Self {
            insecure: false,
            identities: by_name,
            tokens,
        })
    }

    /// Who is calling: from a bearer token, else from the client certificate.
    fn identify(&self, req: &http::Request<tonic::body::Body>) -> Result<Caller, Status> {
        if self.insecure {
            return Ok(Caller { identity: None });
        }
        if let Some(value) = req.headers().get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Status::unauthenticated("authorization: expected `Bearer TOKEN`"))?;
            return match self.tokens.get(&token_hash(token.trim())) {
                Some(id) => Ok(Caller {
                    identity: Some(id.clone()),
                }),
                None => Err(Status::unauthenticated("the bearer token is not known")),
            };
        }
        let certs = req
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
            .and_then(|info| info.peer_certs());
        let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
            return Err(Status::unauthenticated(
                "no client certificate and no bearer token",
            ));
        };
        let names = certificate_names(leaf.as_ref())
            .map_err(|e| Status::unauthenticated(format!("the client certificate: {e}")))?;
        names
            .iter()
            .find_map(|n| self.identities.get(n))
            .map(|id| Caller {
                identity: Some(id.clone()),
            })
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "the client certificate names {}, which is no configured identity",
                    names.join(", ")
                ))
            })
    }
}

fn check_identity(id: &Identity) -> Result<(), String> {
    if id.name.trim().is_empty() {
        return Err("name: is required".into());
    }
    if id.roles.is_empty() {
        return Err("roles: at least one is required".into());
    }
    Ok(())
}

/// The subject's common names and the subject alternative names (DNS, URI, e-mail).
fn certificate_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned());
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

/// Checks every call: who is calling, and whether the method is theirs to call.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    engine: Engine,
    /// Security events journaled at most this fast, so refusals cannot fill the disk.
    journaled: Arc<governor::DefaultDirectRateLimiter>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>, engine: Engine) -> Self {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::MIN.saturating_add(9))
            .allow_burst(std::num::NonZeroU32::MIN.saturating_add(99));
        Self {
            auth,
            engine,
            journaled: Arc::new(governor::RateLimiter::direct(quota)),
        }
    }

    /// Journals a refused call (as a security event), unless refusals come too fast.
    fn refused(&self, req: &http::Request<tonic::body::Body>, identity: &str, status: &Status) {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let method = req.uri().path();
        let e = req.extensions();
        let peer = e
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.get_ref().remote_addr())
            .or_else(|| e.get::<TcpConnectInfo>().and_then(|i| i.remote_addr()))
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::warn!(identity, %peer, method, code = ?status.code(), "call refused: {}", status.message());
        self.engine
            .metrics()
            .refused_call(&format!("{:?}", status.code()), "auth");
        if self.journaled.check().is_err() {
            return;
        }
        let event = Event::AccessDenied {
            identity: identity.to_owned(),
            peer,
            method: method.to_owned(),
            code: format!("{:?}", status.code()),
            reason: status.message().to_owned(),
        };
        let journal = self.engine.journal().clone();
        tokio::spawn(async move {
            if let Err(e) = journal
                .append_system(crate::engine::SYSTEM_ACTOR, event)
                .await
            {
                tracing::error!(error = %e, "cannot journal a refused call");
            }
        });
    }

    /// The caller if the call may go on, else the refusal to answer with.
    fn check(&self, req: &http::Request<tonic::body::Body>) -> Result<Caller, Status> {
        let path = req.uri().path();
        let Some(roles) = allowed(path) else {
            return Err(Status::unimplemented(format!(
                "{path} is not a Parapet method"
            )));
        };
        if roles.is_empty() {
            return Ok(Caller { identity: None });
        }
        let caller = match self.auth.identify(req) {
            Ok(c) => c,
            Err(status) => {
                self.refused(req, "", &status);
                return Err(status);
            }
        };
        if let Some(id) = &caller.identity
            && !roles.iter().any(|r| id.roles.contains(r))
        {
            let status = Status::permission_denied(format!(
                "`{}` ({}) may not call {path}: it needs {}",
                id.name,
                id.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            self.refused(req, &id.name, &status);
            return Err(status);
        }
        Ok(caller)
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    layer: AuthLayer,
    inner: S,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for AuthService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        match self.layer.check(&req) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                // the clone is ready only after poll_ready; use the one that was polled
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}
