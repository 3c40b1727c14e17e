//! The VinylDNS connector (work in progress: the skeleton every connector starts from).
//!
//! Membership written by full replacement: one PUT per changed group, built from a fresh read.

pub mod config;
pub mod sim;

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use crate::exec::RetryPolicy;
use crate::model::{Capabilities, GroupName, MembershipWrites, Observed, UserKey};
use crate::plan::Scope;
use crate::plan::change::Plan;
use crate::target::{Call, CallError, ObserveError, RetrySafety, Sent, Stage, Target};

use config::VinylDnsConfig;

/// The `extras` key of VinylDNS attributes in the desired state (`[group.vinyldns]`).
pub const TYPE: &str = "vinyldns";

/// One VinylDNS API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VinylDnsCall {
    group: GroupName,
    covers: Vec<usize>,
}

impl Call for VinylDnsCall {
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

/// The VinylDNS connector for one `[[target]]`.
pub struct VinylDnsTarget {
    name: String,
    config: VinylDnsConfig,
    http: reqwest::Client,
    concurrency: NonZeroUsize,
    reads: RetryPolicy,
}

impl std::fmt::Debug for VinylDnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VinylDnsTarget")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VinylDnsTarget {
    /// A connector for `config`, sending with `http`, reading with up to `concurrency` calls at once.
    pub fn new(
        name: &str,
        config: &VinylDnsConfig,
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

impl Target for VinylDnsTarget {
    type Call = VinylDnsCall;

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
            message: "the VinylDNS connector is not built yet".to_owned(),
        })
    }

    fn compile(&self, _plan: &Plan, _observed: &Observed) -> Vec<VinylDnsCall> {
        Vec::new()
    }

    async fn send(&self, _call: &VinylDnsCall) -> Result<Sent, CallError> {
        Ok(Sent::Done)
    }

    async fn recheck(&self, _call: &VinylDnsCall) -> Result<Option<Sent>, CallError> {
        Ok(None)
    }
}
