//! `roster run` as a child process: started with a config, its standard error collected line by
//! line as it comes, killed when dropped. The daemon tests and the lease tests build on it.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A running `roster --config CONFIG run ARGS`.
pub struct RosterProcess {
    /// The process; killed when dropped.
    pub child: tokio::process::Child,
    /// Its process id.
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
}

impl RosterProcess {
    /// Starts `roster --config CONFIG run ARGS` at `RUST_LOG=info` in the config's folder (where
    /// a config without `state_dir` keeps its journal), without the systemd variables of the
    /// environment the tests run in, and with `env` added.
    pub fn spawn(config: &Path, args: &[&str], env: &[(&str, &str)]) -> RosterProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"));
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("STATE_DIRECTORY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = config.parent() {
            cmd.current_dir(dir);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start roster run");
        let pid = child.id().expect("a running child has a pid");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        RosterProcess { child, pid, log }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// How many log lines contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// The first log line that contains `text`, if any.
    pub fn line(&self, text: &str) -> Option<String> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .find(|l| l.contains(text))
            .cloned()
    }
}
