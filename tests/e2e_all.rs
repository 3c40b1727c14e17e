//! All four targets in one run: the example config (`config/`) reconciled into the four
//! simulators, one target failing without stopping the others, and a desired state that one
//! target cannot take refused for that target alone, before anything is read.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use roster::cli::DEFAULT_SEED;
use roster::config::{self, Config};
use roster::plan::render::Format;
use roster::reconcile::{Mode, TargetOutcome};
use roster::report;
use roster::run::{RunOptions, RunReport, run};
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::sim::{self, RunningSim, SimKind};

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roster.toml")
}

/// The example config pointed at freshly seeded simulators.
async fn example() -> (RunningSim, Config) {
    let seed = sim::parse_seed(DEFAULT_SEED, "built-in seed").unwrap();
    let running = sim::start(seed, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let mut config = config::load(&example_config()).unwrap();
    running.point_at(&mut config);
    (running, config)
}

async fn go(config: &Config, mode: Mode) -> RunReport {
    let opts = RunOptions {
        mode,
        ..RunOptions::default()
    };
    run(config, &opts).await.unwrap()
}

fn names(report: &RunReport) -> Vec<&str> {
    report.targets.iter().map(|t| t.target.as_str()).collect()
}

fn changes(report: &RunReport, target: &str) -> usize {
    let t = report.targets.iter().find(|t| t.target == target).unwrap();
    t.plan.as_ref().map_or(0, |p| p.changes.len())
}

#[tokio::test]
async fn one_desired_state_converges_on_all_four_targets_in_one_run() {
    let (sim, config) = example().await;
    let first = go(&config, Mode::Plan).await;
    assert_eq!(names(&first), ["cms", "dns", "studio", "robots"]);
    assert!(
        !first.any_failed(),
        "{}",
        report::plans(&first, Format::Text)
    );
    for t in ["cms", "dns", "studio", "robots"] {
        assert!(changes(&first, t) > 0, "{t} has nothing to do");
    }

    let applied = go(&config, Mode::Apply).await;
    assert_eq!(
        report::apply_exit(&applied),
        report::EXIT_OK,
        "{}",
        report::applied(&applied)
    );

    let again = go(&config, Mode::Plan).await;
    assert!(!again.any_failed());
    assert!(
        !again.any_changes(),
        "not converged:\n{}",
        report::plans(&again, Format::Text)
    );

    // Contensis nests; the others got the child's members flattened in, which the empty second
    // plan confirms against each simulator's own state.
    let pssc = sim.contensis.group("paper_street_soap").unwrap();
    assert!(pssc.children.contains("liposuction_techs"), "{pssc:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn failing_targets_do_not_stop_the_others_and_are_named() {
    let (sim, mut config) = example().await;
    // VinylDNS is down (nothing listens on its port), Crafter answers every API call with 500.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    for t in &mut config.targets {
        if let roster::config::TargetKind::VinylDns(c) = &mut t.kind {
            c.url = dead_url.clone();
        }
        t.retries = 1;
    }
    sim.crafter.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });

    let applied = go(&config, Mode::Apply).await;
    assert_eq!(report::apply_exit(&applied), report::EXIT_ERROR);
    let outcome = |name: &str| {
        &applied
            .targets
            .iter()
            .find(|t| t.target == name)
            .unwrap()
            .outcome
    };
    assert!(matches!(outcome("dns"), TargetOutcome::ObserveFailed(_)));
    assert!(matches!(outcome("studio"), TargetOutcome::ObserveFailed(_)));
    for ok in ["cms", "robots"] {
        match outcome(ok) {
            TargetOutcome::Applied(r) => assert_eq!(r.failures(), 0, "{ok}"),
            other => panic!("{ok}: {other:?}"),
        }
    }
    let text = report::applied(&applied);
    assert!(
        text.contains("dns: not applied, the target could not be read: dns: "),
        "{text}"
    );
    assert!(
        text.contains("studio: not applied, the target could not be read: studio: "),
        "{text}"
    );
    assert!(text.contains("500"), "{text}");

    // The healthy targets are done; the failed ones are untouched and still pending.
    sim.crafter.set_faults(Faults::default());
    let again = go(&config, Mode::Plan).await;
    assert_eq!(changes(&again, "cms"), 0);
    assert_eq!(changes(&again, "robots"), 0);
    assert!(changes(&again, "studio") > 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_group_vinyldns_cannot_take_fails_that_target_alone_before_any_read() {
    let (sim, config) = example().await;
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups.toml");
    std::fs::write(
        &groups,
        "[[group]]\nname = \"ops\"\nmembers = [\"tdurden\"]\n[group.vinyldns]\n\
         admins = [\"tdurden\"]\n\n[[group]]\nname = \"dev\"\nmembers = [\"bob\"]\n\
         [group.vinyldns]\nemail = \"dev@example.com\"\nadmins = [\"bob\"]\n",
    )
    .unwrap();
    let mut config = config;
    config.sources = vec![roster::config::SourceConfig::Toml(
        roster::config::TomlSourceConfig {
            path: groups.clone(),
            origin: roster::model::Origin::File {
                path: groups.clone(),
                line: 1,
                col: 1,
            },
        },
    )];
    let before = sim.vinyldns.calls().len();
    let planned = go(&config, Mode::Plan).await;
    let dns = planned.targets.iter().find(|t| t.target == "dns").unwrap();
    let TargetOutcome::Invalid(problems) = &dns.outcome else {
        panic!("{:?}", dns.outcome);
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(
        text.starts_with(&format!("{}:1:1: ", groups.display())),
        "{text}"
    );
    assert!(text.contains("\"ops\"") && text.contains("email"), "{text}");
    assert_eq!(sim.vinyldns.calls().len(), before, "VinylDNS was contacted");
    for other in ["cms", "studio", "robots"] {
        let t = planned.targets.iter().find(|t| t.target == other).unwrap();
        assert!(matches!(t.outcome, TargetOutcome::Planned), "{other}");
    }
    assert_eq!(report::plan_exit(&planned, true), report::EXIT_ERROR);
    sim.shutdown().await;
}

#[tokio::test]
async fn roster_demo_reconciles_the_example_into_all_four_simulators() {
    let out = support::roster_at(&example_config(), &["demo"], &[]).await;
    let stdout = support::stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        support::stderr(&out)
    );
    for kind in SimKind::ALL {
        assert!(
            stdout.contains(&format!(
                "{} simulator on http://127.0.0.1:",
                kind.type_name()
            )),
            "{stdout}"
        );
    }
    for target in ["cms", "dns", "studio", "robots"] {
        assert!(stdout.contains(&format!("{target}: in sync")), "{stdout}");
    }
}

#[tokio::test]
async fn each_target_read_advances_a_bar_to_the_groups_in_scope() {
    let (_sim, config) = example().await;
    let desired = roster::model::Desired::default();
    for cfg in &config.targets {
        let target = roster::run::AnyTarget::build(cfg).unwrap();
        let scope = roster::plan::Scope::new(
            Some(&["*".to_owned()]),
            &desired,
            target.capabilities().case_insensitive_names,
        )
        .unwrap();
        let bar = indicatif::ProgressBar::hidden();
        let observed = roster::target::progress::reading(
            bar.clone(),
            target.observe(&scope, &Default::default()),
        )
        .await
        .unwrap();
        let groups = observed.groups.len() as u64;
        assert!(groups > 0, "{}: no group read", cfg.name);
        assert_eq!(
            (bar.position(), bar.length()),
            (groups, Some(groups)),
            "{}",
            cfg.name
        );
    }
}
