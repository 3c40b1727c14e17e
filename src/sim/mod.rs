//! `roster sim`: serves the target simulators on loopback, seeded from a TOML file, so that
//! roster can be tried (and tested) without a real target system.
//!
//! A seed file has one table per simulator (`[contensis]`, `[vinyldns]`, `[crafter]`, `[uipath]`,
//! each described by its simulator's seed type, such as
//! [`ContensisSeed`](crate::sim::contensis::ContensisSeed)); a missing table means that
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

pub mod contensis;
pub mod control;
pub mod crafter;
pub mod faults;
pub mod index;
pub mod uipath;
pub mod vinyldns;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// What `roster sim` needs of a simulator: built from its seed, served as one router.
pub trait Simulator: Sized {
    /// Its seed table's shape (`[contensis]`, say); the default is the simulator's defaults.
    type Seed: Default + serde::de::DeserializeOwned + std::fmt::Debug;

    /// A simulator in the state its seed describes.
    fn from_seed(seed: Self::Seed) -> Self;

    /// Every problem of a seed that parsed (duplicate names, unknown children), for
    /// [`parse_seed`] to report all at once.
    fn check_seed(seed: &Self::Seed) -> Result<(), Vec<String>>;

    /// Its HTTP API and its `/_sim/...` control endpoints.
    fn router(&self) -> axum::Router;

    /// The path its API lives under (`/studio` for Crafter, the organization for UiPath).
    fn base_path(&self) -> String {
        String::new()
    }

    /// What a person needs to log in with, to print when it starts (never a secret).
    fn login_hint(_seed: &Self::Seed) -> Option<String> {
        None
    }
}

/// Generates, from the registry's list, the seed file, the simulator kinds and their handles.
macro_rules! simulators {
    ($($variant:ident($field:ident, $title:literal): target::$tm:ident::{$keys:ident, $config:ident, $conn:ident}, sim::$sm:ident::{$seed:ident, $sim:ident};)*) => {
        /// A seed file: the starting state of each simulator.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Seed {
            $(
                #[doc = concat!("The ", $title, " simulator's seed (`[", stringify!($field), "]`); its defaults when absent.")]
                pub $field: Option<$sm::$seed>,
            )*
        }

        impl Seed {
            /// Every problem of every table.
            fn problems(&self) -> Vec<String> {
                let mut problems = Vec::new();
                $(
                    if let Some(seed) = &self.$field
                        && let Err(p) = <$sm::$sim as Simulator>::check_seed(seed)
                    {
                        problems.extend(p);
                    }
                )*
                problems
            }

            /// What people need to log in to the simulators with.
            fn login_hints(&self) -> Vec<String> {
                let mut hints = Vec::new();
                $(
                    let seed = self.$field.as_ref();
                    let hint = match seed {
                        Some(seed) => <$sm::$sim as Simulator>::login_hint(seed),
                        None => <$sm::$sim as Simulator>::login_hint(&Default::default()),
                    };
                    hints.extend(hint.map(|h| format!("{}: {h}", stringify!($field))));
                )*
                hints
            }
        }

        /// One of the simulators `roster sim` serves.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum SimKind {
            $(
                #[doc = concat!("The ", $title, " simulator.")]
                $variant,
            )*
        }

        /// How many simulators there are.
        const COUNT: usize = [$(stringify!($field)),*].len();

        impl SimKind {
            /// Every simulator, in the order their ports are given out.
            pub const ALL: [SimKind; COUNT] = [$(SimKind::$variant),*];

            /// The target `type` this simulator stands in for.
            pub fn type_name(self) -> &'static str {
                match self {
                    $(SimKind::$variant => stringify!($field),)*
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        /// The simulators' handles, for inspecting and changing their state.
        #[derive(Debug)]
        pub struct Handles {
            $(
                #[doc = concat!("The ", $title, " simulator.")]
                pub $field: $sm::$sim,
            )*
        }

        impl Handles {
            fn new(seed: Seed) -> Self {
                Self {
                    $($field: <$sm::$sim as Simulator>::from_seed(seed.$field.unwrap_or_default()),)*
                }
            }

            fn routers(&self) -> [axum::Router; COUNT] {
                [$(self.$field.router()),*]
            }

            fn base_path(&self, kind: SimKind) -> String {
                match kind {
                    $(SimKind::$variant => self.$field.base_path(),)*
                }
            }

            /// The calls one simulator logged so far (see [`control::SimControl::calls`]).
            pub fn calls_of(&self, kind: SimKind) -> Vec<String> {
                match kind {
                    $(SimKind::$variant => control::SimControl::calls(&self.$field),)*
                }
            }

            /// How late one simulator's answers left, over its latency, since its faults were
            /// last set (see [`control::SimControl::lateness`]).
            pub fn lateness_of(&self, kind: SimKind) -> faults::Lateness {
                match kind {
                    $(SimKind::$variant => control::SimControl::lateness(&self.$field),)*
                }
            }

            /// Puts the same faults in force on every simulator.
            pub fn set_faults_all(&self, faults: &faults::Faults) {
                $(control::SimControl::set_faults(&self.$field, faults.clone());)*
            }
        }
    };
}

crate::registry::targets!(simulators);

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
    let problems = seed.problems();
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

/// Simulators being served, one port each; dropping it stops them too, but
/// [`RunningSim::shutdown`] waits.
#[derive(Debug)]
pub struct RunningSim {
    /// The simulators, for inspecting and changing their state (`sim.contensis`, say).
    pub handles: Handles,
    addrs: [SocketAddr; COUNT],
    stop: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl std::ops::Deref for RunningSim {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.handles
    }
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
        let base = self.handles.base_path(kind);
        format!("http://{}{base}", self.addr(kind))
    }

    /// Points every target of `config` at the simulator of its type (what `roster demo` does).
    pub fn point_at(&self, config: &mut Config) {
        for t in &mut config.targets {
            let kind = SimKind::ALL
                .into_iter()
                .find(|k| k.type_name() == t.kind.type_name());
            if let Some(kind) = kind {
                *t.kind.url_mut() = self.url_of(kind);
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
    let handles = Handles::new(seed);
    // The parsed seed is garbage now (40-240 MB for 20,000 groups): handed back before the
    // simulators listen, so that no answer waits behind the allocator doing it later.
    crate::memory::release_freed();
    let routers = handles.routers();
    let stop = CancellationToken::new();
    let mut addrs = [listen; COUNT];
    let mut tasks = Vec::with_capacity(routers.len());
    for (i, app) in routers.into_iter().enumerate() {
        let mut at = listen;
        if listen.port() != 0 {
            let port =
                u16::try_from(usize::from(listen.port()) + i).map_err(|_| SimError::Bind {
                    addr: listen,
                    source: std::io::Error::other("no room for consecutive ports"),
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
        handles,
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
    let hints = seed.login_hints();
    let mut running = start(seed, listen).await?;
    // One line each on standard output for people, and a log event each for scripts.
    for kind in SimKind::ALL {
        let url = running.url_of(kind);
        println!("{:<10} {url}", kind.type_name());
        tracing::info!(simulator = kind.type_name(), url = %url, "simulator listening");
    }
    for hint in hints {
        tracing::info!(login = %hint, "credentials are those of the seed");
    }
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
