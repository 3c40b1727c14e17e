//! Change watchers: what tells the daemon that a source may have changed, so that it can start a
//! run sooner than its schedule would.
//!
//! A change only *triggers* a run; it is never the truth. Every run still reads every source
//! whole ([`super::load`]), so a watcher may send a change that turns out to be none, and may
//! send several for one edit: the daemon coalesces them. What a watcher must not do is stay
//! silent about a change it could have seen, or end the daemon.
//!
//! [`spawn_all`] starts one task per source:
//!
//! - an LDAP source is watched as [`super::ldap::watch`] says: an RFC 4533 persistent search
//!   where OpenLDAP's `syncprov` offers it, else polling the naming context's `contextCSN`;
//!   Active Directory's `highestCommittedUSN` is polled;
//! - a TOML source is watched through the operating system's file events (`notify`), and only
//!   the files a load reads count: the file itself, or the visible `*.toml` files directly in
//!   the folder (as [`super::toml::files`] picks them), so editor swap files, backups and a
//!   `.git` folder's churn start no run.
//!
//! Each task is a small supervisor around the real work: the work runs in a task of its own, so
//! that a panic in it (the LDAP client's reply parsers panic on malformed replies) is a
//! [`JoinError`](tokio::task::JoinError) to log, not a dead watcher. Whatever ends the work (an
//! error, a panic, a server that closed the connection), the supervisor logs it and starts it
//! again after a backoff capped at a minute; once the work watches again it sends
//! [`ChangeKind::Reconnect`], since the source may have changed while nothing watched it. Only
//! the stop token, or a daemon that dropped its receiver, ends a task.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{SourceConfig, TomlSourceConfig};
use crate::source::SourceError;

/// What a watcher saw: a source that may have changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The source, as [`source_label`] names it.
    pub source: String,
    /// How the watcher learnt of it.
    pub kind: ChangeKind,
}

/// How a watcher learnt that its source may have changed (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// An entry in scope was added, modified or deleted, said by an RFC 4533 persistent search.
    Syncrepl,
    /// The `contextCSN` of the naming context holding the groups changed (OpenLDAP, polled).
    ContextCsn,
    /// Active Directory's `highestCommittedUSN` changed, or the domain controller answering did
    /// (polled).
    Usn,
    /// A desired-state file was written, created, renamed or removed.
    Files,
    /// The watch was lost and is back: the source may have changed while nothing watched it.
    Reconnect,
}

impl ChangeKind {
    /// The kind as a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Syncrepl => "syncrepl",
            ChangeKind::ContextCsn => "context_csn",
            ChangeKind::Usn => "usn",
            ChangeKind::Files => "files",
            ChangeKind::Reconnect => "reconnect",
        }
    }
}

/// How LDAP sources are watched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LdapWatchMode {
    /// Active Directory: poll `highestCommittedUSN`. OpenLDAP: a persistent search when the
    /// rootDSE lists the Sync Request control (`syncprov`), else poll `contextCSN`.
    #[default]
    Auto,
    /// Always a persistent search (the server must support RFC 4533; otherwise the watcher
    /// logs the server's refusal and retries).
    Persist,
    /// Always poll (`highestCommittedUSN` on Active Directory, `contextCSN` elsewhere): for
    /// servers whose `syncprov` is limited (access rules, size limits on the sync search).
    Poll,
}

/// How the watchers work.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// How often a polling LDAP watcher reads its server. Each poll is one LDAP operation, so
    /// the default of 60 s keeps an idle daemon within one operation a minute per source.
    pub poll: Duration,
    /// How LDAP sources are watched.
    pub ldap: LdapWatchMode,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll: Duration::from_secs(60),
            ldap: LdapWatchMode::Auto,
        }
    }
}

/// A label for metrics and logs: an LDAP source's first URL; a TOML source's path (as the
/// config names it, resolved against the config file's folder).
pub fn source_label(s: &SourceConfig) -> String {
    match s {
        SourceConfig::Ldap(c) => c.urls.first().cloned().unwrap_or_default(),
        SourceConfig::Toml(c) => c.path.display().to_string(),
    }
}

/// Starts one watcher task per source, each sending what it sees to `tx`.
///
/// A watcher never ends the daemon: errors are logged and the watch is started again after a
/// backoff (capped at about a minute), a panic inside it is caught the same way, and after a
/// watch was lost and is back it sends [`ChangeKind::Reconnect`]. Every task ends promptly once
/// `stop` is cancelled, or once the receiver of `tx` is dropped.
pub fn spawn_all(
    sources: &[SourceConfig],
    opts: &WatchOptions,
    tx: UnboundedSender<Change>,
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    sources
        .iter()
        .map(|source| {
            let label = source_label(source);
            let (tx, stop, opts) = (tx.clone(), stop.clone(), opts.clone());
            match source {
                SourceConfig::Ldap(cfg) => {
                    let cfg = cfg.clone();
                    tokio::spawn(supervise(label, tx, stop, move |session| {
                        let (cfg, opts) = (cfg.clone(), opts.clone());
                        async move { super::ldap::watch::watch(&cfg, &opts, session).await }
                    }))
                }
                SourceConfig::Toml(cfg) => {
                    let cfg = cfg.clone();
                    tokio::spawn(supervise(label, tx, stop, move |session| {
                        let cfg = cfg.clone();
                        async move { watch_files(&cfg, session).await }
                    }))
                }
            }
        })
        .collect()
}

/// Why a watch stopped watching (logged; the supervisor starts it again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    /// Connecting, binding or reading the directory failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The persistent search ended or could not be read.
    #[error("ldap source {server}: {doing}: {message}")]
    Search {
        /// The server URL.
        server: String,
        /// What the watcher was doing.
        doing: String,
        /// What went wrong.
        message: String,
    },
    /// The operating system's file events could not be set up or failed.
    #[error("watching {}: {source}", path.display())]
    Files {
        /// The file or folder watched.
        path: PathBuf,
        /// What `notify` said.
        source: notify::Error,
    },
    /// The daemon dropped the receiving end: nobody listens any more.
    #[error("the daemon no longer listens for changes")]
    Closed,
}

/// What a watch needs from its supervisor: where to send what it sees, and when to stop.
pub(crate) struct Session {
    label: String,
    tx: UnboundedSender<Change>,
    stop: CancellationToken,
    /// Whether an earlier watch of this source was lost (or never got going), so the next one
    /// to get going must say so.
    lost: bool,
    /// Set once this watch watches, so that the supervisor starts its backoff afresh.
    established: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Session {
    /// The source's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Cancelled when the watcher is to stop: the work returns `Ok(())` promptly.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Sends a change.
    pub fn changed(&self, kind: ChangeKind) -> Result<(), WatchError> {
        debug!(source = %self.label, kind = kind.as_str(), "source may have changed");
        self.tx
            .send(Change {
                source: self.label.clone(),
                kind,
            })
            .map_err(|_| WatchError::Closed)
    }

    /// Says that the watch now watches: from here on it sees every change. After a lost watch
    /// this sends [`ChangeKind::Reconnect`] (once).
    pub fn established(&mut self) -> Result<(), WatchError> {
        self.established
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if std::mem::take(&mut self.lost) {
            info!(source = %self.label, "watching the source again");
            self.changed(ChangeKind::Reconnect)?;
        } else {
            info!(source = %self.label, "watching the source");
        }
        Ok(())
    }
}

/// How long a stopping watch may take to close its connection before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The backoff between attempts: 1 s doubling to 60 s, with jitter so that watchers of one
/// server that fail together do not retry together.
fn backoff() -> impl Iterator<Item = Duration> {
    crate::retry::endless_backoff(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs `work` until `stop`, starting it again (after a backoff) whenever it ends or panics.
async fn supervise<F, Fut>(
    label: String,
    tx: UnboundedSender<Change>,
    stop: CancellationToken,
    mut work: F,
) where
    F: FnMut(Session) -> Fut,
    Fut: Future<Output = Result<(), WatchError>> + Send + 'static,
{
    let mut delays = backoff();
    let mut lost = false;
    loop {
        let established = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let session = Session {
            label: label.clone(),
            tx: tx.clone(),
            stop: stop.child_token(),
            lost,
            established: established.clone(),
        };
        let mut task = tokio::spawn(work(session));
        let outcome = tokio::select! {
            r = &mut task => r,
            () = stop.cancelled() => {
                // The work sees the same cancellation and closes its connection; a work
                // that does not within the grace is aborted.
                if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                    task.abort();
                }
                return;
            }
        };
        if stop.is_cancelled() {
            return;
        }
        match outcome {
            Ok(Ok(())) => warn!(source = %label, "the watch ended; starting it again"),
            Ok(Err(WatchError::Closed)) => {
                debug!(source = %label, "nobody listens for changes; the watcher ends");
                return;
            }
            Ok(Err(e)) => warn!(source = %label, error = %e, "the watch failed; retrying"),
            Err(e) if e.is_panic() => {
                error!(source = %label, error = %e, "the watch panicked; retrying");
            }
            Err(e) => warn!(source = %label, error = %e, "the watch was cancelled; retrying"),
        }
        if tx.is_closed() {
            return;
        }
        lost = true;
        if established.load(std::sync::atomic::Ordering::Relaxed) {
            // It watched for a while: a new failure starts the backoff from its beginning.
            delays = backoff();
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(60));
        debug!(source = %label, ?delay, "waiting before watching again");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// How long file events are gathered into one change: an editor's save is several events
/// (write, close, rename of a temporary file) within a few milliseconds.
const FILE_SETTLE: Duration = Duration::from_millis(100);

/// Watches a TOML source's file or folder until stopped.
///
/// The folder holding a file is watched rather than the file itself: editors save by writing a
/// new file and renaming it over the old one, which a watch of the old file would not survive.
/// A folder source is watched without its subfolders, since a load reads only its top-level
/// `*.toml` files.
async fn watch_files(cfg: &TomlSourceConfig, mut session: Session) -> Result<(), WatchError> {
    use notify::{RecursiveMode, Watcher};

    let path = cfg.path.clone();
    let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
    let watched = if is_dir {
        path.clone()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        // The receiver is gone only when the watch ended.
        let _ = events_tx.send(e);
    })
    .map_err(|source| WatchError::Files {
        path: watched.clone(),
        source,
    })?;
    watcher
        .watch(&watched, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Files {
            path: watched.clone(),
            source,
        })?;
    session.established()?;
    let relevant = |e: &notify::Event| counts(e, &path, is_dir);
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            () = session.stop().cancelled() => return Ok(()),
        };
        let event = match event {
            Some(Ok(e)) => e,
            Some(Err(source)) => return Err(WatchError::Files { path, source }),
            None => return Ok(()),
        };
        if !relevant(&event) {
            continue;
        }
        // Gather the rest of this save, then send one change for it.
        tokio::select! {
            () = tokio::time::sleep(FILE_SETTLE) => {}
            () = session.stop().cancelled() => return Ok(()),
        }
        while let Ok(more) = events.try_recv() {
            if let Err(source) = more {
                return Err(WatchError::Files { path, source });
            }
        }
        session.changed(ChangeKind::Files)?;
    }
}

/// Whether a file event may change what a load of the source at `source` reads.
fn counts(e: &notify::Event, source: &Path, is_dir: bool) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};

    // A lost event (the kernel's queue overflowed): anything may have changed.
    if e.need_rescan() {
        return true;
    }
    match e.kind {
        // Reads, by roster's own runs among others, change nothing; a close after writing
        // follows the write's own event, so it adds nothing either.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    e.paths.iter().any(|p| {
        if p == source {
            return true;
        }
        if !is_dir {
            return false;
        }
        // The same rule as `toml::files`: a visible `*.toml` directly in the folder.
        p.parent() == Some(source)
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
            && p.extension().is_some_and(|x| x == "toml")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, Event, EventKind, ModifyKind,
    };

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_events_that_change_what_a_load_reads_count() {
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let dir = Path::new("/d");
        assert!(counts(&event(write, "/d/a.toml"), dir, true));
        assert!(counts(
            &event(EventKind::Create(CreateKind::File), "/d/b.toml"),
            dir,
            true
        ));
        // Editor swap files and backups, subfolders, other files and reads do not.
        for p in [
            "/d/.a.toml.swp",
            "/d/a.toml~",
            "/d/4913",
            "/d/sub/a.toml",
            "/d/x.txt",
        ] {
            assert!(!counts(&event(write, p), dir, true), "{p}");
        }
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!counts(&event(open, "/d/a.toml"), dir, true));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!counts(&event(closed, "/d/a.toml"), dir, true));
        // A file source: that file only, whatever its name.
        let file = Path::new("/d/groups.conf");
        assert!(counts(&event(write, "/d/groups.conf"), file, false));
        assert!(!counts(&event(write, "/d/a.toml"), file, false));
    }

    #[test]
    fn kinds_have_stable_labels() {
        let all = [
            ChangeKind::Syncrepl,
            ChangeKind::ContextCsn,
            ChangeKind::Usn,
            ChangeKind::Files,
            ChangeKind::Reconnect,
        ];
        let labels: Vec<_> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            labels,
            ["syncrepl", "context_csn", "usn", "files", "reconnect"]
        );
    }

    #[tokio::test]
    async fn a_panicking_watch_is_started_again_and_says_it_reconnected() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(supervise(
            "src".to_owned(),
            tx,
            stop.clone(),
            move |mut session| {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    if n == 0 {
                        session.established()?;
                        panic!("a malformed reply");
                    }
                    session.established()?;
                    session.stop().cancelled().await;
                    Ok(())
                }
            },
        ));
        let got = rx.recv().await;
        assert_eq!(
            got,
            Some(Change {
                source: "src".to_owned(),
                kind: ChangeKind::Reconnect
            })
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("the supervisor ends on stop")
            .expect("the supervisor does not panic");
    }

    #[test]
    fn the_backoff_is_capped_at_a_minute() {
        let d: Vec<Duration> = backoff().take(20).collect();
        assert!(d[0] >= Duration::from_secs(1), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_secs(60)), "{d:?}");
        assert!(d[19] >= Duration::from_secs(30), "{d:?}");
    }
}
