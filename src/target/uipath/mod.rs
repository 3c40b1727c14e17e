//! The UiPath Identity connector (work in progress: the skeleton every connector starts from).
//!
//! One PUT per changed group carrying all its additions and removals.

pub mod config;
pub mod sim;

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use crate::exec::RetryPolicy;
use crate::model::{Capabilities, GroupName, MembershipWrites, Observed, UserKey};
use crate::plan::Scope;
use crate::plan::change::Plan;
use crate::target::{Call, CallError, ObserveError, RetrySafety, Sent, Stage, Target};

use config::UiPathConfig;

/// The `extras` key of UiPath Identity attributes in the desired state (`[group.uipath]`).
pub const TYPE: &str = "uipath";

/// One UiPath Identity API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiPathCall {
    group: GroupName,
    covers: Vec<usize>,
}

impl Call for UiPathCall {
    fn group(&self) -> &GroupName {
        &self.group
    }
    fn stage(&self) -> Stage {
        Stage::Members
    }
    fn retry(&self) -> RetrySafety {
        RetrySafety::Idempotent
    }
    fn covers(&self) -> &[usize] {
        &self.covers
    }
    fn needs(&self) -> Vec<&GroupName> {
        vec![&self.group]
    }
}

/// The UiPath Identity connector for one `[[target]]`.
pub struct UiPathTarget {
    name: String,
    config: UiPathConfig,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
}

impl std::fmt::Debug for UiPathTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiPathTarget")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl UiPathTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &UiPathConfig,
        http: reqwest::Client,
        concurrency: NonZeroUsize,
    ) -> Self {
        Self {
            name: name.to_owned(),
            config: config.clone(),
            http,
            concurrency,
            reads: RetryPolicy::default(),
        }
    }

    /// Retries transient read failures of an observe under `policy`.
    pub fn with_read_retries(mut self, policy: RetryPolicy) -> Self {
        self.reads = policy;
        self
    }
}

impl Target for UiPathTarget {
    type Call = UiPathCall;

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            nested_groups: false,
            membership: MembershipWrites::AddRemoveBatch,
            case_insensitive_names: false,
            renames: false,
        }
    }

    async fn observe(
        &self,
        _scope: &Scope,
        _users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let _ = (&self.http, self.concurrency, &self.reads);
        Err(ObserveError::Setup {
            target: self.name.clone(),
            message: "the UiPath Identity connector is not built yet".to_owned(),
        })
    }

    fn compile(&self, _plan: &Plan, _observed: &Observed) -> Vec<UiPathCall> {
        Vec::new()
    }

    async fn send(&self, _call: &UiPathCall) -> Result<Sent, CallError> {
        Ok(Sent::Done)
    }

    async fn recheck(&self, _call: &UiPathCall) -> Result<Option<Sent>, CallError> {
        Ok(None)
    }
}
