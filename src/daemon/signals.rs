//! The signals the daemon answers: SIGHUP reloads, SIGTERM and SIGINT stop.
//!
//! The handlers are installed once, first thing, so that a SIGHUP sent while the daemon starts
//! (a `systemctl reload` racing a start) is queued instead of killing the process, which is what
//! SIGHUP does to a process that does not handle it.

use std::io;

/// What a signal asks of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP: read the config again.
    Reload,
    /// SIGTERM or SIGINT: stop.
    Stop,
}

/// The installed handlers.
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; they stay installed as long as this lives.
    #[cfg(unix)]
    pub fn install() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Installs the handlers (only Ctrl-C where there are no Unix signals).
    #[cfg(not(unix))]
    pub fn install() -> io::Result<Self> {
        Ok(Self {})
    }

    /// The next request. Cancel-safe: a signal that arrives while this is not awaited is kept
    /// for the next call.
    #[cfg(unix)]
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            Some(()) = self.hup.recv() => Request::Reload,
            Some(()) = self.term.recv() => Request::Stop,
            Some(()) = self.int.recv() => Request::Stop,
            else => std::future::pending().await,
        }
    }

    /// The next request.
    #[cfg(not(unix))]
    pub async fn next(&mut self) -> Request {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Request::Stop,
            Err(_) => std::future::pending().await,
        }
    }

    /// Waits for a stop request, ignoring reloads.
    pub async fn stop(&mut self) {
        while self.next().await != Request::Stop {}
    }
}
