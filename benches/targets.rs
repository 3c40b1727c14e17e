//! Every target, one apply of 1,000 member changes (10 groups × 50 adds + 50 removes) against its
//! simulator with 20 ms added to every request and concurrency 8: the wall time of the run
//! (observe, plan, apply) and the API calls it made, writes against the fewest the API allows.
//!
//! `cargo bench --bench targets` prints one line per target.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roster::config;
use roster::reconcile::Mode;
use roster::run::{RunOptions, run};
use roster::sim::{self, SimKind, faults::Faults};

mod support;

const GROUPS: usize = 10;
const LATENCY: Duration = Duration::from_millis(20);

fn users(range: std::ops::Range<usize>) -> String {
    range
        .map(|u| format!("\"u{u:03}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every simulator holds users u000..u199 and groups g00..g09 with members u000..u099.
fn seed() -> String {
    let all = users(0..200);
    let have = users(0..100);
    let mut s = format!(
        "[contensis]\nclient_id = \"roster\"\nclient_secret = \"bench\"\nusers = [{all}]\n\
         [vinyldns]\nusers = [{all}]\nsuper_users = [\"roster\"]\n\
         [[vinyldns.credentials]]\naccess_key = \"bench-access\"\nsecret_key = \"bench\"\nuser = \"roster\"\n\
         [crafter]\ntoken = \"bench\"\nusers = [{all}]\n\
         [uipath]\nclient_secret = \"bench\"\nusers = [{all}]\n"
    );
    for g in 0..GROUPS {
        for kind in ["contensis", "crafter", "uipath"] {
            let _ = write!(
                s,
                "[[{kind}.group]]\nname = \"g{g:02}\"\nmembers = [{have}]\n"
            );
        }
        let _ = write!(
            s,
            "[[vinyldns.group]]\nname = \"g{g:02}\"\nemail = \"g{g:02}@example.com\"\n\
             members = [{have}]\nadmins = [\"u050\"]\n"
        );
    }
    s
}

/// The desired groups: members u050..u149, so each group gains 50 and loses 50.
fn desired() -> String {
    let want = users(50..150);
    let mut s = String::new();
    for g in 0..GROUPS {
        let _ = write!(
            s,
            "[[group]]\nname = \"g{g:02}\"\nmembers = [{want}]\n[group.vinyldns]\n\
             email = \"g{g:02}@example.com\"\nadmins = [\"u050\"]\n"
        );
    }
    s
}

const CONFIG: &str = r#"
[[source]]
type = "toml"
path = "groups.toml"

[[target]]
name = "contensis"
type = "contensis"
url = "http://127.0.0.1:1"
client_id = "roster"
client_secret = "bench"

[[target]]
name = "vinyldns"
type = "vinyldns"
url = "http://127.0.0.1:1"
access_key = "bench-access"
secret_key = "bench"

[[target]]
name = "crafter"
type = "crafter"
url = "http://127.0.0.1:1/studio"
token = "bench"

[[target]]
name = "uipath"
type = "uipath"
url = "http://127.0.0.1:1/roster"
partition_global_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
client_id = "roster"
client_secret = "bench"
"#;

/// The fewest writes each API allows for 1,000 member changes over 10 groups, where it is known.
fn minimum(kind: SimKind) -> Option<usize> {
    const FEWEST: [(SimKind, usize); 4] = [
        // One PUT or DELETE per member.
        (SimKind::Contensis, 1_000),
        // One full-replace PUT per group (each after the fresh GET the design requires).
        (SimKind::VinylDns, GROUPS),
        // One bulk add and one bulk remove per group.
        (SimKind::Crafter, 2 * GROUPS),
        // One PUT per group carrying its additions and removals.
        (SimKind::UiPath, GROUPS),
    ];
    FEWEST.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n)
}

async fn once(dir: &std::path::Path, kind: SimKind) {
    let seed = sim::parse_seed(&seed(), "bench seed").expect("seed");
    let running = sim::start(seed, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulators");
    running.set_faults_all(&Faults {
        latency: Some(LATENCY),
        ..Faults::default()
    });
    let mut cfg = config::load(&dir.join("roster.toml")).expect("config");
    running.point_at(&mut cfg);
    let before = running.calls_of(kind).len();
    let opts = RunOptions {
        mode: Mode::Apply,
        targets: vec![kind.type_name().to_owned()],
        max_deletes: Some(usize::MAX),
        ..RunOptions::default()
    };
    let start = Instant::now();
    let report = run(&cfg, &opts).await.expect("run");
    let took = start.elapsed();
    assert!(!report.any_failed(), "{kind:?}: a change failed");
    let changes = report.targets[0]
        .plan
        .as_ref()
        .map_or(0, |p| p.changes.len());
    assert_eq!(changes, 1_000, "{kind:?}: expected 1,000 member changes");
    let made = running.calls_of(kind);
    let made = &made[before..];
    let is_write = |c: &&String| !c.starts_with("GET ") && !c.contains("token");
    let writes = made.iter().filter(is_write).count();
    println!(
        "{:<10} run {:>6.2} s at {} ms latency: {:>5} API calls, {:>5} writes (fewest the API allows: {})",
        kind.type_name(),
        took.as_secs_f64(),
        LATENCY.as_millis(),
        made.len(),
        writes,
        minimum(kind).map_or_else(|| "not measured".to_owned(), |n| n.to_string()),
    );
    running.shutdown().await;
}

fn main() {
    let Some(rt) = support::benching() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("roster.toml"), CONFIG).expect("config");
    std::fs::write(dir.path().join("groups.toml"), desired()).expect("groups");
    for kind in SimKind::ALL {
        rt.block_on(once(dir.path(), kind));
    }
}
