//! [`ExecutorRegistry`]: maps capabilities (`shell`, `function:resize`) to the
//! executors that serve them. It is itself an [`Executor`], routing each attempt
//! by its task's capability, so a worker holds one registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::{ExecContext, Executor};
use crate::model::{AttemptResult, ExitStatus};

/// Executors by capability.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    by_capability: BTreeMap<String, Arc<dyn Executor>>,
}

impl std::fmt::Debug for ExecutorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorRegistry").field("capabilities", &self.by_capability.keys()).finish()
    }
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> ExecutorRegistry {
        ExecutorRegistry::default()
    }

    /// Adds `executor` for every capability it advertises (later ones win).
    pub fn register(&mut self, executor: Arc<dyn Executor>) -> &mut Self {
        for cap in executor.capabilities() {
            self.by_capability.insert(cap, executor.clone());
        }
        self
    }

    /// Builder form of [`ExecutorRegistry::register`].
    pub fn with(mut self, executor: Arc<dyn Executor>) -> Self {
        self.register(executor);
        self
    }

    /// Everything the registry can run, as a worker advertises it.
    pub fn capability_set(&self) -> BTreeSet<String> {
        self.by_capability.keys().cloned().collect()
    }
}

#[async_trait]
impl Executor for ExecutorRegistry {
    fn capabilities(&self) -> Vec<String> {
        self.by_capability.keys().cloned().collect()
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let capability = ctx.spec.task.capability();
        match self.by_capability.get(&capability) {
            Some(executor) => executor.execute(ctx).await,
            None => ctx
                .output
                .finish(ExitStatus::Failed { reason: format!("this worker has no executor for {capability}") }),
        }
    }
}
