//! `roster run`: the daemon. It reconciles on the `[daemon]` schedule until stopped, on top of
//! the one-shot engine (`crate::run`).
//!
//! One loop owns everything, so runs never overlap: it waits for the next tick of the schedule
//! (UTC, plus a random jitter) or for a burst of triggers to settle ([`trigger`]: a source that
//! changed, `POST /trigger`, a lease just acquired), runs, records the outcome (log line,
//! metrics, systemd status), and waits again. Ticks that pass while a run is going are skipped,
//! logged and counted; triggers that arrive while a run is going make exactly one run after it.
//! A triggered run is the same complete read, plan, guard and apply as a scheduled one. Signals are
//! handled by the same loop at any point: SIGHUP reloads the config (a valid one is in force from
//! the next run, an invalid one is refused and the old one stays), SIGTERM and SIGINT stop (no new
//! run; the run in flight skips the calls it has not started and finishes those it has, within
//! `shutdown_timeout`).
//!
//! A failing run (a source down, a target down) never ends the daemon: it is recorded and the
//! next tick tries again.
//!
//! The jitter delays scheduled runs only; the start-up run (`run_on_start`) starts at once, so
//! that a deploy or restart shows its effect without waiting. A reload replaces the config and
//! the `[daemon]` keys from the next run, except `listen`: the listener keeps its address until
//! roster restarts.

pub mod http;
pub mod metrics;
pub mod notify;
pub mod schedule;
pub mod signals;
pub mod summary;
pub mod trigger;
pub mod webhook;

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::daemon::DEFAULT_SHUTDOWN_TIMEOUT;
use crate::config::daemon::LeaseConfig;
use crate::config::{self, Config, ConfigErrors, DaemonConfig};
use crate::lease::{Holder, Lease, LeaseHandle, LeaseSettings, Role};
use crate::plan::Share;
use crate::plan::render::Format;
use crate::reconcile::Mode;
use crate::report;
use crate::run::{self, RunError, RunOptions, RunReport};
use metrics::Metrics;
use signals::{Request, Signals};
use summary::Summary;
use trigger::{Burst, Debounce, Trigger};
use webhook::Notifier;

/// The longest the loop sleeps before it looks at the wall clock again (see
/// [`schedule::sleep_for`]).
const CLOCK_CHECK: Duration = Duration::from_secs(60);

/// How long `--once` and a stopping daemon wait for notifications still being sent.
const NOTIFY_FLUSH: Duration = Duration::from_secs(10);

/// How long the listener is given to close after the loop has ended.
const LISTENER_CLOSE: Duration = Duration::from_secs(2);

/// What `roster run` was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Reconcile once and exit with `apply`'s exit codes.
    pub once: bool,
    /// Plan and report drift, never write.
    pub dry_run: bool,
    /// Replaces every target's `max_group_shrink`, in every run until roster stops.
    pub max_group_shrink: Option<Share>,
}

impl DaemonOptions {
    fn mode(self) -> Mode {
        if self.dry_run {
            Mode::Plan
        } else {
            Mode::Apply
        }
    }
}

/// Why a reloaded config was refused; the config in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file does not parse or check.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The config has no `[daemon]` table, which the daemon needs.
    #[error("{0}: the [daemon] table is gone; the daemon needs its schedule")]
    NoDaemon(PathBuf),
    /// The desired state it names does not check (what `roster validate` reports).
    #[error("{0}")]
    Unfit(#[from] run::Unfit),
}

/// Runs the daemon with the config at `config_path`; returns the process exit code.
///
/// With `once`, it reconciles once and returns `apply`'s exit code (with `dry_run`, that of
/// `plan --detailed-exitcode`: 0 in sync, 2 changes pending, 1 error, 3 a plan refused); no
/// `[daemon]` table is needed. Otherwise it runs until SIGTERM or SIGINT and returns 0.
pub async fn run(config_path: &Path, opts: DaemonOptions) -> anyhow::Result<u8> {
    // First, so that a SIGHUP during start-up is kept for the loop rather than fatal.
    let signals = Signals::install().context("installing the signal handlers")?;
    let config = config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &config.warnings {
        warn!("{w}");
    }
    if opts.once {
        return once(config, opts, signals).await;
    }
    let Some(daemon) = config.daemon.clone() else {
        bail!(
            "{}: no [daemon] table: `roster run` needs one for its schedule, such as\n\n    \
             [daemon]\n    schedule = \"*/15 * * * *\"\n\nor reconcile once with `roster run --once`",
            config_path.display()
        );
    };
    let metrics = Metrics::new();
    let stop_listener = CancellationToken::new();
    let (triggers_tx, triggers) = unbounded_channel();
    let gate = http::TriggerGate::new(triggers_tx.clone(), daemon.trigger_token.clone());
    let listener = match daemon.listen {
        Some(addr) => {
            let (bound, task) = http::serve(
                addr,
                metrics.clone(),
                Some(gate.clone()),
                stop_listener.clone(),
            )
            .await
            .with_context(|| format!("listening on {addr} for /healthz, /metrics and /trigger"))?;
            info!(listen = %bound, "serving /healthz, /metrics and /trigger");
            Some(task)
        }
        None => None,
    };
    let debounce = Debounce::new(daemon.debounce, daemon.debounce_max);
    let lease = match (&daemon.lease, opts.dry_run) {
        (Some(_), true) => {
            info!("dry run: not taking part in the lease; this daemon never writes");
            None
        }
        (Some(l), false) => {
            let lease = open_lease(l, &config).context("[daemon.lease]")?;
            metrics.set_lease(metrics::LeaseState::default());
            info!(
                key = %l.key,
                ttl = %humantime::format_duration(l.ttl),
                "standby until this daemon holds the lease"
            );
            Some(lease)
        }
        (None, _) => None,
    };
    let role = lease.as_ref().map(|l| l.role());
    let notifier = Notifier::new(&config.notify);
    let mut d = Daemon {
        path: config_path.to_path_buf(),
        config: Arc::new(config),
        daemon,
        mode: opts.mode(),
        max_group_shrink: opts.max_group_shrink,
        metrics,
        signals,
        watchdog: notify::watchdog_interval().map(|every| {
            let mut i = tokio::time::interval(every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }),
        status: "waiting for the first run".to_owned(),
        triggers,
        triggers_tx,
        gate,
        debounce,
        watchers: None,
        lease,
        role,
        notifier,
    };
    let code = d.serve().await;
    d.stop_watchers();
    d.notifier.flush(NOTIFY_FLUSH).await;
    if let Some(lease) = d.lease.take() {
        lease.release().await;
    }
    stop_listener.cancel();
    if let Some(task) = listener {
        close_listener(task).await;
    }
    info!("stopped");
    Ok(code)
}

/// `roster run --once`: one run, its report on standard output, `apply`'s exit code (or `plan
/// --detailed-exitcode`'s in a dry run). A stop signal stops it as it stops the daemon.
async fn once(config: Config, d: DaemonOptions, mut signals: Signals) -> anyhow::Result<u8> {
    let stop = CancellationToken::new();
    let mode = d.mode();
    let opts = RunOptions {
        mode,
        max_group_shrink: d.max_group_shrink,
        progress: mode == Mode::Apply && std::io::stderr().is_terminal(),
        stop: stop.clone(),
        journal: true,
        ..RunOptions::default()
    };
    let timeout = config
        .daemon
        .as_ref()
        .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.shutdown_timeout);
    let started = Instant::now();
    let run = run::run(&config, &opts);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        () = signals.stop() => {
            warn!(timeout = ?timeout, "stopping: calls not yet started are skipped");
            stop.cancel();
            match tokio::time::timeout(timeout, &mut run).await {
                Ok(r) => r,
                Err(_) => bail!("stopped: the run did not finish within {}", humantime::format_duration(timeout)),
            }
        }
    };
    let notifier = Notifier::new(&config.notify);
    notifier.run_finished(result.as_ref(), mode);
    notifier.flush(NOTIFY_FLUSH).await;
    let report = result?;
    log_summary(&report, mode, started.elapsed());
    Ok(match mode {
        Mode::Plan => {
            print!("{}", report::plans(&report, Format::Text));
            report::plan_exit(&report, true)
        }
        Mode::Apply => {
            print!("{}", report::applied(&report));
            report::apply_exit(&report)
        }
    })
}

/// A run's outcome, logged at info: the summary line and its counts as fields.
fn log_summary(report: &RunReport, mode: Mode, took: Duration) -> Summary {
    let s = Summary::of(report, mode);
    info!(
        run_id = %report.run_id,
        targets = s.targets,
        changes = s.changes,
        failed = s.failed,
        unreconciled = s.unreconciled.len(),
        refused = s.refused.len(),
        duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        dry_run = s.dry_run,
        "run finished: {s} in {}",
        humantime::format_duration(Duration::from_millis(
            u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
        ))
    );
    s
}

/// Waits for the listener task to end, briefly: it stops taking connections at once, and a
/// client slow to read must not hold the exit up.
async fn close_listener(task: JoinHandle<std::io::Result<()>>) {
    match tokio::time::timeout(LISTENER_CLOSE, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "the /metrics listener failed"),
        Ok(Err(e)) => warn!(error = %e, "the /metrics listener ended abnormally"),
        Err(_) => debug!("the /metrics listener did not close in time"),
    }
}

/// A run in flight: its future owns what it needs (the config is shared, so a reload can replace
/// the daemon's while this one finishes with the old).
type RunFuture = Pin<Box<dyn Future<Output = Result<RunReport, RunError>>>>;

/// What the loop is doing.
enum State {
    /// Waiting for `due` (`tick` plus jitter); `None`: the schedule has no upcoming time.
    Idle(Option<Due>),
    /// A run is going.
    Running(Running),
}

/// The next run.
#[derive(Clone, Copy, Debug)]
struct Due {
    /// The schedule's instant.
    tick: DateTime<Utc>,
    /// When the run starts: `tick` plus jitter.
    at: DateTime<Utc>,
}

struct Running {
    /// The schedule's instant that started it, or its start time (the start-up run, a
    /// triggered run).
    tick: DateTime<Utc>,
    /// The triggers it serves: their changes happened before it read the sources.
    burst: Option<Burst>,
    /// Whether it plans or applies.
    mode: Mode,
    /// When it started, for the status line.
    started_at: DateTime<Utc>,
    started: Instant,
    /// Cancelled to stop it.
    stop: CancellationToken,
    run: RunFuture,
}

/// What woke the loop.
enum Event {
    Signal(Request),
    Watchdog,
    Wake,
    /// A trigger arrived.
    Trigger(Trigger),
    /// The pending burst of triggers is due.
    Settled,
    /// The lease's role changed.
    Role(Role),
    Finished(Result<RunReport, RunError>),
}

/// The watchers of the sources in force, and how to stop them.
struct Watchers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The daemon's state between events.
struct Daemon {
    path: PathBuf,
    /// The config in force; a reload replaces it.
    config: Arc<Config>,
    /// Its `[daemon]` table.
    daemon: DaemonConfig,
    mode: Mode,
    /// `--max-group-shrink`, for every run.
    max_group_shrink: Option<Share>,
    metrics: Metrics,
    signals: Signals,
    watchdog: Option<tokio::time::Interval>,
    /// The last status line sent, sent again after a reload.
    status: String,
    /// Triggers from the watchers, `POST /trigger` and the lease.
    triggers: UnboundedReceiver<Trigger>,
    /// Handed to each new set of watchers.
    triggers_tx: UnboundedSender<Trigger>,
    /// `POST /trigger`'s token, replaced by a reload.
    gate: http::TriggerGate,
    /// The triggers waiting for a run.
    debounce: Debounce,
    /// The sources' watchers, with `watch = true`.
    watchers: Option<Watchers>,
    /// With `[daemon.lease]` (and not a dry run): the lease that decides whether runs write.
    lease: Option<Box<dyn LeaseHandle>>,
    /// The lease's role as it changes.
    role: Option<tokio::sync::watch::Receiver<Role>>,
    /// `[[notify]]`: told of every run's outcome.
    notifier: Notifier,
}

impl Daemon {
    /// The loop; returns the exit code once stopped.
    async fn serve(&mut self) -> u8 {
        let now = Utc::now();
        self.warn_about_jitter(now);
        let mut state = if self.daemon.run_on_start {
            State::Idle(Some(Due { tick: now, at: now }))
        } else {
            self.next_after(now)
        };
        self.start_watchers();
        info!(
            schedule = %self.daemon.schedule_text,
            dry_run = self.mode == Mode::Plan,
            run_on_start = self.daemon.run_on_start,
            watch = self.daemon.watch,
            "roster run started"
        );
        notify::ready(&self.status);
        loop {
            let event = match &mut state {
                State::Idle(due) => {
                    let sleep = due.map_or(CLOCK_CHECK, |d| {
                        schedule::sleep_for(Utc::now(), d.at, CLOCK_CHECK)
                    });
                    let settled = self.debounce.due();
                    tokio::select! {
                        r = self.signals.next() => Event::Signal(r),
                        () = watchdog_tick(&mut self.watchdog) => Event::Watchdog,
                        () = tokio::time::sleep(sleep) => Event::Wake,
                        Some(t) = self.triggers.recv() => Event::Trigger(t),
                        () = trigger::until(settled) => Event::Settled,
                        role = role_change(&mut self.role) => Event::Role(role),
                    }
                }
                State::Running(r) => tokio::select! {
                    s = self.signals.next() => Event::Signal(s),
                    () = watchdog_tick(&mut self.watchdog) => Event::Watchdog,
                    Some(t) = self.triggers.recv() => Event::Trigger(t),
                    role = role_change(&mut self.role) => Event::Role(role),
                    out = &mut r.run => Event::Finished(out),
                },
            };
            state = match (event, state) {
                (Event::Watchdog, s) => {
                    notify::watchdog();
                    s
                }
                (Event::Trigger(t), s) => {
                    self.metrics.record_trigger(&t.source, t.kind);
                    debug!(source = %t.source, kind = t.kind, "trigger");
                    self.debounce.add(&t);
                    s
                }
                (Event::Role(role), s) => {
                    self.role_changed(&role);
                    s
                }
                (Event::Settled, State::Idle(_)) => State::Running(self.start(Utc::now(), false)),
                (Event::Signal(Request::Reload), State::Idle(_)) => {
                    self.reload();
                    // The schedule may have changed: wait for the new one's next tick.
                    self.next_after(Utc::now())
                }
                (Event::Signal(Request::Reload), s @ State::Running(_)) => {
                    self.reload();
                    s
                }
                (Event::Signal(Request::Stop), State::Idle(_)) => {
                    self.stopping("stopping: no run in flight");
                    return report::EXIT_OK;
                }
                (Event::Signal(Request::Stop), State::Running(r)) => {
                    self.shut_down(r).await;
                    return report::EXIT_OK;
                }
                (Event::Wake, State::Idle(Some(due))) if Utc::now() >= due.at => {
                    State::Running(self.start(due.tick, true))
                }
                // The schedule had no time left; look again (the clock may have moved).
                (Event::Wake, State::Idle(None)) => self.next_after(Utc::now()),
                (Event::Finished(out), State::Running(r)) => {
                    self.finished(out, &r);
                    let end = Utc::now();
                    let missed = schedule::missed_ticks(&self.daemon.schedule, r.tick, end);
                    if missed > 0 {
                        self.metrics.record_skipped(missed);
                        warn!(
                            skipped = missed,
                            "the run outlasted its interval: {missed} scheduled runs were skipped \
                             (runs never overlap)"
                        );
                    }
                    if self.debounce.is_pending() {
                        info!("changes arrived during the run: one more run follows");
                    }
                    self.next_after(end)
                }
                // Woken before `due` (the sleep is capped), or not produced in this state.
                (Event::Wake | Event::Settled | Event::Finished(_), s) => s,
            };
        }
    }

    /// Waits for the schedule's first tick after `after`, plus a fresh jitter.
    fn next_after(&self, after: DateTime<Utc>) -> State {
        match schedule::next_tick(&self.daemon.schedule, after) {
            Some(tick) => {
                let jitter = schedule::jitter(self.daemon.jitter);
                let at = tick
                    + chrono::Duration::from_std(jitter)
                        .unwrap_or_else(|_| chrono::Duration::zero());
                debug!(tick = %tick, at = %at, "next run");
                State::Idle(Some(Due { tick, at }))
            }
            None => {
                warn!(
                    schedule = %self.daemon.schedule_text,
                    "the schedule has no upcoming time: no run will start until the config is \
                     reloaded with another"
                );
                State::Idle(None)
            }
        }
    }

    /// Starts a run with the config in force: a scheduled one (`tick` is the schedule's
    /// instant) or a triggered one. Either serves the triggers pending, since it reads every
    /// source afresh.
    fn start(&mut self, tick: DateTime<Utc>, scheduled: bool) -> Running {
        let stop = CancellationToken::new();
        let (mode, fence) = self.mode_now();
        let burst = self.debounce.take();
        let opts = RunOptions {
            mode,
            max_group_shrink: self.max_group_shrink,
            stop: stop.clone(),
            journal: true,
            fence,
            ..RunOptions::default()
        };
        let config = Arc::clone(&self.config);
        // The scheduled instant (or the triggers' count) is a field of every line the run logs,
        // so one run's lines can be told apart from the next's even where the run id is not shown.
        let at = tick.to_rfc3339_opts(SecondsFormat::Secs, true);
        let span = if scheduled {
            info_span!("scheduled", tick = %at)
        } else {
            let triggers = burst.as_ref().map_or(0, |b| b.count);
            info!(triggers, "changes settled: starting a run");
            info_span!("triggered", at = %at, triggers)
        };
        let run: RunFuture =
            Box::pin(async move { run::run(&config, &opts).await }.instrument(span));
        Running {
            tick,
            burst,
            mode,
            started_at: Utc::now(),
            started: Instant::now(),
            stop,
            run,
        }
    }

    /// Records a finished run: log line, metrics, status.
    fn finished(&mut self, out: Result<RunReport, RunError>, r: &Running) {
        let when = r.started_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        if let (Some(b), Mode::Apply, Ok(_)) = (&r.burst, r.mode, &out) {
            let end = Instant::now();
            self.metrics
                .record_trigger_to_apply(b.arrivals.iter().map(|a| end.duration_since(*a)));
        }
        // A standby's plans are the active daemon's to report: one notification per run, not two.
        if r.mode == self.mode {
            self.notifier.run_finished(out.as_ref(), r.mode);
        }
        match out {
            Ok(report) => {
                self.metrics.record_run(&report);
                let s = log_summary(&report, r.mode, r.started.elapsed());
                self.status = format!("last run {when}: {s}");
            }
            Err(e) => {
                self.metrics.record_run_error(&e);
                error!(error = %e, "run failed; nothing was written; the next tick tries again");
                let first = e.to_string();
                let first = first.lines().next().unwrap_or("").trim_end_matches(':');
                self.status = format!("last run {when}: failed: {first}");
            }
        }
        notify::status(&self.status);
    }

    /// SIGHUP: loads and checks the config again; a valid one replaces the config in force (from
    /// the next run), an invalid one is logged and refused.
    fn reload(&mut self) {
        notify::reloading();
        match check_reload(&self.path) {
            Ok((config, daemon)) => {
                self.metrics.record_reload(true);
                for w in &config.warnings {
                    warn!("{w}");
                }
                if daemon.listen != self.daemon.listen {
                    warn!("`listen` changed; the listener stays where it is until roster restarts");
                }
                if daemon.lease != self.daemon.lease {
                    warn!("[daemon.lease] changed; the lease stays as it is until roster restarts");
                }
                let listen = self.daemon.listen;
                let lease = self.daemon.lease.take();
                self.daemon = DaemonConfig {
                    listen,
                    lease,
                    ..daemon
                };
                self.config = Arc::new(config);
                self.debounce
                    .set(self.daemon.debounce, self.daemon.debounce_max);
                self.gate.set_token(self.daemon.trigger_token.clone());
                self.notifier = Notifier::new(&self.config.notify);
                // The sources may have changed: watch the new ones.
                self.stop_watchers();
                self.start_watchers();
                self.warn_about_jitter(Utc::now());
                info!(
                    path = %self.path.display(),
                    schedule = %self.daemon.schedule_text,
                    "config reloaded; in force from the next run"
                );
            }
            Err(e) => {
                self.metrics.record_reload(false);
                error!("config reload refused; the config in force stays:\n{e}");
            }
        }
        notify::ready(&self.status);
    }

    /// SIGTERM during a run: no new run; the run in flight skips what it has not started and
    /// finishes what it has, for at most `shutdown_timeout`. A second stop signal stops at once.
    async fn shut_down(&mut self, mut r: Running) {
        let timeout = self.daemon.shutdown_timeout;
        self.stopping(&format!(
            "stopping: finishing the calls in flight (at most {})",
            humantime::format_duration(timeout)
        ));
        r.stop.cancel();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                out = &mut r.run => {
                    self.finished(out, &r);
                    return;
                }
                () = &mut deadline => {
                    warn!(
                        "the run in flight did not finish within shutdown_timeout ({}); \
                         stopping it; the next run converges",
                        humantime::format_duration(timeout)
                    );
                    return;
                }
                () = watchdog_tick(&mut self.watchdog) => notify::watchdog(),
                s = self.signals.next() => if s == Request::Stop {
                    warn!("second stop signal: stopping the run in flight now");
                    return;
                },
            }
        }
    }

    /// How the next run goes: a dry run plans; with a lease, the active daemon applies under a
    /// fence for its tenure and a standby plans; without, the daemon applies.
    fn mode_now(&self) -> (Mode, Option<Arc<dyn crate::exec::Fence>>) {
        if self.mode == Mode::Plan {
            return (Mode::Plan, None);
        }
        match (&self.lease, &self.role) {
            (Some(lease), Some(role)) => match &*role.borrow() {
                Role::Active(tenure) => (Mode::Apply, Some(lease.fence(*tenure))),
                Role::Standby { .. } => (Mode::Plan, None),
            },
            _ => (Mode::Apply, None),
        }
    }

    /// The lease's role changed: metrics, status, and a run at once for a daemon that just
    /// became active (it may have changes to catch up on that the standby only planned).
    fn role_changed(&mut self, role: &Role) {
        let (active, skew) = match role {
            Role::Active(_) => (true, false),
            Role::Standby { skew, .. } => (false, *skew),
        };
        self.metrics.set_lease(metrics::LeaseState { active, skew });
        if active {
            let t = Trigger {
                urgent: true,
                ..Trigger::now("lease", "acquired")
            };
            self.metrics.record_trigger(&t.source, t.kind);
            self.debounce.add(&t);
            self.status = "active: holds the lease".to_owned();
        } else {
            self.status = match role {
                Role::Standby {
                    holder: Some(h), ..
                } => format!("standby: {h} holds the lease"),
                _ => "standby: the lease is not proven".to_owned(),
            };
        }
        notify::status(&self.status);
    }

    /// Starts a watcher per source, when the config asks for them.
    fn start_watchers(&mut self) {
        if !self.daemon.watch {
            return;
        }
        let stop = CancellationToken::new();
        let tasks = watch_sources(
            &self.config,
            &self.daemon,
            self.triggers_tx.clone(),
            stop.clone(),
        );
        self.watchers = Some(Watchers { stop, tasks });
    }

    /// Stops the watchers, if any.
    fn stop_watchers(&mut self) {
        if let Some(w) = self.watchers.take() {
            w.stop.cancel();
            for t in w.tasks {
                t.abort();
            }
        }
    }

    fn stopping(&self, status: &str) {
        info!("{status}");
        notify::stopping(status);
    }

    /// A jitter as long as the schedule's interval pushes runs past the following tick, which
    /// is then skipped; say so once rather than at every run.
    fn warn_about_jitter(&self, now: DateTime<Utc>) {
        if self.daemon.jitter.is_zero() {
            return;
        }
        if let Some(gap) = schedule::shortest_interval(&self.daemon.schedule, now) {
            if self.daemon.jitter >= gap {
                warn!(
                    jitter = %humantime::format_duration(self.daemon.jitter),
                    interval = %humantime::format_duration(gap),
                    "the jitter is as long as the schedule's interval: some scheduled runs will \
                     be skipped"
                );
            }
        }
    }
}

/// Waits for the lease's role to change; never, without a lease (or once its task has ended).
async fn role_change(role: &mut Option<tokio::sync::watch::Receiver<Role>>) -> Role {
    if let Some(r) = role {
        if r.changed().await.is_ok() {
            return r.borrow_and_update().clone();
        }
        // The lease's task is gone: its last word stands.
        *role = None;
    }
    std::future::pending().await
}

/// Opens the lease on etcd and starts trying for it.
fn open_lease(l: &LeaseConfig, config: &Config) -> anyhow::Result<Box<dyn LeaseHandle>> {
    let etcd = crate::lease::etcd::Etcd::new(&crate::lease::etcd::EtcdSettings {
        endpoints: l.endpoints.clone(),
        ca_file: l.ca_file.clone(),
        cert_file: l.cert_file.clone(),
        key_file: l.key_file.clone(),
        username: l.username.clone(),
        password: l.password.clone(),
        timeout: l.ttl / 3,
    })?;
    let name = l
        .name
        .clone()
        .unwrap_or_else(|| crate::instance::id().to_owned());
    let settings = LeaseSettings {
        key: l.key.clone(),
        ttl: l.ttl,
        holder: Holder {
            name,
            config: config.settings_hash(),
        },
    };
    Ok(Box::new(Lease::start(etcd, settings)))
}

/// Starts the watchers of the config's sources; their changes become triggers on `tx`.
fn watch_sources(
    config: &Config,
    daemon: &DaemonConfig,
    tx: UnboundedSender<Trigger>,
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    use crate::source::watch::{self, WatchOptions};
    let (changes_tx, mut changes) = unbounded_channel();
    let opts = WatchOptions {
        poll: daemon.poll_interval,
        ..WatchOptions::default()
    };
    let mut tasks = watch::spawn_all(&config.sources, &opts, changes_tx, stop.clone());
    // Changes become triggers; the forwarder ends with the watchers (their senders dropped) or
    // with the loop (its receiver dropped).
    tasks.push(tokio::spawn(async move {
        while let Some(c) = changes.recv().await {
            debug!(source = %c.source, kind = c.kind.as_str(), "source changed");
            if tx.send(Trigger::now(c.source, c.kind.as_str())).is_err() {
                break;
            }
        }
    }));
    tasks
}

/// Waits for the watchdog's next beat; never, when there is no watchdog.
async fn watchdog_tick(w: &mut Option<tokio::time::Interval>) {
    match w {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Loads the config at `path` and checks it as `roster validate` does (desired-state files
/// included, directories not read), offline; the daemon then needs its `[daemon]` table.
pub fn check_reload(path: &Path) -> Result<(Config, DaemonConfig), ReloadError> {
    let config = config::load(path)?;
    let Some(daemon) = config.daemon.clone() else {
        return Err(ReloadError::NoDaemon(path.to_path_buf()));
    };
    run::check_offline(&config)?;
    Ok((config, daemon))
}
