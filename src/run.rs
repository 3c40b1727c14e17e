//! A whole run: load the desired state once, reconcile every selected target on its own, and
//! collect the reports. One target's failure never stops the others.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, TargetConfig, TargetKind};
use crate::exec::{Executor, Fence};
use crate::journal::{Audit, JournalError, revision};
use crate::model::Desired;
use crate::plan::saved::SavedPlan;
use crate::plan::{Policy, Scope, Share};
use crate::reconcile::{Basis, Mode, TargetOutcome, TargetReport, reconcile};
use crate::retry::RetryPolicy;
use crate::source::{self, SourceError};
use crate::target::Target;
use crate::target::http;

/// What the caller asks of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Plan only, or apply.
    pub mode: Mode,
    /// Only these targets (by name); all when empty.
    pub targets: Vec<String>,
    /// Replaces every selected target's `max_deletes` for this run.
    pub max_deletes: Option<usize>,
    /// Replaces every selected target's `max_group_shrink` for this run.
    pub max_group_shrink: Option<Share>,
    /// Show a progress bar on a terminal while applying.
    pub progress: bool,
    /// Cancelled to stop the run: calls not yet started are skipped.
    pub stop: CancellationToken,
    /// Keep a fingerprint of each target's state in its report (for `roster plan --out`).
    pub record: bool,
    /// Apply this saved plan's changes instead of planning afresh (`roster apply FILE`).
    pub saved: Option<SavedPlan>,
    /// Keep the audit journal in the config's `state_dir`: an apply records every write in it
    /// (and fails before reading anything when it cannot); a plan only reads it for writes an
    /// earlier run left unfinished.
    pub journal: bool,
    /// Asked before every write whether this run may still write (the active daemon's lease);
    /// `None`: it always may.
    pub fence: Option<Arc<dyn Fence>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Plan,
            targets: Vec::new(),
            max_deletes: None,
            max_group_shrink: None,
            progress: false,
            stop: CancellationToken::new(),
            record: false,
            saved: None,
            journal: false,
            fence: None,
        }
    }
}

/// A run that could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The desired state could not be loaded; nothing is planned from half a source. The
    /// message carries the source's, so the source error is not also this one's cause: a
    /// report that prints the chain would say it twice.
    #[error("loading the desired state failed; nothing was planned or written:\n{0}")]
    Source(SourceError),
    /// `--target` named a target the config does not have.
    #[error("no target named \"{0}\" in the config (targets: {1})")]
    UnknownTarget(String, String),
    /// `--target` names a target the saved plan does not have.
    #[error("the saved plan has no target \"{0}\" (its targets: {1})")]
    NotInPlan(String, String),
    /// The audit journal cannot be written, so nothing is: every write must be journalled.
    #[error("cannot keep the audit journal; nothing was read or written: {0}")]
    Journal(#[from] JournalError),
}

impl From<SourceError> for RunError {
    fn from(e: SourceError) -> Self {
        RunError::Source(e)
    }
}

/// What happened to every target of a run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// One report per selected target, in config order.
    pub targets: Vec<TargetReport>,
    /// How long loading the desired state took.
    pub source_duration: Duration,
    /// What each source read, in config order.
    pub sources: Vec<source::SourceRead>,
    /// The run's id, as its log lines carry it (the `run` span's `run_id`).
    pub run_id: String,
}

impl RunReport {
    /// Whether any target failed to be read, or any change failed.
    pub fn any_failed(&self) -> bool {
        self.targets.iter().any(TargetReport::failed)
    }

    /// Whether a safety rule refused any target's plan.
    pub fn any_refused(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t.outcome, TargetOutcome::Refused(_)))
    }

    /// Whether any plan has changes.
    pub fn any_changes(&self) -> bool {
        self.targets
            .iter()
            .any(|t| t.plan.as_ref().is_some_and(|p| !p.is_empty()))
    }
}

/// Generates, from the registry's list, the built connectors and their dispatch.
macro_rules! any_target {
    ($($variant:ident($field:ident, $title:literal): target::$tm:ident::{$keys:ident, $config:ident, $conn:ident}, sim::$sm:ident::{$seed:ident, $sim:ident};)*) => {
        /// A built connector: the closed list of target types, dispatched once, here.
        #[derive(Debug)]
        #[allow(clippy::large_enum_variant)] // one per target per run: boxing would buy nothing
        pub enum AnyTarget {
            $(
                #[doc = concat!($title, ".")]
                $variant(crate::target::$tm::$conn),
            )*
        }

        impl AnyTarget {
            /// Builds the connector for one `[[target]]` table.
            pub fn build(cfg: &TargetConfig) -> Result<Self, http::ClientError> {
                let client = http::client(cfg.timeout, cfg.ca_file.as_deref())?;
                let retry = retry_policy(cfg);
                let pacer = http::pace::Pacer::shared(
                    &format!("{}\n{:?}", cfg.name, cfg.kind),
                    cfg.rate_limit,
                );
                Ok(match &cfg.kind {
                    $(TargetKind::$variant(c) => AnyTarget::$variant(
                        crate::target::$tm::$conn::new(&cfg.name, c, client, cfg.concurrency)
                            .with_calls(retry, pacer),
                    ),)*
                })
            }

            /// What the connector's API can express.
            pub fn capabilities(&self) -> crate::model::Capabilities {
                match self {
                    $(AnyTarget::$variant(t) => t.capabilities(),)*
                }
            }

            /// Checks the desired state against what the connector's API can hold (see
            /// [`Target::prepare`]); `roster validate` uses it so that such problems show before a
            /// run.
            pub fn check(
                &self,
                desired: &Desired,
                scope: &Scope,
            ) -> Result<(), Vec<crate::config::Diagnostic>> {
                match self {
                    $(AnyTarget::$variant(t) => t.prepare(desired, scope).map(drop),)*
                }
            }

            /// Reads every group in `scope` through the connector (see [`Target::observe`]),
            /// resolving `users`: the whole state or an error, never part of it.
            pub async fn observe(
                &self,
                scope: &Scope,
                users: &std::collections::BTreeSet<crate::model::UserKey>,
            ) -> Result<crate::model::Observed, crate::target::ObserveError> {
                match self {
                    $(AnyTarget::$variant(t) => t.observe(scope, users).await,)*
                }
            }

            // As [`reconcile`]'s own arguments, passed through.
            #[allow(clippy::too_many_arguments)]
            async fn reconcile(
                &self,
                type_name: &str,
                desired: &Desired,
                policy: &Policy,
                exec: &Executor,
                mode: Mode,
                basis: Basis<'_>,
                audit: &Audit,
            ) -> TargetReport {
                match self {
                    $(AnyTarget::$variant(t) => reconcile(t, type_name, desired, policy, exec, mode, basis, audit).await,)*
                }
            }
        }
    };
}

crate::registry::targets!(any_target);

/// Why a config that loaded is still not fit to run (what `roster validate` reports beyond the
/// config file itself).
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    /// A desired-state file does not parse or check.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The desired state does not fit a target.
    #[error("{}", crate::config::diag::Lines(.0))]
    Targets(Vec<crate::config::Diagnostic>),
}

/// Checks a loaded config as `roster validate` does, touching no network: the desired-state files
/// (directories are not read) and every target's [`Target::prepare`]. Returns the desired state
/// the files give.
pub fn check_offline(config: &Config) -> Result<Desired, Unfit> {
    let desired = source::validate_offline(&config.sources)?;
    let problems = check_targets(config, &desired);
    if problems.is_empty() {
        Ok(desired)
    } else {
        Err(Unfit::Targets(problems))
    }
}

/// Checks the desired state against every target's API (see [`Target::prepare`]) without
/// contacting any: what `roster validate` reports beyond the files themselves.
pub fn check_targets(config: &Config, desired: &Desired) -> Vec<crate::config::Diagnostic> {
    let mut problems = Vec::new();
    for cfg in &config.targets {
        match AnyTarget::build(cfg) {
            Ok(target) => {
                let caps = target.capabilities();
                let policy = policy(cfg, desired, caps.case_insensitive_names, None, None);
                if let Err(p) = target.check(desired, &policy.scope) {
                    problems.extend(p.into_iter().map(|mut d| {
                        d.message = format!("target `{}`: {}", cfg.name, d.message);
                        d
                    }));
                }
            }
            Err(e) => problems.push(crate::config::Diagnostic::error(
                config.path.clone(),
                0,
                0,
                format!("target `{}`: {e}", cfg.name),
            )),
        }
    }
    problems
}

/// The policy of one target for this desired state; `max_deletes` and `max_group_shrink`, when
/// given, replace the target's own for this run.
pub fn policy(
    cfg: &TargetConfig,
    desired: &Desired,
    case_insensitive: bool,
    max_deletes: Option<usize>,
    max_group_shrink: Option<Share>,
) -> Policy {
    // Patterns were checked when the config was loaded, so building the scope cannot fail here;
    // should it, no group is in scope and nothing is touched.
    let scope = Scope::new(cfg.groups.as_deref(), desired, case_insensitive)
        .unwrap_or_else(|_| Scope::empty());
    Policy {
        scope,
        membership: cfg.membership,
        prune: cfg.prune,
        max_deletes: max_deletes.unwrap_or(cfg.max_deletes),
        max_group_shrink: max_group_shrink.unwrap_or(cfg.max_group_shrink),
        allow_empty_source: cfg.allow_empty_source,
    }
}

/// The retry rules of one target, from its `retries` and `timeout`.
pub fn retry_policy(cfg: &TargetConfig) -> RetryPolicy {
    RetryPolicy {
        max_retries: cfg.retries,
        budget: Duration::from_secs(120).max(cfg.timeout * 2),
        ..RetryPolicy::default()
    }
}

/// Loads the desired state and reconciles every selected target.
pub async fn run(config: &Config, opts: &RunOptions) -> Result<RunReport, RunError> {
    if let Some(name) = opts.targets.iter().find(|n| config.target(n).is_none()) {
        let all: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        return Err(RunError::UnknownTarget(name.clone(), all.join(", ")));
    }
    if let Some(saved) = &opts.saved
        && let Some(name) = opts
            .targets
            .iter()
            .find(|n| !saved.targets.iter().any(|t| &t.target == *n))
    {
        let all: Vec<&str> = saved.targets.iter().map(|t| t.target.as_str()).collect();
        return Err(RunError::NotInPlan(name.clone(), all.join(", ")));
    }
    let selected: Vec<&TargetConfig> = if let Some(saved) = &opts.saved {
        // A saved plan's targets (those of them --target names, if it names any).
        config
            .targets
            .iter()
            .filter(|t| saved.targets.iter().any(|s| s.target == t.name))
            .filter(|t| opts.targets.is_empty() || opts.targets.contains(&t.name))
            .collect()
    } else if opts.targets.is_empty() {
        config.targets.iter().collect()
    } else {
        let mut out = Vec::new();
        for name in &opts.targets {
            match config.target(name) {
                Some(t) => out.push(t),
                None => {
                    let all: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
                    return Err(RunError::UnknownTarget(name.clone(), all.join(", ")));
                }
            }
        }
        out
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    async {
        // Before the sources are read: a run that cannot journal its writes stops first thing.
        let audit = if opts.journal {
            Audit::open(config, opts.mode == Mode::Apply, &run_id)?
        } else {
            Audit::default()
        };
        let elsewhere = audit
            .pending()
            .iter()
            .filter(|l| config.target(&l.target).is_none())
            .count();
        if elsewhere > 0 {
            tracing::warn!(
                writes = elsewhere,
                "the journal holds writes an earlier run left unfinished on targets this config \
                 no longer has; `roster journal show` lists them"
            );
        }
        let started = std::time::Instant::now();
        let source::Load { desired, reads } = source::load(&config.sources)
            .instrument(tracing::info_span!("source"))
            .await?;
        let source_duration = started.elapsed();
        if let Some(journal) = audit.journal() {
            journal.set_sources(revision::of_sources(config, &reads));
        }
        let audit = &audit;
        let futures = selected
            .into_iter()
            .map(|cfg| run_target(cfg, &desired, opts, audit));
        Ok(RunReport {
            targets: futures::future::join_all(futures).await,
            source_duration,
            sources: reads,
            run_id: run_id.clone(),
        })
    }
    .instrument(tracing::info_span!("run", run_id = %run_id))
    .await
}

/// A target's progress bar on the terminal: `name: [===>  ] pos/len <counted> elapsed`.
fn terminal_bar(name: &str, counted: &str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_prefix(name.to_owned());
    let template = format!("{{prefix}}: [{{bar:30}}] {{pos}}/{{len}} {counted} {{elapsed}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn run_target(
    cfg: &TargetConfig,
    desired: &Desired,
    opts: &RunOptions,
    audit: &Audit,
) -> TargetReport {
    let target = match AnyTarget::build(cfg) {
        Ok(t) => t,
        Err(e) => {
            return TargetReport {
                fingerprint: None,
                target: cfg.name.clone(),
                plan: None,
                outcome: TargetOutcome::ObserveFailed(crate::target::ObserveError::Setup {
                    target: cfg.name.clone(),
                    message: e.to_string(),
                }),
                durations: Vec::new(),
            };
        }
    };
    let caps = target.capabilities();
    let policy = policy(
        cfg,
        desired,
        caps.case_insensitive_names,
        opts.max_deletes,
        opts.max_group_shrink,
    );
    let mut exec = Executor::new(retry_policy(cfg), cfg.concurrency);
    exec.stop = opts.stop.clone();
    exec.fence.clone_from(&opts.fence);
    if opts.progress && opts.mode == Mode::Apply {
        exec.progress = terminal_bar(&cfg.name, "calls");
    }
    let basis = match &opts.saved {
        Some(saved) => match saved.targets.iter().find(|t| t.target == cfg.name) {
            Some(t) => Basis::Saved(t),
            // Not selected by `run` when the plan does not name it.
            None => Basis::Fresh,
        },
        None if opts.record => Basis::Recorded,
        None => Basis::Fresh,
    };
    let read_bar = if opts.progress {
        terminal_bar(&cfg.name, "{msg} read")
    } else {
        ProgressBar::hidden()
    };
    let report = crate::target::progress::reading(
        read_bar.clone(),
        target.reconcile(
            cfg.kind.type_name(),
            desired,
            &policy,
            &exec,
            opts.mode,
            basis,
            audit,
        ),
    )
    .await;
    read_bar.finish_and_clear();
    exec.progress.finish_and_clear();
    report
}
