//! `roster sim`: serves the target simulators on loopback, seeded from a TOML file, so that
//! roster can be tried (and tested) without a real target system.
//!
//! A seed file has one table per simulator (`[contensis]`, `[vinyldns]`, `[crafter]`, `[uipath]`,
//! each described by its simulator's seed type, such as
//! [`ContensisSeed`](crate::target::contensis::sim::ContensisSeed)); a missing table means that
//! simulator starts with its defaults. Parsing is strict (`deny_unknown_fields`) and errors point
//! at `file:line:col`, as roster's own config does. [`start`] binds one listener per simulator
//! (port 0 is fine) and returns a [`RunningSim`] whose handles the integration tests use to
//! inspect state;
//! [`serve_until`] is the same for the command line, serving until a stop future resolves.
//!
//! The simulators' `/_sim/...` control endpoints have no authentication: serve them on loopback
//! only.
//!
//! ```toml
//! [contensis]
//! client_id = "roster"
//! client_secret = "roster-secret"
//! users = ["alice", "bob"]
//!
//! [[contensis.group]]
//! name = "Engineering"
//! members = ["alice"]
//! children = ["Platform"]
//!
//! [[contensis.group]]
//! name = "Platform"
//! ```

pub mod control;
pub mod faults;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TargetKind};
use crate::target::contensis::sim::{ContensisSeed, ContensisSim};
use crate::target::crafter::sim::{CrafterSeed, CrafterSim};
use crate::target::uipath::sim::{UiPathSeed, UiPathSim};
use crate::target::vinyldns::sim::{VinylDnsSeed, VinylDnsSim};

/// A seed file: the starting state of each simulator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The Contensis simulator's seed (`[contensis]`); its defaults when absent.
    pub contensis: Option<ContensisSeed>,
    /// The VinylDNS simulator's seed (`[vinyldns]`).
    pub vinyldns: Option<VinylDnsSeed>,
    /// The Crafter Studio simulator's seed (`[crafter]`).
    pub crafter: Option<CrafterSeed>,
    /// The UiPath Identity simulator's seed (`[uipath]`).
    pub uipath: Option<UiPathSeed>,
}

/// Why the simulators could not be seeded or served.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The seed file could not be read.
    #[error("cannot read seed file {}: {source}", path.display())]
    Io {
        /// The seed file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The seed is not valid TOML or does not fit the seed format.
    #[error("{origin}:{line}:{col}: {message}")]
    Parse {
        /// Where the text came from (usually the file path).
        origin: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// The seed parsed but describes an impossible state (duplicate names, unknown children).
    #[error("{origin}: {}", problems.join("; "))]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("simulator server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Reads and checks a seed file.
pub fn load_seed(path: &Path) -> Result<Seed, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_seed(&text, &path.display().to_string())
}

/// Parses and checks seed text; `origin` names it in errors (a path, or `<inline>`).
pub fn parse_seed(text: &str, origin: &str) -> Result<Seed, SimError> {
    let seed: Seed = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |span| line_col(text, span.start));
        SimError::Parse {
            origin: origin.to_owned(),
            line,
            col,
            message: e.message().trim().to_owned(),
        }
    })?;
    let checks = [
        seed.contensis.as_ref().map(ContensisSeed::validate),
        seed.vinyldns.as_ref().map(VinylDnsSeed::validate),
        seed.crafter.as_ref().map(CrafterSeed::validate),
        seed.uipath.as_ref().map(UiPathSeed::validate),
    ];
    let problems: Vec<String> = checks
        .into_iter()
        .flatten()
        .filter_map(Result::err)
        .flatten()
        .collect();
    if !problems.is_empty() {
        return Err(SimError::Invalid {
            origin: origin.to_owned(),
            problems,
        });
    }
    Ok(seed)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The key the simulators compare group names by: the name itself, or the name lowercased when
/// the simulator's `case_insensitive_names` switch is on.
pub fn name_key(name: &str, case_insensitive: bool) -> String {
    if case_insensitive {
        name.to_lowercase()
    } else {
        name.to_owned()
    }
}

/// One of the simulators `roster sim` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimKind {
    /// The Contensis Management API.
    Contensis,
    /// The VinylDNS API.
    VinylDns,
    /// The Crafter Studio API.
    Crafter,
    /// The UiPath Identity API.
    UiPath,
}

impl SimKind {
    /// Every simulator, in the order their ports are given out.
    pub const ALL: [SimKind; 4] = [
        SimKind::Contensis,
        SimKind::VinylDns,
        SimKind::Crafter,
        SimKind::UiPath,
    ];

    /// The target `type` this simulator stands in for.
    pub fn type_name(self) -> &'static str {
        match self {
            SimKind::Contensis => "contensis",
            SimKind::VinylDns => "vinyldns",
            SimKind::Crafter => "crafter",
            SimKind::UiPath => "uipath",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Simulators being served, one port each; dropping it stops them too, but
/// [`RunningSim::shutdown`] waits.
#[derive(Debug)]
pub struct RunningSim {
    /// The Contensis simulator, for inspecting and changing its state.
    pub contensis: ContensisSim,
    /// The VinylDNS simulator.
    pub vinyldns: VinylDnsSim,
    /// The Crafter Studio simulator.
    pub crafter: CrafterSim,
    /// The UiPath Identity simulator.
    pub uipath: UiPathSim,
    addrs: [SocketAddr; 4],
    stop: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RunningSim {
    /// The Contensis simulator's base URL, such as `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        self.url_of(SimKind::Contensis)
    }

    /// The address a simulator is bound to.
    pub fn addr(&self, kind: SimKind) -> SocketAddr {
        self.addrs[kind.index()]
    }

    /// What a `[[target]]`'s `url` must be to reach a simulator: its address plus the path its
    /// API lives under (`/studio` for Crafter, the organization for UiPath).
    pub fn url_of(&self, kind: SimKind) -> String {
        let base = match kind {
            SimKind::Contensis => String::new(),
            SimKind::VinylDns => self.vinyldns.base_path(),
            SimKind::Crafter => self.crafter.base_path(),
            SimKind::UiPath => self.uipath.base_path(),
        };
        format!("http://{}{base}", self.addr(kind))
    }

    /// Points every target of `config` at the simulator of its type (what `roster demo` does).
    pub fn point_at(&self, config: &mut Config) {
        for t in &mut config.targets {
            match &mut t.kind {
                TargetKind::Contensis(c) => c.url = self.url_of(SimKind::Contensis),
                TargetKind::VinylDns(c) => c.url = self.url_of(SimKind::VinylDns),
                TargetKind::Crafter(c) => c.url = self.url_of(SimKind::Crafter),
                TargetKind::UiPath(c) => c.url = self.url_of(SimKind::UiPath),
            }
        }
    }

    /// Stops accepting, lets requests in flight finish, and waits for every server to end.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.stop_and_wait().await {
            tracing::warn!(error = %e, "simulator server failed");
        }
    }

    async fn stop_and_wait(&mut self) -> Result<(), SimError> {
        self.stop.cancel();
        let mut result = Ok(());
        for task in self.tasks.drain(..) {
            let outcome = match task.await {
                Ok(r) => r.map_err(SimError::Serve),
                Err(e) => Err(SimError::Serve(std::io::Error::other(e))),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

/// Binds one port per simulator and serves them, seeded from `seed`, in background tasks.
/// With port 0 in `listen`, each simulator gets a free port; with port `P`, they take `P`,
/// `P+1`, `P+2` and `P+3` in the order of [`SimKind::ALL`].
pub async fn start(seed: Seed, listen: SocketAddr) -> Result<RunningSim, SimError> {
    let contensis = ContensisSim::new(seed.contensis.unwrap_or_default());
    let vinyldns = VinylDnsSim::new(seed.vinyldns.unwrap_or_default());
    let crafter = CrafterSim::new(seed.crafter.unwrap_or_default());
    let uipath = UiPathSim::new(seed.uipath.unwrap_or_default());
    let routers = [
        contensis.router(),
        vinyldns.router(),
        crafter.router(),
        uipath.router(),
    ];
    let stop = CancellationToken::new();
    let mut addrs = [listen; 4];
    let mut tasks = Vec::with_capacity(routers.len());
    for (i, app) in routers.into_iter().enumerate() {
        let mut at = listen;
        if listen.port() != 0 {
            let port =
                u16::try_from(usize::from(listen.port()) + i).map_err(|_| SimError::Bind {
                    addr: listen,
                    source: std::io::Error::other("no room for four consecutive ports"),
                })?;
            at.set_port(port);
        }
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|source| SimError::Bind { addr: at, source })?;
        addrs[i] = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr: at, source })?;
        let stopped = stop.clone().cancelled_owned();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }));
    }
    Ok(RunningSim {
        contensis,
        vinyldns,
        crafter,
        uipath,
        addrs,
        stop,
        tasks,
    })
}

/// Serves the simulators until `stop` resolves, then shuts them down gracefully. Used by
/// `roster sim`; prints each simulator's URL (the `url` to put in a `[[target]]`) and logs the
/// Contensis client id to use (never a secret).
pub async fn serve_until(
    seed: Seed,
    listen: SocketAddr,
    stop: impl Future<Output = ()>,
) -> Result<(), SimError> {
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "the simulator's control endpoints have no authentication; serve it on loopback only");
    }
    let client_id = seed.contensis.as_ref().map_or_else(
        || ContensisSeed::default().client_id,
        |c| c.client_id.clone(),
    );
    let mut running = start(seed, listen).await?;
    // One line each on standard output for people, and a log event each for scripts.
    for kind in SimKind::ALL {
        let url = running.url_of(kind);
        println!("{:<10} {url}", kind.type_name());
        tracing::info!(simulator = kind.type_name(), url = %url, "simulator listening");
    }
    tracing::info!(
        contensis_client_id = %client_id,
        "credentials are those of the seed"
    );
    stop.await;
    tracing::info!("stopping the simulators");
    running.stop_and_wait().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_points_at_the_key() {
        let err = parse_seed(
            "[contensis]\nclient_id = \"x\"\nclient_scret = \"y\"\n",
            "seed.toml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("seed.toml:3:1: "), "{text}");
        assert!(text.contains("client_scret"), "{text}");
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 0), (1, 1));
    }

    #[test]
    fn invalid_seed_is_reported() {
        let err = parse_seed(
            "[[contensis.group]]\nname = \"A\"\nchildren = [\"A\"]\n",
            "s.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("own child"), "{err}");
    }
}
