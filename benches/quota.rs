//! API quotas: an apply of 1,000 changes (10 groups each losing 100 members: one DELETE each)
//! against the Contensis simulator enforcing a quota of 20 calls a second (a bucket of 20), 20 ms
//! added to every request, concurrency 8, twice:
//!
//! * with `rate_limit = "20/s"` and `burst = 10` declared: the 429s the server answered (bound:
//!   none) and the throughput against the quota (bound: at least 0.9);
//! * with no rate declared, the pace adapting: the share of calls answered 429 (bound: under 2 %)
//!   and the throughput against the quota (bound: at least 0.8).
//!
//! Throughput is the calls the server served during the apply over the apply's length, against
//! what the quota allows over that length (its rate, plus the bucket it starts with).
//! `cargo bench --bench quota`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use roster::config;
use roster::retry::RateLimit;
use roster::sim::control::SimControl as _;
use roster::sim::{self, faults::Faults};

mod support;

const GROUPS: usize = 10;
const MEMBERS: usize = 100;
const RATE: f64 = 20.0;
const BURST: u32 = 20;
/// The burst roster is told: below the API's own, as the README advises, so that the jitter
/// between a call leaving and arriving never crosses the server's bucket.
const DECLARED_BURST: u32 = 10;

fn users() -> String {
    (0..MEMBERS)
        .map(|u| format!("\"u{u:03}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn seed() -> String {
    let all = users();
    let mut s = format!(
        "[contensis]\nclient_id = \"roster\"\nclient_secret = \"bench\"\nusers = [{all}]\n"
    );
    for g in 0..GROUPS {
        let _ = write!(
            s,
            "[[contensis.group]]\nname = \"q{g:02}\"\nmembers = [{all}]\n"
        );
    }
    s
}

fn desired() -> String {
    (0..GROUPS)
        .map(|g| format!("[[group]]\nname = \"q{g:02}\"\nmembers = []\n"))
        .collect()
}

fn config(declared: bool) -> String {
    let rate = if declared {
        format!("rate_limit = \"{RATE}/s\"\nburst = {DECLARED_BURST}\n")
    } else {
        String::new()
    };
    format!(
        "[[source]]\ntype = \"toml\"\npath = \"groups.toml\"\n\n[[target]]\nname = \"cms\"\n\
         type = \"contensis\"\nurl = \"http://127.0.0.1:1\"\nclient_id = \"roster\"\n\
         client_secret = \"bench\"\nconcurrency = 8\nmax_group_shrink = \"100%\"\n{rate}"
    )
}

/// roster's own count of the calls answered 429 (`roster_api_calls_total{status="429"}`).
fn roster_429s() -> u64 {
    roster::target::http::api_calls()
        .iter()
        .filter(|(_, status, _)| *status == 429)
        .map(|(_, _, n)| n)
        .sum()
}

async fn once(declared: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("roster.toml"), config(declared)).expect("config");
    std::fs::write(dir.path().join("groups.toml"), desired()).expect("groups");
    let seed = sim::parse_seed(&seed(), "bench seed").expect("seed");
    let running = sim::start(seed, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulators");
    let sim = &running.handles.contensis;
    sim.set_faults(Faults {
        latency: Some(Duration::from_millis(20)),
        quota: Some(RateLimit {
            rate: format!("{RATE}/s").parse().expect("rate"),
            burst: BURST,
        }),
        ..Faults::default()
    });
    let mut cfg = config::load(&dir.path().join("roster.toml")).expect("config");
    running.point_at(&mut cfg);
    let roster_before = roster_429s();
    let report = support::apply(&cfg, false).await;
    assert!(!report.any_failed(), "a change failed");
    let changes = report.targets[0]
        .plan
        .as_ref()
        .map_or(0, |p| p.changes.len());
    assert_eq!(changes, GROUPS * MEMBERS);
    let took = report.targets[0]
        .durations
        .iter()
        .find(|(n, _)| *n == "apply")
        .map_or(Duration::ZERO, |(_, d)| *d)
        .as_secs_f64();
    // Each removal is one DELETE the server served once (a 429 is not served, and retried).
    let served = changes;
    let throttled = usize::try_from(sim.throttled()).unwrap_or(usize::MAX);
    let all = sim.calls().len();
    let allowed = RATE * took + f64::from(BURST);
    let share = served as f64 / allowed;
    println!(
        "{:<22} {changes} changes applied in {took:>6.2} s: {served} calls served ({:.1}/s), \
         {:.2}× the quota's throughput (bound {}); 429s: {throttled} of {all} calls ({:.2} %, \
         bound {}); roster_api_calls_total{{status=\"429\"}} +{}",
        if declared {
            "rate_limit = \"20/s\""
        } else {
            "no rate (adaptive)"
        },
        served as f64 / took,
        share,
        if declared { "≥ 0.9" } else { "≥ 0.8" },
        100.0 * throttled as f64 / all as f64,
        if declared { "0" } else { "< 2 %" },
        roster_429s() - roster_before,
    );
    running.shutdown().await;
}

fn main() {
    let Some(rt) = support::benching() else {
        return;
    };
    // `-- declared` or `-- adaptive` runs one of the two.
    let only = std::env::args().find(|a| a == "declared" || a == "adaptive");
    if only.as_deref() != Some("adaptive") {
        rt.block_on(once(true));
    }
    if only.as_deref() != Some("declared") {
        rt.block_on(once(false));
    }
}
