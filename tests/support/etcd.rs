//! A real, throwaway single-member etcd for tests.
//!
//! [`Etcd::start`] runs `etcd` in the foreground on two free loopback ports (client and peer)
//! with its data directory in a temporary directory, and returns once it answers `GET /health`
//! (which needs an elected leader, so the first call a test makes is served). Every instance has
//! its own directory and ports, so tests may run in parallel. [`Etcd::stop`] (SIGTERM) and
//! [`Etcd::kill`] (SIGKILL) take it down, [`Etcd::restart`] brings it back on the same ports
//! with the same data, and dropping the [`Etcd`] kills it by PID and removes the directory.
//!
//! etcd's own timing is kept (100 ms heartbeats, 1 s election timeout), so tests see what a
//! default deployment does; one consequence: etcd's smallest lease TTL, 1.5 election timeouts
//! rounded up, is 2 s (a grant of 1 s gets 2).
//!
//! Needs `etcd` and `etcdctl` (Debian `etcd-server` and `etcd-client`; `scripts/test` installs
//! them); a missing binary is a panic that says so, never a skipped test.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a start may take before the harness gives up (an election on a loaded machine
/// running other test binaries can take a few seconds).
const START_LIMIT: Duration = Duration::from_secs(20);

/// A running (or stopped) etcd; killed when dropped.
pub struct Etcd {
    /// The loopback address of this instance alone (`127.x.y.z`, see [`own_host`]).
    pub host: Ipv4Addr,
    /// The client port on `host` (the gRPC gateway, `/health`).
    pub client_port: u16,
    /// The peer port on `host` (raft; unused by a single member but bound).
    pub peer_port: u16,
    /// `data/` (etcd's data directory) and `etcd.log` (its output, appended across restarts).
    pub dir: tempfile::TempDir,
    /// More `etcd` flags, kept for restarts.
    extra: Vec<String>,
    child: Option<Child>,
}

impl Etcd {
    /// Starts a new member with an empty data directory. Panics with etcd's log when it does not
    /// answer within 20 s.
    pub fn start() -> Etcd {
        Etcd::start_with(&[])
    }

    /// [`Etcd::start`] with more `etcd` flags (`--auth-token-ttl=1`), used on restarts too.
    pub fn start_with(extra: &[&str]) -> Etcd {
        tool("etcd");
        let mut dir = tempfile::Builder::new()
            .prefix("roster-etcd-")
            .tempdir()
            .expect("create a temporary directory for etcd");
        // Free ports are picked by binding port 0 and letting go, so another process can take
        // one before etcd binds it: start again with new ports when that happens.
        let mut attempt = 0;
        let host = own_host();
        loop {
            attempt += 1;
            let (client_port, peer_port) = free_ports(host);
            let mut etcd = Etcd {
                host,
                client_port,
                peer_port,
                dir,
                extra: extra.iter().map(|&a| a.to_owned()).collect(),
                child: None,
            };
            match etcd.spawn_and_wait() {
                Ok(()) => return etcd,
                Err(log) if attempt < 5 && log.contains("address already in use") => {
                    dir = etcd.take_dir();
                }
                Err(log) => panic!(
                    "etcd did not start (ports {client_port}/{peer_port}, dir {}):\n{log}",
                    etcd.dir.path().display()
                ),
            }
        }
    }

    /// `http://HOST:PORT`, the client URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    /// etcd's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// etcd's output so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops etcd the way an operator does (SIGTERM to its PID) and waits for it to exit;
    /// SIGKILL after 10 s. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Kills etcd (SIGKILL to its PID), as a crash would, and reaps it. Does nothing when it is
    /// not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes etcd (SIGSTOP): its port still accepts connections (the kernel's backlog) but
    /// nothing answers, as with a hung member or a network that drops packets.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Thaws etcd after [`Etcd::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let child = self.child.as_ref().expect("etcd is running");
        rustix::process::kill_process(rustix::process::Pid::from_child(child), sig)
            .expect("signal etcd");
    }

    /// Starts etcd again on the same ports with the same data (stopping it first if it runs).
    /// Panics when it does not answer within 20 s, for instance because another process took a
    /// port meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!(
                "etcd did not restart (ports {}/{}):\n{log}",
                self.client_port, self.peer_port
            );
        }
    }

    /// An `etcdctl` command (API v3) for this member, with no `ETCDCTL_*` setting from the
    /// environment. Add the subcommand and its arguments.
    pub fn etcdctl(&self) -> Command {
        let mut cmd = Command::new(tool("etcdctl"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=10s");
        cmd
    }

    /// Runs `etcdctl ARGS` and returns its standard output; panics with its output when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self
            .etcdctl()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl");
        if !out.status.success() {
            panic!(
                "etcdctl {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The directory, out of an instance that is given up (its process is gone).
    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().expect("create a temporary directory");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// Runs etcd on this instance's ports and data directory, and waits until it is healthy. On
    /// failure the process is gone and the error is its log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let etcd = tool("etcd");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open etcd.log");
        let client = self.endpoint();
        let peer = format!("http://{}:{}", self.host, self.peer_port);
        let mut cmd = Command::new(&etcd);
        // etcd reads every flag from ETCD_* variables too: the machine's must not change a test.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(self.dir.path())
            .arg("--name=roster-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=roster-test={peer}"))
            .args(["--logger=zap", "--log-outputs=stderr"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd ({}): {e}", etcd.display()));
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = child.try_wait().expect("poll etcd") {
                return Err(format!(
                    "etcd exited with {status}; its log:\n{}",
                    self.log()
                ));
            }
            if healthy(self.host, self.client_port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "etcd was not healthy on port {} within {START_LIMIT:?}; its log:\n{}",
                    self.client_port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // A paused etcd dies of SIGKILL too.
        self.kill();
    }
}

/// Whether `GET /health` on the client port answers `{"health":"true"}` (etcd says so only once
/// it has a leader and can serve requests). A plain blocking HTTP/1.0 request: the harness needs
/// no runtime.
fn healthy(host: Ipv4Addr, port: u16) -> bool {
    let addr = SocketAddr::from((host, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") && answer.contains(r#""health":"true""#)
}

/// Two distinct free TCP ports on `host` (both held until both are chosen).
fn free_ports(host: Ipv4Addr) -> (u16, u16) {
    let bind = || TcpListener::bind((host, 0)).expect("bind a loopback port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// A loopback address for one etcd of this process, none other's (Linux answers on all of
/// 127.0.0.0/8). A port let go while an etcd is stopped for a restart could otherwise be taken by
/// another test's etcd, whose `/health` would then pass for this one's.
fn own_host() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let [_, _, p1, p0] = pid.to_be_bytes();
    Ipv4Addr::new(
        127,
        100 + p1 % 100,
        p0,
        2 + u8::try_from(n % 250).unwrap_or(0),
    )
}

/// A free port nothing listens on (bound and let go): an endpoint that refuses connections.
pub fn dead_port() -> u16 {
    free_ports(Ipv4Addr::LOCALHOST).0
}

/// The path of `etcd` or `etcdctl`. Panics when missing.
fn tool(name: &str) -> PathBuf {
    super::slapd::installed(
        name,
        "the etcd tests need a real etcd. Run scripts/test (it installs etcd-server and \
         etcd-client), or `apt-get install etcd-server etcd-client`",
    )
}
