//! The command line: clap types and what each command does with the library. Errors gain context
//! here (`anyhow`); exit codes come from [`crate::report`].

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::journal;
use crate::plan::Share;
use crate::plan::render::Format;
use crate::reconcile::Mode;
use crate::report;
use crate::run::{RunOptions, run as run_targets};
use crate::sim::SimKind;
use crate::telemetry::LogFormat;

/// The seed `roster demo` and `roster sim` use when none is given: a few groups and users.
pub const DEFAULT_SEED: &str = include_str!("../config/sim-seed.toml");

/// roster keeps the groups of application APIs true to your directory or TOML files.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about)]
pub struct Cli {
    /// The config file [default: roster.toml, then /etc/roster/roster.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log as human-readable text or JSON lines (to standard error; level from RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config and every desired-state file; touches no network (LDAP is read by plan).
    Validate,
    /// Show what apply would change, and what its safety rules would refuse; writes nothing.
    Plan(PlanArgs),
    /// Plan, check the safety limits, and apply.
    Apply(ApplyArgs),
    /// Reconcile on the [daemon] schedule until stopped (or once, with --once).
    #[command(long_about = RUN_ABOUT)]
    Run(RunArgs),
    /// Write a target's groups as desired-state TOML (to start the files from what it holds).
    Export(ExportArgs),
    /// Serve the four target simulators on loopback, one port each, until stopped.
    Sim(SimArgs),
    /// Try roster: start the four simulators, plan and apply the example config, and plan again.
    Demo(SimSeedArg),
    /// Check the audit journal, or show what roster wrote.
    #[command(subcommand)]
    Journal(JournalCommand),
}

/// `roster journal` commands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check that no line of the journal was edited, removed or reordered: exit 0 when it is
    /// intact, 1 naming the file and line where it is not.
    Verify(StateDirArg),
    /// Print the writes roster made, oldest first: to a target, a group or a member, or since a
    /// time.
    Show(ShowArgs),
}

/// Where the journal is.
#[derive(Debug, Args)]
pub struct StateDirArg {
    /// The state folder holding the journal [default: the config's state_dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Arguments of `roster journal show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    dir: StateDirArg,
    /// Only writes to this target.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Only writes to this group (or naming it as a child).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Only writes naming this member.
    #[arg(long, value_name = "KEY")]
    pub member: Option<String>,
    /// Only writes from this time on: RFC 3339 (2026-05-04T10:00:00Z), a date (2026-05-04, UTC),
    /// or how long ago (2h, 7days).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

/// Arguments of `roster plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only this target (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also save the plan to this file (JSON), for `roster apply FILE` to apply exactly.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when in sync, 2 when changes are pending, 1 on error (3, a refused plan, either
    /// way).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow this many removals for this run, instead of each target's max_deletes.
    #[arg(long, value_name = "N")]
    pub max_deletes: Option<usize>,
    /// Allow a group to lose this share of its members for this run (such as 100%, which turns
    /// the limit off), instead of each target's max_group_shrink.
    #[arg(long, value_name = "PCT")]
    pub max_group_shrink: Option<Share>,
}

/// Arguments of `roster apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `roster plan --out FILE`: apply exactly its changes, to targets that
    /// still hold what it was made from (a target that changed since is refused, exit 3).
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// Only this target (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Allow this many removals for this run, instead of each target's max_deletes.
    #[arg(long, value_name = "N")]
    pub max_deletes: Option<usize>,
    /// Allow a group to lose this share of its members for this run (such as 100%, which turns
    /// the limit off), instead of each target's max_group_shrink.
    #[arg(long, value_name = "PCT")]
    pub max_group_shrink: Option<Share>,
}

/// Arguments of `roster export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The target to read.
    #[arg(long, value_name = "NAME")]
    pub target: String,
    /// Write <DIR>/<target>.toml instead of printing to standard output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Every group of the target but its system groups, not only those in its managed scope.
    #[arg(long)]
    pub all: bool,
}

/// The long help of `roster run`.
const RUN_ABOUT: &str = "\
Reconcile on the [daemon] schedule until stopped (or once, with --once).

As a daemon it needs a [daemon] table (schedule, jitter, run_on_start, listen, shutdown_timeout). \
It speaks systemd's Type=notify protocol (READY, STATUS with the last run, WATCHDOG, RELOADING, \
STOPPING). SIGHUP reloads the config: a valid one is in force from the next run, an invalid one \
is logged and the old one stays (the listener keeps its address until a restart). SIGTERM or \
SIGINT stops: no new run starts, the run in flight skips the calls it has not started and finishes \
those it has (at most shutdown_timeout), and roster exits 0. Runs never overlap: a tick that comes \
while a run is still going is skipped. The jitter delays each scheduled run, not the start-up run.

Exit codes with --once: as apply (0 done, 1 something failed, 3 a safety rule refused a plan); \
with --once --dry-run, as plan --detailed-exitcode (0 in sync, 2 changes pending, 1 error, \
3 a safety rule would refuse a plan).";

/// Arguments of `roster run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Reconcile once and exit with apply's exit codes (0 done, 1 failed, 3 refused); no
    /// [daemon] table needed.
    #[arg(long)]
    pub once: bool,
    /// Plan and report drift, never write. With --once, exit as plan --detailed-exitcode
    /// (0 in sync, 2 changes pending, 1 error, 3 refused).
    #[arg(long)]
    pub dry_run: bool,
    /// Allow a group to lose this share of its members (such as 100%), instead of each
    /// target's max_group_shrink: for the one run with --once, else for every run until roster
    /// restarts (a reload keeps it).
    #[arg(long, value_name = "PCT")]
    pub max_group_shrink: Option<Share>,
}

/// Arguments of `roster sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Where the first simulator listens; the others take the next ports (Contensis, VinylDNS,
    /// Crafter, UiPath; with port 0 each gets a free one). Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub listen: SocketAddr,
    #[command(flatten)]
    seed: SimSeedArg,
}

/// The seed of the simulators.
#[derive(Debug, Args)]
pub struct SimSeedArg {
    /// Seed file (TOML) with the simulators' users, groups, behaviour switches and faults
    /// [default: a small built-in example].
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
}

/// roster's version, as a saved plan records it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Validate => validate(&config_path(cli.config)?).await,
        Command::Plan(a) => {
            let config = load(&config_path(cli.config)?)?;
            plan(&config, a, true).await
        }
        Command::Apply(a) => {
            let config = load(&config_path(cli.config)?)?;
            apply(&config, a, true).await
        }
        Command::Run(a) => {
            let opts = crate::daemon::DaemonOptions {
                once: a.once,
                dry_run: a.dry_run,
                max_group_shrink: a.max_group_shrink,
            };
            crate::daemon::run(&config_path(cli.config)?, opts).await
        }
        Command::Export(a) => {
            let config = load(&config_path(cli.config)?)?;
            export(&config, a).await
        }
        Command::Sim(a) => {
            let seed = seed(a.seed.seed.as_deref())?;
            crate::sim::serve_until(seed, a.listen, shutdown_signal())
                .await
                .context("simulator")?;
            Ok(report::EXIT_OK)
        }
        Command::Demo(a) => {
            let path = cli
                .config
                .unwrap_or_else(|| PathBuf::from("config/roster.toml"));
            demo(&path, a.seed.as_deref()).await
        }
        Command::Journal(JournalCommand::Verify(a)) => {
            journal_verify(&state_dir(cli.config, a.state_dir)?)
        }
        Command::Journal(JournalCommand::Show(a)) => {
            let dir = state_dir(cli.config, a.dir.state_dir.clone())?;
            journal_show(&dir, &a)
        }
    }
}

/// The state folder a journal command reads: `--state-dir`, else the config's.
fn state_dir(config: Option<PathBuf>, given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => Ok(load(&config_path(config)?)?.state_dir),
    }
}

fn journal_verify(dir: &Path) -> Result<u8> {
    let v = match journal::read::verify(dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("roster: the journal is damaged: {e}");
            return Ok(report::EXIT_ERROR);
        }
    };
    if v.files.is_empty() {
        println!(
            "No journal in {}: nothing was applied with this state_dir.",
            dir.display()
        );
        return Ok(report::EXIT_OK);
    }
    let files = match v.files.as_slice() {
        [one] => format!("1 file, {}", one.path.display()),
        [first, .., last] => format!(
            "{} files, {} to {}",
            v.files.len(),
            first.path.display(),
            last.path.display()
        ),
        [] => String::new(),
    };
    println!("Journal intact: {} lines in {files}.", v.lines);
    if v.rotated {
        println!("Older files were rotated away: the first line follows one that is gone.");
    }
    if v.head_behind {
        println!(
            "The head is one line behind: a run stopped between writing a line and the head; the \
             next apply brings it up to date."
        );
    }
    if !v.open.is_empty() {
        println!(
            "{} writes have no outcome (their run stopped before the answer was journalled):",
            v.open.len()
        );
        let writes: Vec<journal::read::Write> = v
            .open
            .into_iter()
            .map(|(intent, recheck)| journal::read::Write {
                intent,
                outcome: None,
                recheck,
            })
            .collect();
        print!("{}", journal::read::render(&writes));
    }
    Ok(report::EXIT_OK)
}

fn journal_show(dir: &Path, a: &ShowArgs) -> Result<u8> {
    let filter = journal::read::Filter {
        target: a.target.clone(),
        group: a.group.clone(),
        member: a.member.clone(),
        since: a.since.as_deref().map(since).transpose()?,
    };
    let writes = journal::read::history(dir, &filter)
        .with_context(|| format!("reading the journal in {}", dir.display()))?;
    if writes.is_empty() {
        println!(
            "No writes journalled{}.",
            if a.target.is_some() || a.group.is_some() || a.member.is_some() || a.since.is_some() {
                " that match"
            } else {
                ""
            }
        );
    }
    print!("{}", journal::read::render(&writes));
    Ok(report::EXIT_OK)
}

/// `--since`: an RFC 3339 time, a date (midnight UTC), or a duration before now.
fn since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDate, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    if let Ok(ago) = humantime::parse_duration(text)
        && let Ok(ago) = chrono::Duration::from_std(ago)
        && let Some(t) = Utc::now().checked_sub_signed(ago)
    {
        return Ok(t);
    }
    bail!(
        "--since {text}: write a time (2026-05-04T10:00:00Z), a date (2026-05-04) or how long ago \
         (2h, 7days)"
    )
}

/// The config given, or the first of the default places that has one.
fn config_path(given: Option<PathBuf>) -> Result<PathBuf> {
    match given.or_else(config::default_path) {
        Some(path) => Ok(path),
        None => anyhow::bail!(
            "no config file: looked for ./{} in the current folder, then {}; give one with \
             --config FILE",
            config::DEFAULT_PATHS[0],
            config::DEFAULT_PATHS[1]
        ),
    }
}

fn load(path: &Path) -> Result<Config> {
    let config = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &config.warnings {
        eprintln!("{w}");
    }
    Ok(config)
}

async fn validate(path: &Path) -> Result<u8> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(report::EXIT_ERROR);
        }
    };
    for w in &config.warnings {
        eprintln!("{w}");
    }
    match crate::run::check_offline(&config) {
        Ok(desired) => {
            let directories = config
                .sources
                .iter()
                .filter(|s| matches!(s, crate::config::SourceConfig::Ldap(_)))
                .count();
            let unread = if directories == 0 {
                String::new()
            } else {
                format!(" in files ({directories} directory sources are read by plan and apply)")
            };
            println!(
                "{}: valid: {} sources, {} targets, {} groups{unread}",
                path.display(),
                config.sources.len(),
                config.targets.len(),
                desired.groups.len()
            );
            Ok(report::EXIT_OK)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(report::EXIT_ERROR)
        }
    }
}

/// `journal_kept`: read the journal for writes an earlier run left unfinished (a plan writes
/// nothing to it); `roster demo`, whose simulators live only as long as it does, keeps none.
async fn plan(config: &Config, a: PlanArgs, journal_kept: bool) -> Result<u8> {
    let opts = RunOptions {
        mode: Mode::Plan,
        targets: a.targets,
        max_deletes: a.max_deletes,
        max_group_shrink: a.max_group_shrink,
        journal: journal_kept,
        ..RunOptions::default()
    };
    let opts = RunOptions {
        record: a.out.is_some(),
        ..opts
    };
    let run = run_targets(config, &opts).await?;
    if let Some(path) = &a.out {
        // A saved plan is whole or not written: `roster apply FILE` would otherwise pass over
        // a target that could not be planned without a word.
        let unplanned: Vec<&str> = run
            .targets
            .iter()
            .filter(|t| t.plan.is_none() || t.fingerprint.is_none())
            .map(|t| t.target.as_str())
            .collect();
        if !unplanned.is_empty() {
            print!("{}", report::plans(&run, a.format));
            eprintln!(
                "roster: the plan was not saved to {}: {} could not be planned",
                path.display(),
                unplanned.join(", ")
            );
            return Ok(report::EXIT_ERROR);
        }
        let plans: Vec<_> = run
            .targets
            .iter()
            .filter_map(|t| Some((t.plan.as_ref()?, t.fingerprint.as_ref()?)))
            .collect();
        let text = crate::plan::saved::write(VERSION, &config.settings_hash(), &plans);
        std::fs::write(path, text)
            .with_context(|| format!("writing the plan to {}", path.display()))?;
    }
    print!("{}", report::plans(&run, a.format));
    Ok(report::plan_exit(&run, a.detailed_exitcode))
}

/// `journal_kept`: record every write in the journal (see [`plan`] for when it is not).
async fn apply(config: &Config, a: ApplyArgs, journal_kept: bool) -> Result<u8> {
    // A saved plan is checked whole before anything is read.
    let saved = match &a.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the plan {}", path.display()))?;
            let known: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
            let saved = crate::plan::saved::read(&text, &config.settings_hash(), VERSION, &known)
                .with_context(|| format!("{}", path.display()))?;
            Some(saved)
        }
        None => None,
    };
    let opts = RunOptions {
        saved,
        mode: Mode::Apply,
        targets: a.targets,
        max_deletes: a.max_deletes,
        max_group_shrink: a.max_group_shrink,
        progress: std::io::stderr().is_terminal(),
        journal: journal_kept,
        ..RunOptions::default()
    };
    let run = run_targets(config, &opts).await?;
    print!("{}", report::applied(&run));
    Ok(report::apply_exit(&run))
}

async fn export(config: &Config, a: ExportArgs) -> Result<u8> {
    let opts = crate::export::ExportOptions {
        target: a.target,
        all: a.all,
    };
    let export = crate::export::export(config, &opts).await?;
    match &a.out {
        Some(dir) => {
            let path = export.write_to(dir)?;
            let groups = match export.groups {
                1 => "1 group".to_owned(),
                n => format!("{n} groups"),
            };
            eprintln!("{}: {groups} written to {}", export.target, path.display());
        }
        None => print!("{}", export.text),
    }
    Ok(report::EXIT_OK)
}

fn seed(path: Option<&Path>) -> Result<crate::sim::Seed> {
    Ok(match path {
        Some(p) => crate::sim::load_seed(p)?,
        None => crate::sim::parse_seed(DEFAULT_SEED, "built-in seed")?,
    })
}

async fn demo(config_path: &Path, seed_path: Option<&Path>) -> Result<u8> {
    let mut config = load(config_path)?;
    let sim = crate::sim::start(seed(seed_path)?, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulators")?;
    for kind in SimKind::ALL {
        println!("{} simulator on {}", kind.type_name(), sim.url_of(kind));
    }
    println!();
    sim.point_at(&mut config);
    println!("$ roster plan");
    let code = plan(&config, plan_args(), false).await?;
    if code == report::EXIT_ERROR {
        bail!("the first plan failed");
    }
    println!("\n$ roster apply");
    let code = apply(
        &config,
        ApplyArgs {
            plan: None,
            targets: Vec::new(),
            max_deletes: None,
            max_group_shrink: None,
        },
        false,
    )
    .await?;
    if code != report::EXIT_OK {
        bail!("the apply did not complete (exit code {code})");
    }
    println!("\n$ roster plan --detailed-exitcode");
    let code = plan(
        &config,
        PlanArgs {
            detailed_exitcode: true,
            ..plan_args()
        },
        false,
    )
    .await?;
    sim.shutdown().await;
    if code != report::EXIT_OK {
        bail!("the plan after apply is not empty (exit code {code})");
    }
    println!("\nThe second plan is empty: the simulators now hold the desired groups.");
    Ok(report::EXIT_OK)
}

fn plan_args() -> PlanArgs {
    PlanArgs {
        targets: Vec::new(),
        format: Format::Text,
        out: None,
        detailed_exitcode: false,
        max_deletes: None,
        max_group_shrink: None,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_a_date_or_how_long_ago() {
        assert_eq!(
            since("2026-05-04T12:00:00+02:00").unwrap().to_rfc3339(),
            "2026-05-04T10:00:00+00:00"
        );
        assert_eq!(
            since("2026-05-04").unwrap().to_rfc3339(),
            "2026-05-04T00:00:00+00:00"
        );
        let ago = chrono::Utc::now() - since("2h").unwrap();
        assert!((ago.num_minutes() - 120).abs() <= 1, "{ago}");
        let err = since("yesterday").unwrap_err().to_string();
        assert!(err.starts_with("--since yesterday: write a time"), "{err}");
    }
}
