//! One helper for every end-to-end test: a Contensis simulator on 127.0.0.1:0, a config folder
//! that points roster at it, and ways to run roster (as a library or as the built binary).

#![allow(dead_code)]

pub mod ldif;
pub mod slapd;

use std::path::{Path, PathBuf};
use std::process::Output;

use roster::config::{self, Config};
use roster::reconcile::Mode;
use roster::run::{RunOptions, RunReport, run};
use roster::sim::{self, RunningSim};

/// The client secret every test config uses, so tests can look for it in output.
pub const SECRET: &str = "s3cr3t-never-shown-9f2c";

/// A running simulator and a config folder for it.
pub struct World {
    /// The simulator.
    pub sim: RunningSim,
    /// Holds roster.toml, the secret and groups.toml.
    pub dir: tempfile::TempDir,
}

impl World {
    /// Starts a simulator from `seed` (the `[contensis]` table's body is added around it with
    /// the test credentials) and writes a config whose target has `target_extra` lines.
    pub async fn new(seed_body: &str, groups: &str, target_extra: &str) -> World {
        let seed = format!(
            "[contensis]\nclient_id = \"roster\"\nclient_secret = \"{SECRET}\"\n{seed_body}"
        );
        let seed = sim::parse_seed(&seed, "test seed").expect("seed parses");
        let sim = sim::start(seed, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let w = World { sim, dir };
        w.write_config(target_extra);
        w.write_groups(groups);
        w
    }

    /// Rewrites roster.toml with these extra `[[target]]` lines.
    pub fn write_config(&self, target_extra: &str) {
        let secret = self.dir.path().join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).expect("write secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        let cfg = format!(
            "[[source]]\ntype = \"toml\"\npath = \"groups.toml\"\n\n[[target]]\nname = \"cms\"\n\
             type = \"contensis\"\nurl = \"{}\"\nclient_id = \"roster\"\n\
             client_secret_file = \"secret\"\n{target_extra}\n",
            self.sim.url()
        );
        std::fs::write(self.config_path(), cfg).expect("write config");
    }

    /// Rewrites the desired state.
    pub fn write_groups(&self, groups: &str) {
        std::fs::write(self.dir.path().join("groups.toml"), groups).expect("write groups");
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("roster.toml")
    }

    /// The loaded config.
    pub fn config(&self) -> Config {
        config::load(&self.config_path()).unwrap_or_else(|e| panic!("config loads: {e}"))
    }

    /// Plans through the library.
    pub async fn plan(&self) -> RunReport {
        run(&self.config(), &RunOptions::default())
            .await
            .expect("run starts")
    }

    /// Applies through the library.
    pub async fn apply(&self, max_deletes: Option<usize>) -> RunReport {
        let opts = RunOptions {
            mode: Mode::Apply,
            max_deletes,
            ..RunOptions::default()
        };
        run(&self.config(), &opts).await.expect("run starts")
    }

    /// Runs the `roster` binary with `--config` and these arguments, off the async runtime.
    pub async fn roster(&self, args: &[&str]) -> Output {
        roster_at(&self.config_path(), args, &[]).await
    }
}

/// Runs the built `roster` binary with `--config path` and `args`, with extra environment.
pub async fn roster_at(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"));
    cmd.arg("--config").arg(path).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("roster runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A desired-state file of one group.
pub fn group(name: &str, description: &str, members: &[&str], children: &[&str]) -> String {
    let q = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[group]]\nname = {name:?}\ndescription = {description:?}\nmembers = [{}]\nchildren = [{}]\n\n",
        q(members),
        q(children)
    )
}

/// A Contensis connector for the world's target, for tests that drive the phases one by one.
pub fn contensis(w: &World) -> roster::target::contensis::ContensisTarget {
    let config = w.config();
    let t = &config.targets[0];
    let roster::config::TargetKind::Contensis(c) = &t.kind;
    roster::target::contensis::ContensisTarget::new(
        &t.name,
        c,
        reqwest::Client::new(),
        t.concurrency,
    )
}
