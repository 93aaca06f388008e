//! Adapters by action kind and by name.

use std::{collections::BTreeMap, sync::Arc};

use parapet_model::{ActionKind, Invalid, Step};

use crate::DynAdapter;

/// Which adapter performs each action kind. Built once at start-up; read-only afterwards.
#[derive(Clone, Default)]
pub struct Registry {
    by_kind: BTreeMap<ActionKind, Arc<dyn DynAdapter>>,
    by_name: BTreeMap<String, Arc<dyn DynAdapter>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("action kind `{kind}` is claimed by both `{first}` and `{second}`")]
    KindTaken {
        kind: ActionKind,
        first: String,
        second: String,
    },
    #[error("two adapters are named `{0}`")]
    NameTaken(String),
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an adapter for all its kinds; a kind or name already taken is a configuration error.
    pub fn register(&mut self, adapter: Arc<dyn DynAdapter>) -> Result<(), RegistryError> {
        let name = adapter.name().to_owned();
        if self.by_name.contains_key(&name) {
            return Err(RegistryError::NameTaken(name));
        }
        for kind in adapter.kinds() {
            if let Some(first) = self.by_kind.get(&kind) {
                return Err(RegistryError::KindTaken {
                    kind,
                    first: first.name().to_owned(),
                    second: name,
                });
            }
            self.by_kind.insert(kind, adapter.clone());
        }
        self.by_name.insert(name, adapter);
        Ok(())
    }

    pub fn for_kind(&self, kind: &ActionKind) -> Option<&Arc<dyn DynAdapter>> {
        self.by_kind.get(kind)
    }

    /// The adapter that wrote a rollback handle.
    pub fn by_name(&self, name: &str) -> Option<&Arc<dyn DynAdapter>> {
        self.by_name.get(name)
    }

    pub fn has_kind(&self, kind: &ActionKind) -> bool {
        self.by_kind.contains_key(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &ActionKind> {
        self.by_kind.keys()
    }

    /// Refuses a step no registered adapter could perform; the field path is relative to the
    /// step (`kind`, `target.id`, ...).
    pub fn validate(&self, step: &Step) -> Result<(), Invalid> {
        match self.by_kind.get(&step.kind) {
            Some(adapter) => adapter.validate(step),
            None => Err(Invalid::new(
                "kind",
                format!(
                    "no adapter performs `{}` (known: {})",
                    step.kind,
                    self.by_kind
                        .keys()
                        .map(ActionKind::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}
