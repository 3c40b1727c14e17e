//! `roster sim`: serves the target simulators on loopback, seeded from a TOML file, so that
//! roster can be tried (and tested) without a real target system.
//!
//! A seed file has one table per simulator (today `[contensis]`, see
//! [`ContensisSeed`](crate::target::contensis::sim::ContensisSeed)); a missing table means that
//! simulator starts with its defaults. Parsing is strict (`deny_unknown_fields`) and errors point
//! at `file:line:col`, as roster's own config does. [`start`] binds a listener (port 0 is fine)
//! and returns a [`RunningSim`] whose handles the integration tests use to inspect state;
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

pub mod faults;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::target::contensis::sim::{ContensisSeed, ContensisSim};

/// A seed file: the starting state of each simulator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The Contensis simulator's seed (`[contensis]`); its defaults when absent.
    pub contensis: Option<ContensisSeed>,
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
    if let Some(c) = &seed.contensis {
        c.validate().map_err(|problems| SimError::Invalid {
            origin: origin.to_owned(),
            problems,
        })?;
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

/// Simulators being served; dropping it stops them too, but [`RunningSim::shutdown`] waits.
#[derive(Debug)]
pub struct RunningSim {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The Contensis simulator, for inspecting and changing its state.
    pub contensis: ContensisSim,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningSim {
    /// The base URL, such as `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "simulator server failed"),
            Err(e) => tracing::warn!(error = %e, "simulator task failed"),
        }
    }
}

/// Binds `listen` (port 0 picks a free port) and serves the simulators seeded from `seed` in a
/// background task.
pub async fn start(seed: Seed, listen: SocketAddr) -> Result<RunningSim, SimError> {
    let contensis = ContensisSim::new(seed.contensis.unwrap_or_default());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: listen,
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = contensis.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A send or a dropped sender both mean stop.
                let _ = stopped.await;
            })
            .await
    });
    Ok(RunningSim {
        addr,
        contensis,
        stop,
        task,
    })
}

/// Serves the simulators until `stop` resolves, then shuts them down gracefully. Used by
/// `roster sim`; logs the URL and the client id to use (never the secret).
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
    let running = start(seed, listen).await?;
    tracing::info!(
        url = %running.url(),
        client_id = %client_id,
        "contensis simulator listening; use grant client_credentials with this client id and the secret from the seed"
    );
    stop.await;
    tracing::info!("stopping the simulators");
    let RunningSim { stop: tx, task, .. } = running;
    let _ = tx.send(());
    match task.await {
        Ok(result) => result.map_err(SimError::Serve),
        Err(e) => Err(SimError::Serve(std::io::Error::other(e))),
    }
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
