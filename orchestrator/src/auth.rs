//! Who is calling: authentication, for every front door.
//!
//! A caller proves who it is with a client certificate (mutual TLS; its identity is the
//! certificate's subject common name or one of its subject alternative names) or with a bearer
//! token, kept hashed in a token file. What an identity may then do is the service's to decide
//! ([`crate::service::access`]).
//!
//! Without TLS there is no authentication at all, which the server allows only when told to
//! (`[auth] insecure = true`) and only on a loopback address.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use parapet_model::Invalid;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use crate::service::{Identity, Role};
use crate::{error::Error, service::Caller};

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

/// How callers are recognised.
pub struct Authenticator {
    /// No TLS, no authentication: only ever on loopback.
    insecure: bool,
    /// Certificate identities by name.
    identities: HashMap<String, Arc<Identity>>,
    /// Token identities by the SHA-256 of the token, as the token file last read held them.
    tokens: parking_lot::RwLock<Tokens>,
    token_file: Option<PathBuf>,
}

/// What a new reading of the token file changed: each token as its identity, roles, ceiling
/// and the first 8 hex digits of its SHA-256 (never the token).
#[derive(Debug, Default, PartialEq)]
pub struct TokenChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Tokens still there whose identity changed, as they are now.
    pub changed: Vec<String>,
    /// Every identity the file now holds.
    pub identities: Vec<Identity>,
}

impl TokenChange {
    fn between(
        old: &HashMap<[u8; 32], Arc<Identity>>,
        new: &HashMap<[u8; 32], Arc<Identity>>,
    ) -> Self {
        let describe = |hash: &[u8; 32], id: &Identity| {
            let roles: Vec<&str> = id.roles.iter().map(|r| r.as_str()).collect();
            let ceiling = id
                .max_tier
                .map(|t| format!("; max_tier {}", t.as_str()))
                .unwrap_or_default();
            format!(
                "{} ({}{ceiling}) sha256:{}",
                id.name,
                roles.join(", "),
                hex::encode(&hash[..4])
            )
        };
        let mut change = Self {
            identities: new.values().map(|i| (**i).clone()).collect(),
            ..Self::default()
        };
        for (hash, id) in new {
            match old.get(hash) {
                None => change.added.push(describe(hash, id)),
                Some(was) if **was != **id => change.changed.push(describe(hash, id)),
                Some(_) => {}
            }
        }
        for (hash, id) in old {
            if !new.contains_key(hash) {
                change.removed.push(describe(hash, id));
            }
        }
        change.added.sort();
        change.removed.sort();
        change.changed.sort();
        change
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Default)]
struct Tokens {
    by_hash: HashMap<[u8; 32], Arc<Identity>>,
    /// The file's modification time, inode and length when it was read.
    read_at: Option<FileStamp>,
}

/// The token of an `Authorization: Bearer TOKEN` value, whichever front door it came to.
pub fn bearer(authorization: &str) -> Option<&str> {
    authorization.strip_prefix("Bearer ").map(str::trim)
}

/// A SHA-256 as a credentials file writes it: 64 hex digits.
pub fn sha256_hex(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok())
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
            tokens: parking_lot::RwLock::new(Tokens::default()),
            token_file: None,
        }
    }

    /// Whether there is no authentication at all (`--insecure`).
    pub fn is_insecure(&self) -> bool {
        self.insecure
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
        let tokens = match token_file {
            Some(path) => read_tokens(path)?,
            None => Tokens::default(),
        };
        Ok(Self {
            insecure: false,
            identities: by_name,
            tokens: parking_lot::RwLock::new(tokens),
            token_file: token_file.map(Path::to_path_buf),
        })
    }

    /// Whether a token (by its SHA-256) is in force.
    pub fn holds_token(&self, hash: &[u8; 32]) -> bool {
        self.tokens.read().by_hash.contains_key(hash)
    }

    /// The identities of the tokens in force.
    pub fn token_identities(&self) -> Vec<Identity> {
        let tokens = self.tokens.read();
        tokens.by_hash.values().map(|i| (**i).clone()).collect()
    }

    /// Reads the token file again if it changed since it was last read, so that a token
    /// added, removed or given another ceiling counts without a restart. What changed, when it
    /// did; a file that does not read leaves the tokens as they were (and is not tried again
    /// until it changes).
    pub fn reload_tokens(&self) -> anyhow::Result<Option<TokenChange>> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        // a file gone (no stamp) is tried once, as any change is
        let now = file_stamp(path);
        if self.tokens.read().read_at == now {
            return Ok(None);
        }
        match read_tokens(path) {
            Ok(tokens) => {
                let mut held = self.tokens.write();
                let change = TokenChange::between(&held.by_hash, &tokens.by_hash);
                *held = tokens;
                drop(held);
                Ok(Some(change))
            }
            Err(e) => {
                self.tokens.write().read_at = now;
                Err(e)
            }
        }
    }

    /// Who is calling: from the `Authorization` header's bearer token, else from the client
    /// certificate (DER); `peer` is where the call came from.
    pub fn identify(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&[u8]>,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Caller, Error> {
        let known = |identity: &Arc<Identity>| Caller {
            identity: Some(identity.clone()),
            peer,
        };
        if self.insecure {
            // the listeners of an insecure Parapet are on loopback; a front door that is not
            // (the HTTP one, for firewalls to poll) still answers only this machine's callers
            if peer.is_some_and(|p| !p.ip().to_canonical().is_loopback()) {
                return Err(Error::Unauthenticated(
                    "authentication is off (`--insecure`): only callers on this machine may call"
                        .into(),
                ));
            }
            return Ok(Caller {
                identity: None,
                peer,
            });
        }
        if let Some(value) = authorization {
            let token = std::str::from_utf8(value)
                .ok()
                .and_then(bearer)
                .ok_or_else(|| {
                    Error::Unauthenticated("authorization: expected `Bearer TOKEN`".into())
                })?;
            return match self.tokens.read().by_hash.get(&token_hash(token)) {
                Some(id) => Ok(known(id)),
                None => Err(Error::Unauthenticated(
                    "the bearer token is not known".into(),
                )),
            };
        }
        let Some(leaf) = certificate else {
            return Err(Error::Unauthenticated(
                "no client certificate and no bearer token".into(),
            ));
        };
        let names = certificate_names(leaf)
            .map_err(|e| Error::Unauthenticated(format!("the client certificate: {e}")))?;
        names
            .iter()
            .find_map(|n| self.identities.get(n))
            .map(known)
            .ok_or_else(|| {
                Error::Unauthenticated(format!(
                    "the client certificate names {}, which is no configured identity",
                    names.join(", ")
                ))
            })
    }
}

/// What tells that a credentials file (tokens, bouncer keys) changed since it was read.
pub type FileStamp = (std::time::SystemTime, u64, u64);

/// A file's modification time, inode and length; `None` when it cannot be looked at.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.ino(), m.len()))
}

/// The token file, checked whole: one bad entry and none of it is taken.
fn read_tokens(path: &Path) -> anyhow::Result<Tokens> {
    let read_at = file_stamp(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read token file `{}`: {e}", path.display()))?;
    let file: TokenFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("token file `{}`: {e}", path.display()))?;
    let mut by_hash = HashMap::new();
    for (i, t) in file.tokens.into_iter().enumerate() {
        let at = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("token file `{}`: tokens[{i}]: {e}", path.display())
        };
        let hash = sha256_hex(&t.sha256)
            .ok_or_else(|| at(&"sha256 must be 64 hex digits (the token's SHA-256)"))?;
        check_identity(&t.identity).map_err(|e| at(&e))?;
        if by_hash.insert(hash, Arc::new(t.identity)).is_some() {
            return Err(at(&"the same token is listed twice"));
        }
    }
    Ok(Tokens { by_hash, read_at })
}

fn check_identity(id: &Identity) -> Result<(), Invalid> {
    if id.name.trim().is_empty() {
        return Err(Invalid::new("name", "is required"));
    }
    if id.roles.is_empty() {
        return Err(Invalid::new("roles", "at least one is required"));
    }
    if id.max_tier == Some(parapet_policy::Tier::Forbidden) {
        return Err(Invalid::new(
            "max_tier",
            "`forbidden` would refuse everything: remove the identity instead",
        ));
    }
    Ok(())
}

/// The subject's common names and the subject alternative names (DNS, URI, e-mail).
fn certificate_names(
    der: &[u8],
) -> Result<Vec<String>, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn without_authentication_only_this_machine_may_call() {
        let open = Authenticator::insecure();
        for local in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            let peer = Some(local.parse().unwrap());
            assert!(open.identify(None, None, peer).unwrap().identity.is_none());
        }
        for remote in [
            "192.0.2.7:5000",
            "[2001:db8::1]:5000",
            "[::ffff:192.0.2.7]:5000",
        ] {
            let e = open
                .identify(None, None, Some(remote.parse().unwrap()))
                .unwrap_err();
            assert!(matches!(e, Error::Unauthenticated(_)), "{remote}: {e}");
        }
    }
}
