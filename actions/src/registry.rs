//! Adapter instances by name, and which of them performs each action kind.
//!
//! Instances are declared in the configuration (two nftables gateways, one webhook per SaaS);
//! the policy's `[routes]` say which instances perform an action kind. A kind without a route
//! goes to the one instance that performs it; two candidates and no route is a configuration
//! error, caught when the policy is loaded. A route naming several instances fans out: the step
//! is done on each, and undone on each (see [`FanOut`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use parapet_model::{ActionKind, Invalid, Step, intent::Field};

use crate::{Action, BoxFuture, DynAdapter, Error, Result, RollbackHandle};

/// The name fan-out handles carry; no instance may take it.
pub const FANOUT: &str = "fanout";

/// Every configured adapter instance. Built once at start-up; read-only afterwards.
#[derive(Clone, Default)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<dyn DynAdapter>>,
    /// The kinds of each instance, asked once: resolving a step reads it on every submission.
    kinds: BTreeMap<String, Vec<ActionKind>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("two adapters are named `{0}`")]
    NameTaken(String),
    #[error("adapter name `{0}` is reserved")]
    Reserved(String),
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an instance; a name already taken is a configuration error.
    pub fn register(&mut self, adapter: Arc<dyn DynAdapter>) -> Result<(), RegistryError> {
        let name = adapter.name().to_owned();
        if name == FANOUT {
            return Err(RegistryError::Reserved(name));
        }
        if self.by_name.contains_key(&name) {
            return Err(RegistryError::NameTaken(name));
        }
        self.kinds.insert(name.clone(), adapter.kinds());
        self.by_name.insert(name, adapter);
        Ok(())
    }

    /// The instance that wrote a rollback handle.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn DynAdapter>> {
        self.by_name.get(name)
    }

    /// Every instance by name, with the action kinds it performs.
    pub fn instances(&self) -> &BTreeMap<String, Vec<ActionKind>> {
        &self.kinds
    }

    /// Every action kind some instance performs.
    pub fn kinds(&self) -> BTreeSet<&ActionKind> {
        self.kinds.values().flatten().collect()
    }

    pub fn has_kind(&self, kind: &ActionKind) -> bool {
        self.kinds.values().any(|k| k.contains(kind))
    }

    /// The adapter that performs `kind`, given the policy's route for it (if any).
    pub fn resolve(
        &self,
        kind: &ActionKind,
        route: Option<&[String]>,
    ) -> Result<Arc<dyn DynAdapter>, RouteError> {
        let names = resolve_names(&self.kinds, kind, route)?;
        let mut members: Vec<_> = names
            .into_iter()
            .filter_map(|n| self.by_name.get(n).cloned())
            .collect();
        match members.len() {
            1 => Ok(members.remove(0)),
            _ => Ok(Arc::new(FanOut { members })),
        }
    }

    /// Refuses a step no configured adapter could perform; the field path is relative to the
    /// step (`kind`, `target.id`, ...). Every field the adapter (each, for a fan-out) acts on
    /// as an address must hold one.
    pub fn validate(&self, step: &Step, route: Option<&[String]>) -> Result<(), Invalid> {
        let adapter = self
            .resolve(&step.kind, route)
            .map_err(|e| Invalid::new("kind", e.to_string()))?;
        for field in adapter.addresses(step) {
            crate::address::at(step, &field)?;
        }
        adapter.validate(step)
    }

    /// Tells the instance (or instances) that did it that the action must last `ttl` more.
    pub async fn extend(&self, handle: &RollbackHandle, ttl: std::time::Duration) -> Result<()> {
        if handle.adapter == FANOUT {
            let mut failed = Vec::new();
            for member in &fanout_members(handle)? {
                if let Err(e) = Box::pin(self.extend(member, ttl)).await {
                    failed.push((member.adapter.clone(), e));
                }
            }
            return joined(failed);
        }
        match self.by_name.get(&handle.adapter) {
            Some(adapter) => adapter.extend(handle, ttl).await,
            None => Err(Error::permanent(format!(
                "adapter `{}` is not configured",
                handle.adapter
            ))),
        }
    }

    /// Undoes an execution with the instance (or instances) that did it.
    pub async fn rollback(&self, handle: &RollbackHandle) -> Result<()> {
        if handle.adapter == FANOUT {
            let mut failed = Vec::new();
            for member in fanout_members(handle)?.iter().rev() {
                if let Err(e) = Box::pin(self.rollback(member)).await {
                    failed.push((member.adapter.clone(), e));
                }
            }
            return joined(failed);
        }
        match self.by_name.get(&handle.adapter) {
            Some(adapter) => adapter.rollback(handle).await,
            None => Err(Error::permanent(format!(
                "adapter `{}` is not configured",
                handle.adapter
            ))),
        }
    }
}

/// Why no instance can carry an action kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the route for `{kind}` names no adapter")]
    Empty { kind: ActionKind },
    #[error(
        "the route for `{kind}` names adapter `{name}`, which is not configured (configured: {configured})"
    )]
    NotConfigured {
        kind: ActionKind,
        name: String,
        configured: String,
    },
    #[error(
        "the route for `{kind}` names adapter `{name}`, which does not perform it (it performs: {performs})"
    )]
    DoesNotPerform {
        kind: ActionKind,
        name: String,
        performs: String,
    },
    #[error("no adapter performs `{kind}` (known: {known})")]
    NoAdapter { kind: ActionKind, known: String },
    #[error("adapters {adapters} all perform `{kind}`: say which in the policy's [routes]")]
    Ambiguous { kind: ActionKind, adapters: String },
}

/// Which instances perform `kind`: the route's, each checked to exist and perform it, or else
/// the single instance that performs it. Pure, so `parapet policy check` can use it on a
/// configuration without building anything.
pub fn resolve_names<'a>(
    instances: &'a BTreeMap<String, Vec<ActionKind>>,
    kind: &ActionKind,
    route: Option<&'a [String]>,
) -> Result<Vec<&'a str>, RouteError> {
    let kind_ = || kind.clone();
    if let Some(names) = route {
        if names.is_empty() {
            return Err(RouteError::Empty { kind: kind_() });
        }
        for name in names {
            match instances.get(name) {
                None => {
                    return Err(RouteError::NotConfigured {
                        kind: kind_(),
                        name: name.clone(),
                        configured: list(instances.keys()),
                    });
                }
                Some(kinds) if !kinds.contains(kind) => {
                    return Err(RouteError::DoesNotPerform {
                        kind: kind_(),
                        name: name.clone(),
                        performs: list(kinds.iter()),
                    });
                }
                Some(_) => {}
            }
        }
        return Ok(names.iter().map(String::as_str).collect());
    }
    let candidates: Vec<&str> = instances
        .iter()
        .filter(|(_, kinds)| kinds.contains(kind))
        .map(|(n, _)| n.as_str())
        .collect();
    match candidates.len() {
        1 => Ok(candidates),
        0 => Err(RouteError::NoAdapter {
            kind: kind_(),
            known: list(instances.values().flatten().collect::<BTreeSet<_>>().iter()),
        }),
        _ => Err(RouteError::Ambiguous {
            kind: kind_(),
            adapters: list(candidates.iter().map(|c| format!("`{c}`"))),
        }),
    }
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn joined(failed: Vec<(String, Error)>) -> Result<()> {
    if failed.is_empty() {
        Ok(())
    } else {
        Err(joined_error(failed))
    }
}

/// One error for the members that failed: retryable only if every failure is.
fn joined_error(failed: Vec<(String, Error)>) -> Error {
    let retryable = failed.iter().all(|(_, e)| e.retryable());
    let message = failed
        .iter()
        .map(|(name, e)| format!("{name}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    if retryable {
        Error::transient(message)
    } else {
        Error::permanent(message)
    }
}

fn fanout_members(handle: &RollbackHandle) -> Result<Vec<RollbackHandle>> {
    serde_json::from_str(&handle.data)
        .map_err(|e| Error::permanent(format!("fan-out handle is unreadable: {e}")))
}

/// One step done on several instances (both gateways of a site). All or nothing: if one
/// member fails, those that succeeded are undone before the error is returned, so the step
/// either holds everywhere or nowhere. The handle lists the members' handles.
pub struct FanOut {
    members: Vec<Arc<dyn DynAdapter>>,
}

impl DynAdapter for FanOut {
    fn name(&self) -> &str {
        FANOUT
    }

    fn kinds(&self) -> Vec<ActionKind> {
        let mut kinds = self.members.first().map(|m| m.kinds()).unwrap_or_default();
        kinds.retain(|k| self.members.iter().all(|m| m.kinds().contains(k)));
        kinds
    }

    fn addresses(&self, step: &Step) -> Vec<Field> {
        let mut all: Vec<Field> = self
            .members
            .iter()
            .flat_map(|m| m.addresses(step))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn validate(&self, step: &Step) -> Result<(), Invalid> {
        self.members.iter().try_for_each(|m| m.validate(step))
    }

    fn execute<'a>(&'a self, action: Action<'a>) -> BoxFuture<'a, Result<RollbackHandle>> {
        Box::pin(async move {
            let results =
                futures::future::join_all(self.members.iter().map(|m| m.execute(action))).await;
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for (member, result) in self.members.iter().zip(results) {
                match result {
                    Ok(handle) => done.push((member, handle)),
                    Err(e) => failed.push((member.name().to_owned(), e)),
                }
            }
            if !failed.is_empty() {
                for (member, handle) in &done {
                    if let Err(e) = member.rollback(handle).await {
                        failed.push((format!("undoing {}", member.name()), e));
                    }
                }
                return Err(joined_error(failed));
            }
            let handles: Vec<RollbackHandle> = done.into_iter().map(|(_, h)| h).collect();
            let data = serde_json::to_string(&handles)
                .map_err(|e| Error::permanent(format!("cannot encode fan-out handle: {e}")))?;
            Ok(RollbackHandle {
                adapter: FANOUT.into(),
                data,
            })
        })
    }

    fn extend<'a>(
        &'a self,
        handle: &'a RollbackHandle,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut failed = Vec::new();
            for h in &fanout_members(handle)? {
                if let Some(m) = self.members.iter().find(|m| m.name() == h.adapter)
                    && let Err(e) = m.extend(h, ttl).await
                {
                    failed.push((h.adapter.clone(), e));
                }
            }
            joined(failed)
        })
    }

    fn rollback<'a>(&'a self, handle: &'a RollbackHandle) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut failed = Vec::new();
            for h in fanout_members(handle)?.iter().rev() {
                let Some(m) = self.members.iter().find(|m| m.name() == h.adapter) else {
                    failed.push((h.adapter.clone(), Error::permanent("not in this fan-out")));
                    continue;
                };
                if let Err(e) = m.rollback(h).await {
                    failed.push((h.adapter.clone(), e));
                }
            }
            joined(failed)
        })
    }
}

#[cfg(test)]
mod tests;
