//! `roster run`, the daemon, as systemd and an operator meet it: the real binary against the
//! in-process Contensis simulator, on a one-second schedule, checked by what it does (the
//! simulator's groups, its call log, the sd_notify datagrams, the exit status, the log lines).

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is a failure with its place.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster::report;
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use support::daemon::RosterProcess;
use support::{World, group, roster_at, stderr, stdout};

const USERS: &str = r#"users = ["alice", "bob", "carol"]"#;

/// A `[daemon]` table running every second (the last table of the config, so `World` can add it
/// after its target's keys).
const EVERY_SECOND: &str = "\n[daemon]\nschedule = \"* * * * * *\"\n";

/// How long anything the tests wait for may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// Runs `check` every `every` until it gives a value, failing the test after [`PATIENCE`] with the
/// message of its last `Err`.
async fn poll<T>(every: Duration, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let until = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < until, "{why}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `ok` until it holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    poll(Duration::from_millis(25), async || {
        ok().then_some(())
            .ok_or_else(|| format!("timed out waiting for: {what}"))
    })
    .await;
}

/// The members of `name` in the simulator (empty when it does not exist).
fn members(w: &World, name: &str) -> Vec<String> {
    w.sim
        .contensis
        .group(name)
        .map(|g| g.members.into_iter().collect())
        .unwrap_or_default()
}

/// A running `roster run`, with its standard error collected line by line.
struct Daemon(RosterProcess);

impl std::ops::Deref for Daemon {
    type Target = RosterProcess;
    fn deref(&self) -> &RosterProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut RosterProcess {
        &mut self.0
    }
}

impl Daemon {
    /// Starts `roster --config CONFIG run ARGS` with extra environment.
    fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon(RosterProcess::spawn(config, args, env))
    }

    /// Waits until `n` log lines contain `text`.
    async fn wait_log(&self, text: &str, n: usize) {
        poll(Duration::from_millis(25), async || {
            (self.count(text) >= n).then_some(()).ok_or_else(|| {
                format!(
                    "timed out waiting for {n} log lines with {text:?}; the log:\n{}",
                    self.log()
                )
            })
        })
        .await;
    }

    /// Sends `signal` (`HUP`, `TERM`) with the `kill` command.
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to end, at most `within`.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "roster run did not exit within {within:?}; the log:\n{}",
                self.log()
            ),
        }
    }

    /// SIGTERM, then expects exit status 0 soon.
    async fn stop(mut self) {
        self.signal("TERM");
        let status = self.exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "the log:\n{}", self.log());
    }
}

/// The datagrams sent to a `NOTIFY_SOCKET` the test binds.
struct NotifySocket {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the test (and with it the receiver) is gone.
            while Arc::strong_count(&sink) > 1 {
                if let Ok(n) = sock.recv(&mut buf) {
                    sink.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        NotifySocket { path, got }
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    /// The index of the first message at or after `from` with a line starting with `prefix`.
    fn find(&self, from: usize, prefix: &str) -> Option<usize> {
        self.messages()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, m)| m.lines().any(|l| l.starts_with(prefix)))
            .map(|(i, _)| i)
    }

    /// Waits for a message at or after `from` with a line starting with `prefix`; its index.
    async fn wait(&self, from: usize, prefix: &str) -> usize {
        poll(Duration::from_millis(25), async || {
            self.find(from, prefix).ok_or_else(|| {
                format!(
                    "no {prefix:?} after message {from}; got {:?}",
                    self.messages()
                )
            })
        })
        .await
    }
}

#[tokio::test]
async fn runs_on_the_schedule_converge_and_put_later_drift_right() {
    let w = World::new(
        USERS,
        &group("G", "d", &["alice", "bob"], &[]),
        EVERY_SECOND,
    )
    .await;
    let d = Daemon::start(&w.config_path(), &[], &[]);
    eventually("the first run creates G", || {
        members(&w, "G") == ["alice", "bob"]
    })
    .await;
    d.wait_log("run finished: 1 target, 3 changes applied, 0 failed", 1)
        .await;

    // Someone edits the group by hand: a later tick puts it right.
    w.sim
        .contensis
        .insert_group("G", Some("d"), &["alice", "carol"], &[]);
    eventually("a later tick puts the drift right", || {
        members(&w, "G") == ["alice", "bob"]
    })
    .await;
    // And a later edit of the desired state is taken up without any signal: sources are read at
    // every run.
    w.write_groups(&group("G", "d", &["alice", "bob", "carol"], &[]));
    eventually("the desired state is read again", || {
        members(&w, "G") == ["alice", "bob", "carol"]
    })
    .await;
    d.wait_log("run finished: 1 target, 0 changes applied, 0 failed", 1)
        .await;
    d.stop().await;
}

#[tokio::test]
async fn sighup_takes_up_a_changed_config_and_keeps_the_old_one_when_the_new_is_broken() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), EVERY_SECOND).await;
    let d = Daemon::start(&w.config_path(), &[], &[]);
    eventually("G is created", || members(&w, "G") == ["alice"]).await;
    let good = std::fs::read_to_string(w.config_path()).unwrap();

    // A misspelt key: refused with its place; the old config stays in force.
    let broken = good.replace("schedule =", "shedule =");
    let line = broken
        .lines()
        .position(|l| l.starts_with("shedule"))
        .unwrap()
        + 1;
    std::fs::write(w.config_path(), &broken).unwrap();
    d.signal("HUP");
    d.wait_log("config reload refused", 1).await;
    let place = format!(
        "{}:{line}:1: unknown key `shedule`",
        w.config_path().display()
    );
    assert!(d.log().contains(&place), "no {place:?} in:\n{}", d.log());

    // Still reconciling, with the old config.
    w.sim.contensis.insert_group("G", None, &[], &[]);
    eventually("the old config still reconciles", || {
        members(&w, "G") == ["alice"]
    })
    .await;

    // A valid config reading another desired-state file: in force from the next run.
    std::fs::write(
        w.dir.path().join("other.toml"),
        group("H", "", &["bob"], &[]),
    )
    .unwrap();
    std::fs::write(
        w.config_path(),
        good.replace("path = \"groups.toml\"", "path = \"other.toml\""),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_log("config reloaded", 1).await;
    eventually("the new desired state is reconciled", || {
        members(&w, "H") == ["bob"]
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn a_failing_run_leaves_the_daemon_up_and_the_next_tick_tries_again() {
    let w = World::new(USERS, "[[group]\nname = ", EVERY_SECOND).await;
    let d = Daemon::start(&w.config_path(), &[], &[]);
    d.wait_log("run failed", 2).await;
    assert_eq!(w.sim.contensis.writes(), 0);
    w.write_groups(&group("G", "", &["alice"], &[]));
    eventually("a later tick succeeds", || members(&w, "G") == ["alice"]).await;
    d.stop().await;
}

#[tokio::test]
async fn sigterm_during_a_slow_apply_stops_between_calls_and_the_next_apply_converges() {
    // G loses its 40 members: one DELETE each (Contensis has no bulk remove).
    let users: Vec<String> = (0..40).map(|i| format!("u{i:02}")).collect();
    let seed =
        format!("users = {users:?}\n[[contensis.group]]\nname = \"G\"\nmembers = {users:?}\n");
    // Once a year: only the start-up run happens. Emptying G is what max_group_shrink refuses,
    // so it is off.
    let daemon = "concurrency = 1\nmax_deletes = 100\nmax_group_shrink = \"100%\"\n\n[daemon]\n\
                  schedule = \"0 0 0 1 1 *\"\nshutdown_timeout = \"10s\"\n";
    let w = World::new(&seed, &group("G", "", &[], &[]), daemon).await;
    let latency = Duration::from_millis(80);
    w.sim.contensis.set_faults(Faults {
        latency: Some(latency),
        ..Faults::default()
    });
    let mut d = Daemon::start(&w.config_path(), &[], &[]);
    eventually("the apply has begun", || w.sim.contensis.writes() >= 3).await;
    let asked = Instant::now();
    d.signal("TERM");
    let status = d.exit(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "the log:\n{}", d.log());
    let removed = 40 - members(&w, "G").len();
    // The rest would have taken 10 calls or more at 80 ms each.
    assert!(
        took < Duration::from_secs(3) && removed < 30,
        "stopped after {took:?} with {removed} members removed"
    );
    // Every member call that was sent landed: none was cut off half-way.
    let member_calls = w
        .sim
        .contensis
        .calls()
        .iter()
        .filter(|c| c.starts_with("DELETE ") && c.contains("/users/"))
        .count();
    assert_eq!(member_calls, removed, "{:?}", w.sim.contensis.calls());
    d.wait_log("stopping", 1).await;

    w.sim.contensis.set_faults(Faults::default());
    let applied = w.apply(Some(100)).await;
    assert_eq!(report::apply_exit(&applied), report::EXIT_OK);
    assert!(members(&w, "G").is_empty());
    assert!(!w.plan().await.any_changes());
}

#[tokio::test]
async fn a_stop_waits_no_longer_than_shutdown_timeout_for_a_call_in_flight() {
    let seed = format!("{USERS}\n[[contensis.group]]\nname = \"G\"\n");
    let daemon =
        "concurrency = 1\n\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nshutdown_timeout = \"1s\"\n";
    let w = World::new(&seed, &group("G", "", &["alice", "bob"], &[]), daemon).await;
    // Every call takes far longer than the stop may wait, so the start-up run is in flight (its
    // first call unanswered) when the stop comes.
    w.sim.contensis.set_faults(Faults {
        latency: Some(Duration::from_secs(20)),
        ..Faults::default()
    });
    let mut d = Daemon::start(&w.config_path(), &[], &[]);
    eventually("the start-up run has sent its first call", || {
        !w.sim.contensis.calls().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    d.signal("TERM");
    let status = d.exit(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "the log:\n{}", d.log());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "stopped after {took:?}; the log:\n{}",
        d.log()
    );
}

#[tokio::test]
async fn a_run_that_outlasts_its_interval_skips_the_next_ticks() {
    let w = World::new(USERS, &group("G", "", &["alice", "bob"], &[]), EVERY_SECOND).await;
    w.sim.contensis.set_faults(Faults {
        latency: Some(Duration::from_millis(300)),
        ..Faults::default()
    });
    let d = Daemon::start(&w.config_path(), &[], &[]);
    d.wait_log("scheduled runs were skipped", 1).await;
    d.stop().await;
}

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), EVERY_SECOND).await;
    let sock = NotifySocket::bind(w.dir.path());
    let d = Daemon::start(
        &w.config_path(),
        &[],
        &[
            ("NOTIFY_SOCKET", sock.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let ready = sock.wait(0, "READY=1").await;
    let status = sock.wait(ready, "STATUS=last run ").await;
    let line = sock.messages()[status].clone();
    assert!(
        line.contains(": 1 target, 2 changes applied, 0 failed"),
        "{line:?}"
    );
    sock.wait(0, "WATCHDOG=1").await;

    d.signal("HUP");
    let reloading = sock.wait(status, "RELOADING=1").await;
    assert!(
        sock.messages()[reloading].contains("MONOTONIC_USEC="),
        "{:?}",
        sock.messages()[reloading]
    );
    sock.wait(reloading + 1, "READY=1").await;

    d.signal("TERM");
    sock.wait(reloading, "STOPPING=1").await;
    d.stop().await;
}

#[tokio::test]
async fn a_dry_run_daemon_reports_drift_and_never_writes() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), EVERY_SECOND).await;
    let d = Daemon::start(&w.config_path(), &["--dry-run"], &[]);
    d.wait_log("run finished: 1 target, 2 changes pending (dry run)", 2)
        .await;
    assert_eq!(w.sim.contensis.writes(), 0);
    d.stop().await;
}

#[tokio::test]
async fn once_exits_with_the_codes_of_apply() {
    let w = World::new(
        USERS,
        &group("G", "", &["alice", "bob"], &[]),
        "retries = 0\n",
    )
    .await;
    let out = w.roster(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Apply complete: 3 changes applied, 0 failed."),
        "{}",
        stdout(&out)
    );
    assert_eq!(members(&w, "G"), ["alice", "bob"]);

    // The target is down: 1, as apply.
    w.sim.contensis.set_faults(Faults {
        error_rate: 1.0,
        error_status: 503,
        ..Faults::default()
    });
    let out = w.roster(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[tokio::test]
async fn dry_run_once_writes_nothing_and_exits_2_while_drift_is_pending() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), "").await;
    let out = w.roster(&["run", "--once", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Plan: 2 to add, 0 to change, 0 to remove."),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.sim.contensis.writes(), 0);
    let writes: Vec<String> = w
        .sim
        .contensis
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET ") && !c.contains("/token"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    w.apply(None).await;
    let out = w.roster(&["run", "--once", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A world whose group `G` holds ten members and whose desired state keeps four: a plan that
/// `max_group_shrink` (50%) refuses.
async fn shrinking(extra: &str) -> World {
    let ten: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let seed = format!("users = {ten:?}\n[[contensis.group]]\nname = \"G\"\nmembers = {ten:?}\n");
    let four: Vec<&str> = ten[..4].iter().map(String::as_str).collect();
    World::new(&seed, &group("G", "", &four, &[]), extra).await
}

#[tokio::test]
async fn once_exits_3_on_a_refused_plan_dry_run_or_not_until_the_limit_is_lifted() {
    let w = shrinking("").await;
    for args in [&["run", "--once", "--dry-run"][..], &["run", "--once"][..]] {
        let out = w.roster(args).await;
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("\"G\" 10 → 4 members"),
            "{args:?}: {}",
            stdout(&out)
        );
        assert_eq!(w.sim.contensis.writes(), 0, "{args:?}");
    }
    let out = w
        .roster(&["run", "--once", "--dry-run", "--max-group-shrink", "100%"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(w.sim.contensis.writes(), 0);
    let out = w
        .roster(&["run", "--once", "--max-group-shrink", "60%"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(members(&w, "G"), ["u0", "u1", "u2", "u3"]);

    let out = w
        .roster(&["run", "--once", "--max-group-shrink", "5"])
        .await;
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(
        stderr(&out).contains("invalid percentage `5`: write it with a % sign"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_dry_run_daemon_reports_a_refused_plan_as_refused_and_pending() {
    let w = shrinking(EVERY_SECOND).await;
    let d = Daemon::start(&w.config_path(), &["--dry-run"], &[]);
    d.wait_log(
        "run finished: 1 target, 6 changes pending (dry run); refused: cms",
        1,
    )
    .await;
    assert_eq!(w.sim.contensis.writes(), 0);
    d.stop().await;
}

#[tokio::test]
async fn a_daemon_without_a_daemon_table_is_a_clear_error() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), "").await;
    let out = roster_at(&w.config_path(), &["run"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no [daemon] table"), "{err}");
    assert!(err.contains("roster run --once"), "{err}");
    assert_eq!(w.sim.contensis.writes(), 0);
}

#[tokio::test]
async fn ready_comes_once_the_listener_is_up_and_a_taken_address_is_fatal() {
    let w = World::new(
        USERS,
        &group("G", "", &["alice"], &[]),
        &format!("{EVERY_SECOND}listen = \"127.0.0.1:0\"\n"),
    )
    .await;
    let (d, url) = daemon_with_listener(&w).await;
    tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    d.stop().await;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    w.write_config(&format!("{EVERY_SECOND}listen = \"{addr}\"\n"));
    let out = roster_at(&w.config_path(), &["run"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "listening on {addr} for /healthz, /metrics and /trigger"
        )),
        "{}",
        stderr(&out)
    );
}

/// Starts a daemon with a listener on a free port and returns it with the listener's URL.
async fn daemon_with_listener(w: &World) -> (Daemon, String) {
    let sock = NotifySocket::bind(w.dir.path());
    let d = Daemon::start(
        &w.config_path(),
        &[],
        &[("NOTIFY_SOCKET", sock.path.to_str().unwrap())],
    );
    sock.wait(0, "READY=1").await;
    // READY comes over the notify socket and the log line through a pipe a reader thread
    // drains: under load the line may land a moment after READY.
    let line = "serving /healthz, /metrics and /trigger";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.count(line) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = d.log();
    let addr = log
        .lines()
        .find(|l| l.contains(line))
        .and_then(|l| l.split("listen=").nth(1))
        .unwrap_or_else(|| panic!("no listener address in:\n{log}"))
        .trim()
        .to_owned();
    (d, format!("http://{addr}"))
}

/// Parses Prometheus text exposition strictly: every line is a comment (`# HELP`/`# TYPE`) or
/// `name{label="value",...} number`; returns each sample's name-with-labels and value.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP roster_") || rest.starts_with("TYPE roster_"),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(labels.ends_with('}'), "unclosed labels: {line}");
            for pair in labels[1..labels.len() - 1]
                .split("\",")
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label {pair:?} in: {line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in: {line}"
                );
                let _ = v;
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        samples.push((series.to_owned(), value));
    }
    samples
}

/// The value of the sample named exactly `series` (with its labels), if any.
fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[tokio::test]
async fn metrics_parse_and_move_and_healthz_turns_503_while_the_target_fails() {
    let w = World::new(
        USERS,
        &group("G", "", &["alice", "bob"], &[]),
        &format!("{EVERY_SECOND}listen = \"127.0.0.1:0\"\n"),
    )
    .await;
    let (d, url) = daemon_with_listener(&w).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let resp = http.get(format!("{url}{path}")).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };

    // Runs happen: the success counter climbs, changes and API calls are counted.
    eventually("the group is created", || members(&w, "G").len() == 2).await;
    let every = Duration::from_millis(100);
    let mut first = 0.0;
    poll(every, async || {
        let (status, body) = get("/metrics").await;
        assert_eq!(status, 200);
        let s = parse_prometheus(&body);
        let runs = sample(&s, "roster_runs_total{outcome=\"success\"}").unwrap_or(0.0);
        if first == 0.0 && runs >= 1.0 {
            first = runs;
            assert_eq!(
                sample(
                    &s,
                    "roster_changes_total{target=\"cms\",kind=\"add_member\",outcome=\"applied\"}"
                ),
                Some(2.0),
                "{body}"
            );
            assert!(
                sample(&s, "roster_api_calls_total{target=\"cms\",status=\"200\"}").unwrap_or(0.0)
                    > 0.0,
                "{body}"
            );
            assert!(sample(&s, "roster_last_success_timestamp_seconds{target=\"cms\"}").is_some());
        } else if first > 0.0 && runs > first {
            return Ok(());
        }
        Err(format!("the run counter did not move:\n{body}"))
    })
    .await;
    let (status, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    // A broken config on SIGHUP is refused and counted; the daemon stays up.
    let good = std::fs::read_to_string(w.config_path()).unwrap();
    std::fs::write(w.config_path(), format!("{good}\nbogus = 1\n")).unwrap();
    d.signal("HUP");
    poll(every, async || {
        let s = parse_prometheus(&get("/metrics").await.1);
        if sample(&s, "roster_config_reloads_total{outcome=\"failure\"}") == Some(1.0) {
            assert_eq!(
                sample(&s, "roster_config_reloads_total{outcome=\"success\"}"),
                Some(0.0)
            );
            return Ok(());
        }
        Err("the failed reload was not counted".to_owned())
    })
    .await;
    std::fs::write(w.config_path(), good).unwrap();

    // The target fails: /healthz says 503 and names it; the failure counter climbs.
    w.sim.contensis.set_faults(Faults {
        error_rate: 1.0,
        error_status: 503,
        ..Faults::default()
    });
    poll(every, async || {
        let (status, body) = get("/healthz").await;
        if status == 503 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], "failing");
            assert_eq!(v["failing"], serde_json::json!(["cms"]));
            return Ok(());
        }
        Err(format!("healthz stayed {status}: {body}"))
    })
    .await;
    let (_, body) = get("/metrics").await;
    let s = parse_prometheus(&body);
    assert!(
        sample(&s, "roster_runs_total{outcome=\"failure\"}").unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(
        sample(&s, "roster_api_calls_total{target=\"cms\",status=\"503\"}").unwrap_or(0.0) >= 1.0,
        "{body}"
    );

    // It recovers: healthy again.
    w.sim.contensis.set_faults(Faults::default());
    poll(every, async || match get("/healthz").await.0 {
        200 => Ok(()),
        _ => Err("healthz did not recover".to_owned()),
    })
    .await;
    d.stop().await;
}

/// A `[daemon]` table whose schedule never comes in a test (once a year), with a listener and
/// the given extra keys: only triggers start runs.
fn triggered_only(extra: &str) -> String {
    format!(
        "\n[daemon]\nschedule = \"0 0 1 1 *\"\nrun_on_start = false\nlisten = \"127.0.0.1:0\"\n{extra}"
    )
}

/// The samples of the daemon's `/metrics`.
async fn metrics_of(base: &str) -> Vec<(String, f64)> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_prometheus(&text)
}

/// The value of the sample `series` in the daemon's `/metrics`, 0 when absent.
async fn metric(base: &str, series: &str) -> f64 {
    sample(&metrics_of(base).await, series).unwrap_or(0.0)
}

#[tokio::test]
async fn post_trigger_starts_a_run_and_a_burst_of_a_hundred_makes_one() {
    let w = World::new(
        USERS,
        &group("G", "", &["alice"], &[]),
        &triggered_only("watch = false\ndebounce = \"300ms\"\n"),
    )
    .await;
    let (d, base) = daemon_with_listener(&w).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(members(&w, "G").is_empty(), "a run started untriggered");

    let r = http.post(format!("{base}/trigger")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    eventually("the triggered run creates G", || {
        members(&w, "G") == ["alice"]
    })
    .await;
    d.wait_log("run finished", 1).await;

    // A hundred triggers within a second: one run (the burst may straddle a run's start, and
    // then exactly one more follows).
    w.write_groups(&group("G", "", &["alice", "bob"], &[]));
    let start = Instant::now();
    for _ in 0..100 {
        let r = http.post(format!("{base}/trigger")).send().await.unwrap();
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    eventually("the burst's run adds bob", || {
        members(&w, "G") == ["alice", "bob"]
    })
    .await;
    // Long enough for any queued follow-up to have run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = d.count("run finished");
    assert!(
        (2..=3).contains(&runs),
        "{runs} runs for two bursts; the log:\n{}",
        d.log()
    );
    assert_eq!(
        metric(&base, r#"roster_triggers_total{source="http",kind="http"}"#).await,
        101.0
    );
    let waits = metric(&base, "roster_trigger_to_apply_seconds_count").await;
    assert!(waits >= 101.0, "{waits} trigger-to-apply observations");
    d.stop().await;
}

#[tokio::test]
async fn a_trigger_token_is_required_once_configured() {
    let w = World::new(USERS, &group("G", "", &["alice"], &[]), "").await;
    let token = w.dir.path().join("trigger-token");
    std::fs::write(&token, "t0ken\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    w.write_config(&triggered_only(&format!(
        "watch = false\ndebounce = \"0s\"\ntrigger_token_file = {:?}\n",
        token.display().to_string()
    )));
    let (d, base) = daemon_with_listener(&w).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http.post(format!("{base}/trigger")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        members(&w, "G").is_empty(),
        "an unauthenticated trigger ran"
    );
    let r = http
        .post(format!("{base}/trigger"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually("the triggered run creates G", || {
        members(&w, "G") == ["alice"]
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn an_edited_desired_state_file_starts_a_run_within_seconds() {
    let w = World::new(
        USERS,
        &group("G", "", &["alice"], &[]),
        &triggered_only("run_on_start = true\ndebounce = \"200ms\"\n")
            .replace("run_on_start = false\n", ""),
    )
    .await;
    let (d, base) = daemon_with_listener(&w).await;
    eventually("the start-up run creates G", || {
        members(&w, "G") == ["alice"]
    })
    .await;
    d.wait_log("run finished", 1).await;

    let edited = Instant::now();
    w.write_groups(&group("G", "", &["alice", "bob"], &[]));
    eventually("the edit is applied without a tick or a signal", || {
        members(&w, "G") == ["alice", "bob"]
    })
    .await;
    let took = edited.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{took:?} from the edit to the apply"
    );
    let samples = metrics_of(&base).await;
    let files: f64 = samples
        .iter()
        .filter(|(series, _)| {
            series.starts_with("roster_triggers_total{") && series.contains("kind=\"files\"")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(files >= 1.0, "no file trigger counted: {samples:?}");
    d.stop().await;
}

#[tokio::test]
async fn triggers_during_a_run_make_exactly_one_run_after_it() {
    let w = World::new(
        USERS,
        &group("G", "", &["alice"], &[]),
        &triggered_only("watch = false\ndebounce = \"100ms\"\n"),
    )
    .await;
    // Every call takes 400 ms: a run lasts well over a second.
    w.sim.contensis.set_faults(Faults {
        latency: Some(Duration::from_millis(400)),
        ..Faults::default()
    });
    let (d, base) = daemon_with_listener(&w).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    http.post(format!("{base}/trigger")).send().await.unwrap();
    d.wait_log("changes settled: starting a run", 1).await;
    // Ten triggers while that run reads and writes.
    for _ in 0..10 {
        let r = http.post(format!("{base}/trigger")).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    assert_eq!(
        d.count("run finished"),
        0,
        "the first run ended too soon to test"
    );
    d.wait_log("run finished", 2).await;
    d.wait_log("changes arrived during the run: one more run follows", 1)
        .await;
    // Time for a third run, were one coming.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(d.count("changes settled: starting a run"), 2, "{}", d.log());
    assert_eq!(d.count("run finished"), 2, "{}", d.log());
    d.stop().await;
}
