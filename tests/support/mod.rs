//! One helper for every end-to-end test: the simulators on 127.0.0.1:0, a config folder whose one
//! target points roster at one of them, and ways to run roster (as a library or as the built
//! binary).

#![allow(dead_code)]

pub mod adproxy;
pub mod daemon;
pub mod etcd;
pub mod harness;
pub mod ldif;
pub mod samba;
pub mod slapd;
pub mod suite;

use std::path::{Path, PathBuf};
use std::process::Output;

use roster::config::{self, Config};
use roster::reconcile::Mode;
use roster::run::{RunOptions, RunReport, run};
use roster::sim::{self, RunningSim, SimKind};

/// The client secret every test config uses, so tests can look for it in output.
pub const SECRET: &str = "s3cr3t-never-shown-9f2c";

/// Running simulators and a config folder whose one target is one of them.
pub struct World {
    /// The simulators.
    pub sim: RunningSim,
    /// Holds roster.toml, the secret (file `secret`, holding [`SECRET`]) and groups.toml.
    pub dir: tempfile::TempDir,
    /// The simulator the config's target points at.
    pub kind: SimKind,
    /// The target's connector keys (credentials), below `name`, `type` and `url`.
    keys: String,
}

impl World {
    /// Starts the simulators with a Contensis seed (the `[contensis]` table's body is added
    /// around it with the test credentials) and writes a config whose Contensis target has
    /// `target_extra` lines.
    pub async fn new(seed_body: &str, groups: &str, target_extra: &str) -> World {
        let seed = format!(
            "[contensis]\nclient_id = \"roster\"\nclient_secret = \"{SECRET}\"\n{seed_body}"
        );
        let keys = "client_id = \"roster\"\nclient_secret_file = \"secret\"\n";
        Self::with_target(SimKind::Contensis, &seed, keys, groups, target_extra).await
    }

    /// Starts the simulators from the whole seed file text `seed`, and writes a config whose one
    /// target is the `kind` simulator, with the connector keys `keys` (credentials; the file
    /// `secret` holds [`SECRET`]) and `target_extra` lines.
    pub async fn with_target(
        kind: SimKind,
        seed: &str,
        keys: &str,
        groups: &str,
        target_extra: &str,
    ) -> World {
        let seed = sim::parse_seed(seed, "test seed").expect("seed parses");
        let sim = sim::start(seed, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let w = World {
            sim,
            dir,
            kind,
            keys: keys.to_owned(),
        };
        w.write_config(target_extra);
        w.write_groups(groups);
        w
    }

    /// The target's name in the config: `cms`, `dns`, `studio` or `robots` for the four targets
    /// the end-to-end tests were written against; any other target goes by its `type`, so adding a
    /// target needs no edit here.
    pub fn target_name(&self) -> &'static str {
        const NAMES: [(SimKind, &str); 4] = [
            (SimKind::Contensis, "cms"),
            (SimKind::VinylDns, "dns"),
            (SimKind::Crafter, "studio"),
            (SimKind::UiPath, "robots"),
        ];
        NAMES
            .iter()
            .find(|(kind, _)| *kind == self.kind)
            .map_or_else(|| self.kind.type_name(), |(_, name)| *name)
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
            "[[source]]\ntype = \"toml\"\npath = \"groups.toml\"\n\n[[target]]\nname = \"{}\"\n\
             type = \"{}\"\nurl = \"{}\"\n{}{target_extra}\n",
            self.target_name(),
            self.kind.type_name(),
            self.sim.url_of(self.kind),
            self.keys,
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

    /// The folder [`Self::export`] writes to (made by the export, not here).
    pub fn export_dir(&self) -> PathBuf {
        self.dir.path().join("exported")
    }

    /// Runs `roster export --target <the world's target> --out <export_dir> [args]`.
    pub async fn export(&self, args: &[&str]) -> Output {
        let dir = self.export_dir();
        let out = dir.to_str().expect("a UTF-8 path");
        let mut all = vec!["export", "--target", self.target_name(), "--out", out];
        all.extend_from_slice(args);
        self.roster(&all).await
    }
}

/// Every line of the journal in state folder `dir`, oldest first.
pub fn journal_lines(dir: &Path) -> Vec<roster::journal::Line> {
    let files = roster::journal::read::list(dir).expect("the journal's files");
    let mut lines = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f.path).expect("a journal file");
        for l in text.lines() {
            lines.push(serde_json::from_str(l).expect("a journal line"));
        }
    }
    lines
}

/// Runs the built `roster` binary with `--config path` and `args`, with extra environment, in
/// the config's folder: a config without `state_dir` keeps its journal in `./.roster`, which
/// is then the test's own, not the repository's.
pub async fn roster_at(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"));
    cmd.arg("--config").arg(path).args(args);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        cmd.current_dir(dir);
    }
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

/// Owned names borrowed as the `&str`s the seed and desired-state builders take.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The inside of a TOML array of these strings: `"a", "b"`.
pub fn toml_list<S: AsRef<str>>(v: &[S]) -> String {
    v.iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A desired-state file of one group.
pub fn group(name: &str, description: &str, members: &[&str], children: &[&str]) -> String {
    format!(
        "[[group]]\nname = {name:?}\ndescription = {description:?}\nmembers = [{}]\nchildren = [{}]\n\n",
        toml_list(members),
        toml_list(children)
    )
}

/// A Contensis connector for the world's target, for tests that drive the phases one by one.
pub fn contensis(w: &World) -> roster::target::contensis::ContensisTarget {
    let config = w.config();
    let t = &config.targets[0];
    let roster::config::TargetKind::Contensis(c) = &t.kind else {
        panic!("the world's target is not a Contensis target");
    };
    roster::target::contensis::ContensisTarget::new(
        &t.name,
        c,
        reqwest::Client::new(),
        t.concurrency,
    )
}
