//! Active/standby as issue 13 asks for it, end to end: a real etcd (`support::etcd`, on loopback,
//! stopped by PID), two real `roster run` daemons sharing one lease key, and the in-process
//! Contensis simulator, whose call log names the instance behind every request (the
//! `User-Agent` carries `ROSTER_INSTANCE`).
//!
//! The two daemons differ only in their `[daemon]` tables: their lease `name`, and each its own
//! `state_dir`, since the audit journal is locked by the process writing it and a second daemon
//! on the same folder would fail every run. Each serves `/healthz` and `/metrics` on
//! 127.0.0.1:0, which is how the tests see roles.
//!
//! The bounds asserted are the (takeover within 2 × TTL, writes stopping within the TTL
//! of etcd going away) plus a stated slack for a call already in flight, nothing else. So that
//! they hold on a loaded two-core machine, the tests of this file run one at a time (each brings
//! up an etcd and two daemons; four sets at once would measure the scheduler, not roster), and
//! on a multi-threaded runtime, so that the simulator keeps answering while the test waits on
//! etcd's harness.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use support::World;
use support::daemon::RosterProcess;
use support::etcd::Etcd;

/// The lease's TTL in every test: the smallest roster accepts, so that the bounds are short.
const TTL: Duration = Duration::from_secs(3);

/// The slack allowed past a bound for a call already on its way (the simulator's latency is
/// 30 ms; a second covers it and a loaded scheduler).
const IN_FLIGHT: Duration = Duration::from_secs(1);

/// The simulator's added latency in the long applies: with `concurrency = 2`, 1,000 calls take
/// about 15 s.
const LATENCY: Duration = Duration::from_millis(30);

/// How long anything not bounded by the issue may take (start-up, convergence).
const PATIENCE: Duration = Duration::from_secs(40);

/// The tests of this file, one at a time (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts an etcd off the runtime's threads (the harness blocks until etcd is healthy).
async fn start_etcd() -> Etcd {
    tokio::task::spawn_blocking(Etcd::start).await.unwrap()
}

/// `n` desired groups, `g000`…, each with one member out of 50 users: `2n` changes, `2n` write
/// calls on Contensis (a create and a bulk add per group).
fn desired(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("g{i:03}"), format!("u{:03}", i % 50)))
        .collect()
}

/// The seed's users, every member of [`desired`].
fn users_seed() -> String {
    let users: Vec<String> = (0..50).map(|u| format!("u{u:03}")).collect();
    format!("users = {users:?}\n")
}

fn groups_toml(desired: &[(String, String)]) -> String {
    desired
        .iter()
        .map(|(g, m)| support::group(g, "", &[m.as_str()], &[]))
        .collect()
}

/// Writes `<name>.toml`: the world's config with `target_extra` in its target, then a
/// `[daemon]` table on a one-second schedule, with a listener, a `state_dir` of its own and the
/// lease on `etcd` named `name`.
fn config(w: &World, etcd: &Etcd, name: &str, target_extra: &str) -> PathBuf {
    w.write_config(target_extra);
    let base = std::fs::read_to_string(w.config_path()).unwrap();
    let text = format!(
        "{base}\n[daemon]\nschedule = \"* * * * * *\"\nlisten = \"127.0.0.1:0\"\n\
         state_dir = \"state-{name}\"\nwatch = false\n\n[daemon.lease]\nbackend = \"etcd\"\n\
         endpoints = [\"{}\"]\nkey = \"/roster/leader\"\nttl = \"{}s\"\nname = \"{name}\"\n",
        etcd.endpoint(),
        TTL.as_secs(),
    );
    let path = w.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `roster run`, killed when dropped, with its standard error collected.
struct Daemon {
    /// Its `ROSTER_INSTANCE` and lease name.
    name: &'static str,
    process: RosterProcess,
    /// `http://127.0.0.1:PORT`, its listener.
    url: String,
}

impl Daemon {
    /// Starts `roster --config CONFIG run` as instance `name`; returns once it listens.
    async fn start(name: &'static str, config: PathBuf) -> Daemon {
        let process = RosterProcess::spawn(&config, &[], &[("ROSTER_INSTANCE", name)]);
        let serving = "serving /healthz, /metrics and /trigger";
        let line = poll(&format!("{name} to listen"), || process.line(serving)).await;
        let addr = line.split("listen=").nth(1).unwrap().trim().to_owned();
        Daemon {
            name,
            process,
            url: format!("http://{addr}"),
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// How many log lines contain `text`.
    fn count(&self, text: &str) -> usize {
        self.process.count(text)
    }

    /// The `role` of `/healthz` (`active` or `standby`); `None` when it does not answer.
    async fn role(&self) -> Option<String> {
        let resp = http()
            .get(format!("{}/healthz", self.url))
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = resp.json().await.ok()?;
        v["role"].as_str().map(str::to_owned)
    }

    /// The value of an unlabelled sample of `/metrics`.
    async fn metric(&self, series: &str) -> Option<f64> {
        let text = http()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
    }

    /// `kill -9`, and waits until the process is gone.
    async fn kill9(&mut self) {
        self.process.child.start_kill().unwrap();
        self.process.child.wait().await.unwrap();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Polls `check` every 50 ms until it gives a value; fails after [`PATIENCE`].
async fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both daemons, started at once on configs alike but for their `[daemon]` tables.
async fn pair(w: &World, etcd: &Etcd, target_extra: &str) -> [Daemon; 2] {
    let a = config(w, etcd, "roster-a", target_extra);
    let b = config(w, etcd, "roster-b", target_extra);
    let (a, b) = tokio::join!(Daemon::start("roster-a", a), Daemon::start("roster-b", b));
    [a, b]
}

/// Waits, at most `within`, until exactly one daemon says it is active and the other standby;
/// the index of the active one.
async fn one_active(ds: &[Daemon; 2], within: Duration) -> usize {
    let until = Instant::now() + within;
    loop {
        let roles = (ds[0].role().await, ds[1].role().await);
        match (roles.0.as_deref(), roles.1.as_deref()) {
            (Some("active"), Some("standby")) => return 0,
            (Some("standby"), Some("active")) => return 1,
            _ => {}
        }
        assert!(
            Instant::now() < until,
            "no single active daemon within {within:?} (roles {roles:?});\n\
             {} log:\n{}\n{} log:\n{}",
            ds[0].name,
            ds[0].log(),
            ds[1].name,
            ds[1].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One write call of the simulator's log.
#[derive(Debug)]
struct Write {
    /// Its place in the whole log (reads included): the log is in arrival order.
    index: usize,
    #[allow(dead_code)] // Shown through `Debug` when a test fails.
    line: String,
    /// The instance that sent it, from its user agent.
    instance: String,
}

/// The write calls so far: any method but GET and HEAD, the token endpoint aside (a standby
/// authenticates to read, as the active does).
fn writes(w: &World) -> Vec<Write> {
    w.sim
        .contensis
        .calls_with_agent()
        .into_iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let (line, agent) = entry.split_once('\t')?;
            let (method, path) = line.split_once(' ')?;
            if matches!(method, "GET" | "HEAD") || path.starts_with("/authenticate/") {
                return None;
            }
            let instance = agent
                .rsplit_once('(')
                .and_then(|(_, i)| i.strip_suffix(')'))
                .unwrap_or(agent);
            Some(Write {
                index,
                line: line.to_owned(),
                instance: instance.to_owned(),
            })
        })
        .collect()
}

/// How many writes `instance` sent.
fn writes_by(w: &World, instance: &str) -> usize {
    writes(w).iter().filter(|c| c.instance == instance).count()
}

/// Whether the simulator holds exactly `desired` beside its built-in `sys` group: every group
/// once, with its one member, and no other; `Err` says what is off.
fn converged(w: &World, desired: &[(String, String)]) -> Result<(), String> {
    let mut groups = w.sim.contensis.groups();
    groups.retain(|g| g.kind != "sys");
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &groups {
        *by_name.entry(g.name.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = by_name.iter().filter(|(_, n)| **n > 1).collect();
    if !twice.is_empty() {
        return Err(format!("groups made more than once: {twice:?}"));
    }
    let wrong: Vec<String> = desired
        .iter()
        .filter(|(name, member)| {
            !groups
                .iter()
                .any(|g| &g.name == name && g.members.len() == 1 && g.members.contains(member))
        })
        .map(|(name, _)| name.clone())
        .collect();
    if !wrong.is_empty() || groups.len() != desired.len() {
        return Err(format!(
            "{} groups in the simulator for {} desired; {} missing or with the wrong members \
             (first: {:?})",
            groups.len(),
            desired.len(),
            wrong.len(),
            wrong.first()
        ));
    }
    Ok(())
}

/// Waits until the simulator holds `desired`; the daemons' logs tell why not.
async fn converge(w: &World, desired: &[(String, String)], ds: &[&Daemon]) {
    let until = Instant::now() + PATIENCE;
    loop {
        match converged(w, desired) {
            Ok(()) => return,
            Err(why) => assert!(
                Instant::now() < until,
                "not converged within {PATIENCE:?}: {why};\n{}",
                ds.iter()
                    .map(|d| format!("{} log:\n{}", d.name, d.log()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The summary line of a standby's run (a plan): `run finished: 1 target, N changes pending
/// (dry run) in …`.
const PLANNED: &str = "pending (dry run)";

/// The summary line of a run that wrote: `run finished: 1 target, N changes applied, …`.
const APPLIED: &str = "changes applied";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_writes() {
    let _serial = SERIAL.lock().await;
    let etcd = start_etcd().await;
    let desired = desired(20);
    let w = World::new(&users_seed(), &groups_toml(&desired), "").await;
    let ds = pair(&w, &etcd, "").await;
    let first = one_active(&ds, PATIENCE).await;
    let (active, standby) = (&ds[first], &ds[1 - first]);
    converge(&w, &desired, &[&ds[0], &ds[1]]).await;

    // Several ticks: the roles hold at every look, and both daemons keep running (the standby
    // planning).
    let runs = (active.count("run finished"), standby.count(PLANNED));
    let until = Instant::now() + PATIENCE;
    while active.count("run finished") < runs.0 + 4 || standby.count(PLANNED) < runs.1 + 4 {
        assert!(Instant::now() < until, "the daemons stopped running");
        assert_eq!(
            (active.role().await, standby.role().await),
            (Some("active".to_owned()), Some("standby".to_owned())),
            "the roles changed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Between the looks too: the active took the lease once and never let it go; the standby
    // never had it.
    assert_eq!(
        active.count("holds the lease: active"),
        1,
        "{}",
        active.log()
    );
    for lost in [
        "cannot prove the lease",
        "no longer this daemon's",
        "cannot be reached",
    ] {
        assert_eq!(active.count(lost), 0, "{}", active.log());
    }
    assert_eq!(
        standby.count("holds the lease: active"),
        0,
        "{}",
        standby.log()
    );
    // The standby plans and never applies; the active applies.
    assert!(standby.count(PLANNED) >= 4, "{}", standby.log());
    assert_eq!(standby.count(APPLIED), 0, "{}", standby.log());
    assert!(active.count(APPLIED) >= 4, "{}", active.log());

    let ws = writes(&w);
    assert_eq!(ws.len(), 2 * desired.len(), "{ws:#?}");
    let strays: Vec<&Write> = ws.iter().filter(|c| c.instance != active.name).collect();
    assert!(
        strays.is_empty(),
        "writes not from {}: {strays:#?}",
        active.name
    );

    for (d, on) in [(active, 1.0), (standby, 0.0)] {
        assert_eq!(
            d.metric("roster_lease_active").await,
            Some(on),
            "{}",
            d.name
        );
        assert_eq!(
            d.metric("roster_lease_config_skew").await,
            Some(0.0),
            "{}",
            d.name
        );
    }
}

/// A simulator answering every call after [`LATENCY`], and a target sending two calls at a
/// time: the applies of these tests take many seconds, long enough to cut into.
fn slow(w: &World) {
    w.sim.contensis.set_faults(Faults {
        latency: Some(LATENCY),
        ..Faults::default()
    });
}

const TWO_AT_A_TIME: &str = "concurrency = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_active_mid_apply_hands_over_within_two_ttls_and_converges() {
    let _serial = SERIAL.lock().await;
    let etcd = start_etcd().await;
    // 500 groups of one member: 1,000 changes, 1,000 write calls, about 15 s of calls.
    let desired = desired(500);
    let w = World::new(&users_seed(), &groups_toml(&desired), TWO_AT_A_TIME).await;
    slow(&w);
    let mut ds = pair(&w, &etcd, TWO_AT_A_TIME).await;
    let first = one_active(&ds, PATIENCE).await;
    let (dead, heir) = (ds[first].name, ds[1 - first].name);
    poll("the active daemon's first 100 writes", || {
        (writes_by(&w, dead) >= 100).then_some(())
    })
    .await;

    let killed = Instant::now();
    ds[first].kill9().await;
    // Every call the dead daemon sent arrived before this point of the log.
    let after_kill = w.sim.contensis.calls().len();
    let takeover = loop {
        if ds[1 - first].role().await.as_deref() == Some("active") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < 2 * TTL,
            "{heir} was not active within 2 × TTL of the kill; its log:\n{}",
            ds[1 - first].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let written = writes_by(&w, dead);
    eprintln!("kill -9 of {dead} after {written} writes: {heir} active {takeover:?} later");
    assert!(takeover < 2 * TTL, "takeover took {takeover:?}");

    converge(&w, &desired, &[&ds[0], &ds[1]]).await;
    let ws = writes(&w);
    let (before, after): (Vec<&Write>, Vec<&Write>) = ws.iter().partition(|c| c.index < after_kill);
    let strays: Vec<_> = before.iter().filter(|c| c.instance != dead).collect();
    assert!(
        strays.is_empty(),
        "writes before the kill not from {dead}: {strays:#?}"
    );
    let strays: Vec<_> = after.iter().filter(|c| c.instance != heir).collect();
    assert!(
        strays.is_empty(),
        "writes after the kill not from {heir}: {strays:#?}"
    );
    assert!(!after.is_empty(), "{heir} wrote nothing");
    eprintln!(
        "{} writes by {dead}, {} by {heir}, for {} changes",
        before.len(),
        after.len(),
        2 * desired.len()
    );
}

/// How etcd goes away.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGTERM, as an operator stops it; connections are refused at once.
    Stop,
    /// SIGSTOP: connections are accepted and never answered, as with a hung member.
    Pause,
}

/// When the simulator's call log grew: `(instant, length)` every 10 ms until stopped, so that
/// each call's arrival is known to within the sampling step.
struct Arrivals {
    samples: Arc<Mutex<Vec<(Instant, usize)>>>,
    stop: Arc<AtomicBool>,
}

impl Arrivals {
    fn start(w: &World) -> Arrivals {
        let sim = w.sim.contensis.clone();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, done) = (Arc::clone(&samples), Arc::clone(&stop));
        // A thread of its own: the runtime's threads may be busy with the daemons' calls.
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let n = sim.calls().len();
                sink.lock().unwrap().push((Instant::now(), n));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Arrivals { samples, stop }
    }

    /// The first instant the log was seen holding the call at `index`: no earlier than its
    /// arrival, at most a sampling step (and the sampler's scheduling) later.
    fn seen(&self, index: usize) -> Option<Instant> {
        let samples = self.samples.lock().unwrap();
        samples.iter().find(|(_, n)| *n > index).map(|(at, _)| *at)
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Issue 13: etcd going away during a long apply stops every write within the TTL (plus
/// [`IN_FLIGHT`]); both daemons turn standby and keep planning; etcd back, one is active again
/// within a few TTLs and the state converges, never with two writers at once.
async fn etcd_outage_during_an_apply(outage: Outage) {
    let mut etcd = start_etcd().await;
    // 300 groups of one member: 600 write calls, about 9 s of them.
    let desired = desired(300);
    let w = World::new(&users_seed(), &groups_toml(&desired), TWO_AT_A_TIME).await;
    slow(&w);
    let ds = pair(&w, &etcd, TWO_AT_A_TIME).await;
    let first = one_active(&ds, PATIENCE).await;
    let writer = ds[first].name;
    poll("the active daemon's first 100 writes", || {
        (writes_by(&w, writer) >= 100).then_some(())
    })
    .await;
    let plans = [ds[0].count(PLANNED), ds[1].count(PLANNED)];
    let arrivals = Arrivals::start(&w);

    let gone = Instant::now();
    let at_outage = w.sim.contensis.calls().len();
    etcd = match outage {
        Outage::Stop => tokio::task::spawn_blocking(move || {
            etcd.stop();
            etcd
        })
        .await
        .unwrap(),
        Outage::Pause => {
            etcd.pause();
            etcd
        }
    };
    let bound = gone + TTL + IN_FLIGHT;

    // Both standby, within the TTL.
    let both_standby = loop {
        let roles = (ds[0].role().await, ds[1].role().await);
        if roles == (Some("standby".to_owned()), Some("standby".to_owned())) {
            break gone.elapsed();
        }
        assert!(
            gone.elapsed() < TTL,
            "not both standby within the TTL of etcd's {outage:?}: {roles:?}; {writer}'s log:\n{}",
            ds[first].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Both keep planning meanwhile, and stay standby: watched until well past the bound, so that
    // a late write would show.
    let until = Instant::now() + PATIENCE;
    while Instant::now() < bound + 2 * IN_FLIGHT
        || ds[0].count(PLANNED) <= plans[0]
        || ds[1].count(PLANNED) <= plans[1]
    {
        assert!(
            Instant::now() < until,
            "the daemons did not plan while etcd was down:\n{}\n{}",
            ds[0].log(),
            ds[1].log()
        );
        for d in &ds {
            assert_eq!(d.role().await.as_deref(), Some("standby"), "{}", d.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during: Vec<Write> = writes(&w)
        .into_iter()
        .filter(|c| c.index >= at_outage)
        .collect();
    let last = during
        .last()
        .map(|c| arrivals.seen(c.index).unwrap().duration_since(gone));
    eprintln!(
        "etcd {outage:?}: {} writes arrived after it, the last {last:?} after; both standby \
         {both_standby:?} after",
        during.len()
    );
    if let Some(last) = last {
        assert!(
            last <= TTL + IN_FLIGHT,
            "a write arrived {last:?} after etcd's {outage:?}: {:?}",
            during.last()
        );
    }
    let strays: Vec<_> = during.iter().filter(|c| c.instance != writer).collect();
    assert!(
        strays.is_empty(),
        "writes during the outage not from {writer}: {strays:#?}"
    );
    drop(arrivals);
    held_back_writes_are_journalled_not_sent(&w, writer);

    // etcd back: one active again within a few TTLs, and the state converges.
    let at_return = w.sim.contensis.calls().len();
    // Dropping the harness kills etcd: it is kept to the end.
    let (_etcd, back) = match outage {
        Outage::Stop => tokio::task::spawn_blocking(move || {
            etcd.restart();
            (etcd, Instant::now())
        })
        .await
        .unwrap(),
        Outage::Pause => {
            etcd.resume();
            (etcd, Instant::now())
        }
    };
    let again = one_active(&ds, 3 * TTL).await;
    let took = back.elapsed();
    eprintln!(
        "etcd back ({outage:?}): {} active again {took:?} later",
        ds[again].name
    );
    converge(&w, &desired, &[&ds[0], &ds[1]]).await;
    let strays: Vec<_> = writes(&w)
        .into_iter()
        .filter(|c| c.index >= at_return && c.instance != ds[again].name)
        .collect();
    assert!(
        strays.is_empty(),
        "writes after etcd came back not from {}: {strays:#?}",
        ds[again].name
    );
}

/// The writes `writer` held back when its lease was lost: calls under way ahead of their turn
/// had their intents written while they waited for a slot, and each such intent has the outcome
/// `not_sent`; no intent is left without an outcome. At most twice the concurrency (two at a
/// time) were under way.
fn held_back_writes_are_journalled_not_sent(w: &World, writer: &str) {
    use roster::journal::{Kind, WriteOutcome};
    let state = w.dir.path().join(format!("state-{writer}"));
    let open = roster::journal::read::pending(&state).expect("the journal reads");
    assert!(open.is_empty(), "intents without an outcome: {open:#?}");
    let lines = support::journal_lines(&state);
    let not_sent: Vec<_> = lines
        .iter()
        .filter(|l| l.kind == Kind::Outcome && l.outcome == Some(WriteOutcome::NotSent))
        .collect();
    assert!(
        (1..=4).contains(&not_sent.len()),
        "{} writes held back after their intents: {not_sent:#?}",
        not_sent.len()
    );
    for l in not_sent {
        assert!(
            l.status == Some(0) && l.message.as_deref().is_some_and(|m| !m.is_empty()),
            "{l:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_stops_writes_within_the_ttl_and_a_restart_makes_one_active_again() {
    let _serial = SERIAL.lock().await;
    etcd_outage_during_an_apply(Outage::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_paused_stops_writes_within_the_ttl_and_a_resume_makes_one_active_again() {
    let _serial = SERIAL.lock().await;
    etcd_outage_during_an_apply(Outage::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_skew_is_reported_not_fought() {
    let _serial = SERIAL.lock().await;
    let etcd = start_etcd().await;
    let desired = desired(5);
    let w = World::new(&users_seed(), &groups_toml(&desired), "").await;
    let a = Daemon::start("roster-a", config(&w, &etcd, "roster-a", "")).await;
    poll("roster-a to hold the lease", || {
        (a.count("holds the lease: active") == 1).then_some(())
    })
    .await;
    converge(&w, &desired, &[&a]).await;
    // The same target with another limit: a config the active daemon does not run with.
    let b = Daemon::start(
        "roster-b",
        config(&w, &etcd, "roster-b", "max_deletes = 7\n"),
    )
    .await;
    poll("roster-b to report the skew", || {
        (b.count("roster_lease_config_skew") >= 1).then_some(())
    })
    .await;
    // It says so in its metrics and stays standby, tick after tick, writing nothing.
    let plans = b.count(PLANNED);
    let until = Instant::now() + PATIENCE;
    while b.count(PLANNED) < plans + 3 {
        assert!(
            Instant::now() < until,
            "roster-b stopped planning:\n{}",
            b.log()
        );
        assert_eq!(b.role().await.as_deref(), Some("standby"), "{}", b.log());
        assert_eq!(a.role().await.as_deref(), Some("active"), "{}", a.log());
        assert_eq!(b.metric("roster_lease_config_skew").await, Some(1.0));
        assert_eq!(b.metric("roster_lease_active").await, Some(0.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.metric("roster_lease_config_skew").await, Some(0.0));
    assert_eq!(b.count("holds the lease: active"), 0, "{}", b.log());
    assert_eq!(writes_by(&w, "roster-b"), 0);
    // Said once, not at every try.
    assert_eq!(b.count("roster_lease_config_skew"), 1, "{}", b.log());
}

/// The standby's own lease lapses while etcd hangs (it renews it only between tries for the
/// key, and every try fails meanwhile). Once etcd answers again with the active one gone, the
/// standby must not go on trying for the key with that dead lease, which etcd refuses for as
/// long as it is tried: it takes a new one and becomes active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_left_alone_after_etcd_hung_past_its_lease_takes_over() {
    let _serial = SERIAL.lock().await;
    let etcd = start_etcd().await;
    let desired = desired(5);
    let w = World::new(&users_seed(), &groups_toml(&desired), "").await;
    let mut ds = pair(&w, &etcd, "").await;
    let first = one_active(&ds, PATIENCE).await;
    converge(&w, &desired, &[&ds[0], &ds[1]]).await;

    etcd.pause();
    // The outage must outlast every lease: a fixed wait is the point here.
    tokio::time::sleep(TTL + 2 * IN_FLIGHT).await;
    ds[first].kill9().await;
    etcd.resume();
    let back = Instant::now();
    let survivor = &ds[1 - first];
    loop {
        if survivor.role().await.as_deref() == Some("active") {
            break;
        }
        assert!(
            back.elapsed() < 3 * TTL,
            "{} was not active within 3 × TTL of etcd's return; its log:\n{}",
            survivor.name,
            survivor.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "etcd resumed with the active gone: {} active {:?} later",
        survivor.name,
        back.elapsed()
    );
}
