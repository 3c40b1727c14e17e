//! The audit journal: every write roster sends, recorded in the state folder before it leaves
//! and after its answer comes, as chained JSON lines that `roster journal verify` checks.
//!
//! Each write request is two lines (see [`Line`]): an **intent**, written and flushed to disk
//! (`fsync`) before the request is sent, and an **outcome** once its answer came (`applied`,
//! `already_done`, `failed` with the status and the server's message, or `unknown` when no answer
//! came), or once it was held back after all (`not_sent`: the intent is written while the request
//! waits for its turn, and the lease may be lost, or the run stopped, meanwhile). A run killed
//! between the two leaves an intent without outcome; the next run that reads that target again
//! says so in its log, checks those groups first, and records a **recheck** line pointing at the
//! intent, so that it is reported once, not by every run after.
//!
//! Every line carries `prev`, the SHA-256 of the line before it (of the very first line, 64
//! zeros), and `journal.head` keeps the hash of the newest line: an edited, removed or reordered
//! line breaks the chain at the line after it, and lines removed at the end no longer match the
//! head. The chain is a check against mistakes and careless edits, not against someone who can
//! rewrite the files, who can recompute it.
//!
//! Files (`journal-000001.jsonl`, `journal-000002.jsonl`, ...) rotate by size: a line that would
//! take the file being written past `max_file_size` starts the next one, and only the newest
//! `max_files` are kept. One process writes a journal at a time (`journal.lock`); the head is
//! written after each line, so a process killed between the two leaves the head one line behind,
//! which [`Journal::open`] brings up to date and `verify` accepts.
//!
//! Flushes are shared: a flush of the file and the head (`fdatasync` of each) covers every line
//! written when it starts, and it is made outside the lock that appends lines, on the blocking
//! pool, so the intents written while one flush is under way wait for the next, one flush for
//! all of them, and no runtime worker waits on an intent's flush (a file rotated away is still
//! flushed as it is closed, and a new journal as it is opened). A flush holds its turn until it
//! ends and records its own end, even when the write that started it is given up meanwhile.
//! Each intent still returns only once a flush that began after it was written has finished;
//! the head is still written after every line, so what a killed process leaves is as above. A
//! file the journal creates is named in its folder on disk too before an intent in it returns:
//! [`Journal::open`] creates and flushes a new journal's file and head (or a head it brings up
//! to date) and their folder, and the flush after a rotation flushes the folder along.
//!
//! The journal records; it never decides what is written: every run still plans from a fresh,
//! complete read of each target.

pub mod read;
mod record;
pub mod revision;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::config::JournalConfig;

pub use record::{Audit, TargetJournal};
pub use revision::SourceRevision;

/// The name of the file that keeps the newest line's hash.
pub const HEAD_FILE: &str = "journal.head";

/// The name of the file a writing process holds locked.
pub const LOCK_FILE: &str = "journal.lock";

/// The `prev` of the journal's first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The name of journal file `number`: `journal-000001.jsonl`.
pub fn file_name(number: u64) -> String {
    format!("journal-{number:06}.jsonl")
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::model::hex(&Sha256::digest(bytes))
}

/// Why the journal could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another process holds the journal.
    #[error(
        "{}: another roster is writing this journal (it holds {LOCK_FILE}); wait for it to \
         finish, or give this config its own state_dir",
        dir.display()
    )]
    Busy {
        /// The state folder.
        dir: PathBuf,
    },
    /// The journal is not as roster left it: a line edited, removed or reordered, a file
    /// missing, the head not matching.
    #[error("{at}: {message}")]
    Damaged {
        /// Where: a file, or `file:line`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// An earlier write of this run failed, so nothing more is written (a gap would break the
    /// chain).
    #[error("the journal could not be written earlier in this run, so no more writes are sent")]
    Broken,
}

impl JournalError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a line records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A write is about to be sent.
    #[default]
    Intent,
    /// How a write came back.
    Outcome,
    /// A later run read the target of an intent that has no outcome.
    Recheck,
}

/// An intent written to the journal, perhaps not yet on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The write's number in its run, which its outcome names.
    pub call: u64,
    /// How many lines this run had written with it: on disk once a flush covers as many.
    line: u64,
}

/// How a write came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// The server did what was asked.
    Applied,
    /// The server said it was done already (an existing group adopted, a member already gone).
    AlreadyDone,
    /// The server refused or failed it (`status` and `message` say how).
    Failed,
    /// No answer came (a timeout, a broken connection): the write may or may not have landed.
    Unknown,
    /// The write was not sent after its intent was written (the lease was lost, the run gave up
    /// on it before its turn): it cannot have landed.
    NotSent,
}

impl WriteOutcome {
    /// The word a journal line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Applied => "applied",
            WriteOutcome::AlreadyDone => "already_done",
            WriteOutcome::Failed => "failed",
            WriteOutcome::Unknown => "unknown",
            WriteOutcome::NotSent => "not_sent",
        }
    }
}

/// One planned change a write carries out, when a write carries several.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRef {
    /// The plan's name for the change (`add_member`, ...).
    pub op: String,
    /// The member added or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The child added or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
}

/// What a write is about: the same on its intent and its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The plan's name for the change (`create_group`, `add_member`, ...); the names joined
    /// with `+` when one write carries changes of several kinds.
    pub op: String,
    /// The group written to.
    pub group: String,
    /// The member, when the write carries one change and it has one.
    pub member: Option<String>,
    /// The child group, when the write carries one change and it has one.
    pub child: Option<String>,
    /// Each change, when the write carries more than one.
    pub changes: Option<Vec<ChangeRef>>,
}

/// One line of the journal. Fields that do not apply to a kind are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// `intent`, `outcome` or `recheck`.
    pub kind: Kind,
    /// The run that wrote the line (the `run_id` of its log lines).
    pub run_id: String,
    /// The write's number in its run, shared by its intent and its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    /// When, in UTC (RFC 3339).
    pub time: String,
    /// The target's name.
    pub target: String,
    /// See [`Subject::op`].
    pub op: String,
    /// The group written to.
    pub group: String,
    /// See [`Subject::member`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// See [`Subject::child`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
    /// See [`Subject::changes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<ChangeRef>>,
    /// Intent: the HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Intent: the path as sent, without the query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Outcome: how the write came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<WriteOutcome>,
    /// Outcome: the HTTP status; 0 when no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Outcome: the server's message when it failed, why it was already done, or why no answer
    /// came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Recheck: the run of the intent without outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of_run_id: Option<String>,
    /// Recheck: the write's number in that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of_call: Option<u64>,
    /// Intent: the config's settings hash (every target's settings, secrets left out), as a
    /// saved plan records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Intent: where the desired state came from, and at which revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Vec<SourceRevision>>,
    /// The SHA-256 of the line before this one, in hex.
    pub prev: String,
}

impl Line {
    /// A line of `kind` about `subject`, with no time or chain yet.
    fn about(kind: Kind, run_id: &str, target: &str, subject: &Subject) -> Self {
        Self {
            kind,
            run_id: run_id.to_owned(),
            target: target.to_owned(),
            op: subject.op.clone(),
            group: subject.group.clone(),
            member: subject.member.clone(),
            child: subject.child.clone(),
            changes: subject.changes.clone(),
            ..Self::default()
        }
    }

    /// What the line is about.
    pub fn subject(&self) -> Subject {
        Subject {
            op: self.op.clone(),
            group: self.group.clone(),
            member: self.member.clone(),
            child: self.child.clone(),
            changes: self.changes.clone(),
        }
    }

    /// The members it names: its `member`, or those of its `changes`.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        let many = self
            .changes
            .iter()
            .flatten()
            .filter_map(|c| c.member.as_deref());
        self.member.as_deref().into_iter().chain(many)
    }

    /// The child groups it names: its `child`, or those of its `changes`.
    pub fn children(&self) -> impl Iterator<Item = &str> {
        let many = self
            .changes
            .iter()
            .flatten()
            .filter_map(|c| c.child.as_deref());
        self.child.as_deref().into_iter().chain(many)
    }
}

/// The journal, open for writing by one run. See the module documentation.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    rotation: JournalConfig,
    run_id: String,
    config: String,
    sources: Mutex<Vec<SourceRevision>>,
    calls: AtomicU64,
    /// Shared with a flush under way, which records its end itself.
    files: Arc<Mutex<Files>>,
    /// How many of this run's lines are on disk: every line up to this number is flushed.
    flushed: Arc<AtomicU64>,
    /// Taken for the one flush under way, and held until it ends, even when the write that
    /// started it was given up meanwhile; the others wait on it, and most find their line
    /// flushed once they have it.
    flushing: Arc<tokio::sync::Mutex<()>>,
    /// How many times this run has flushed a journal file, the head or the folder to disk.
    syncs: Arc<AtomicU64>,
    /// Held for as long as the journal is open; the lock goes with it (and with the process).
    _lock: File,
}

/// The file being written, and the end of the chain.
#[derive(Debug)]
struct Files {
    /// The number of the file being written (or to be started).
    number: u64,
    /// The file, once opened for this run (shared with a flush under way).
    file: Option<Arc<File>>,
    /// Its size.
    size: u64,
    /// The hash of the newest line.
    prev: String,
    /// How many lines this run has written.
    written: u64,
    /// The head file, once opened (shared with a flush under way).
    head: Option<Arc<File>>,
    /// Whether a file was created since the last flush, so that the next flush makes its name
    /// in the folder durable too.
    created: bool,
    /// Whether a write failed, so that nothing more is written.
    broken: bool,
}

impl Journal {
    /// Opens the journal in `dir` (created if need be) for run `run_id`, whose config hashes to
    /// `config`. Fails when another process holds it, or when it is not as roster left it (its
    /// head not matching its newest line, an incomplete last line): writing on would bury that.
    pub fn open(
        dir: &Path,
        rotation: &JournalConfig,
        run_id: &str,
        config: &str,
    ) -> Result<Self, JournalError> {
        create_dir(dir)?;
        let lock = lock(dir)?;
        let files = read::list(dir)?;
        let head = read::head(dir)?;
        let tail = read::tail(&files)?;
        let head_path = dir.join(HEAD_FILE);
        // Before the head may be brought up to date below, which creates it if it is missing.
        let head_was_there = head_path.exists();
        let shown = |p: &Path| p.display().to_string();
        match (&head, &tail.last) {
            (None, None) => {}
            (Some(h), Some(last)) if *h == last.hash => {}
            // One line behind; for the journal's first line, no head at all.
            (Some(_), Some(last)) | (None, Some(last))
                if head.as_ref() == tail.before_last.as_ref() =>
            {
                info!(
                    file = %last.at,
                    "the journal's head was one line behind (a run stopped between writing a \
                     line and the head); brought up to date"
                );
                write_head(&mut None, dir, &last.hash, true)?;
            }
            (None, Some(last)) => {
                return Err(JournalError::Damaged {
                    at: shown(&head_path),
                    message: format!(
                        "missing, while the journal holds lines (the newest at {}); run `roster \
                         journal verify`, and move the journal files aside to start a new journal",
                        last.at
                    ),
                });
            }
            (Some(_), None) => {
                return Err(JournalError::Damaged {
                    at: shown(&head_path),
                    message: "names a line, but no journal file holds one: the journal files \
                              were removed; move the head aside to start a new journal"
                        .into(),
                });
            }
            (Some(_), Some(last)) => {
                return Err(JournalError::Damaged {
                    at: shown(&head_path),
                    message: format!(
                        "does not match the newest line ({}): lines were removed or edited; run \
                         `roster journal verify`",
                        last.at
                    ),
                });
            }
        }
        let (number, size) = match files.last() {
            Some(f) => (
                f.number,
                fs::metadata(&f.path)
                    .map_err(|e| JournalError::io(&f.path, e))?
                    .len(),
            ),
            None => (1, 0),
        };
        let syncs = Arc::new(AtomicU64::new(0));
        let mut files = Files {
            number,
            file: None,
            size,
            prev: tail.last.map_or_else(|| GENESIS.to_owned(), |l| l.hash),
            written: 0,
            head: None,
            created: false,
            broken: false,
        };
        files.prepare(dir, head_was_there, &syncs)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            rotation: rotation.clone(),
            run_id: run_id.to_owned(),
            config: config.to_owned(),
            sources: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            files: Arc::new(Mutex::new(files)),
            flushed: Arc::new(AtomicU64::new(0)),
            flushing: Arc::new(tokio::sync::Mutex::new(())),
            syncs,
            _lock: lock,
        })
    }

    /// How many times this run has flushed a journal file, the head or the folder to disk:
    /// what its intents cost, flushed together.
    fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Records where the desired state came from, for the intents that follow.
    pub fn set_sources(&self, sources: Vec<SourceRevision>) {
        *lock_ignoring_poison(&self.sources) = sources;
    }

    /// Records that write `subject` to `target` is about to be sent as `method path`. The write
    /// may leave only once [`Journal::on_disk`] says its intent is on disk.
    pub fn intent(
        &self,
        target: &str,
        subject: &Subject,
        method: &str,
        path: &str,
    ) -> Result<Intent, JournalError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let mut line = Line::about(Kind::Intent, &self.run_id, target, subject);
        line.call = Some(call);
        line.method = Some(method.to_owned());
        line.path = Some(path.to_owned());
        line.config = Some(self.config.clone());
        line.source = Some(lock_ignoring_poison(&self.sources).clone());
        let line = self.append(line)?;
        Ok(Intent { call, line })
    }

    /// Returns once `intent` is on disk.
    pub async fn on_disk(&self, intent: &Intent) -> Result<(), JournalError> {
        self.flush(intent.line).await
    }

    /// Returns once this run's first `line` lines are on disk: at once when a flush has covered
    /// them, else after the flush that does, which the first task to need one runs for every
    /// line written by the time it starts.
    async fn flush(&self, line: u64) -> Result<(), JournalError> {
        if self.flushed.load(Ordering::Acquire) >= line {
            return Ok(());
        }
        // The calls an apply starts together are futures of one task: yielding once lets the
        // others write their intents before this flush takes its turn and fixes the lines it
        // covers, so the first requests all leave after one flush rather than two in turn.
        tokio::task::yield_now().await;
        let turn = Arc::clone(&self.flushing).lock_owned().await;
        if self.flushed.load(Ordering::Acquire) >= line {
            return Ok(());
        }
        let (upto, number, file, head, created) = {
            let mut files = lock_ignoring_poison(&self.files);
            if files.broken {
                return Err(JournalError::Broken);
            }
            (
                files.written,
                files.number,
                files.file.clone(),
                files.head.clone(),
                std::mem::take(&mut files.created),
            )
        };
        // The file first, then the head that names its newest line, then the folder when a
        // file was created: a line on disk in a file the folder does not name is lost all the
        // same. A file rotated away since was flushed as it was closed, so `file` holds every
        // line not yet on disk. Flushed on the blocking pool, outside the files' lock: lines
        // are appended meanwhile, and a runtime worker held by the disk would hold up every
        // answer queued on it (the intents are flushed while their writes wait for a slot, so
        // the hand-over is not on a write's path). The flush records its own end and holds the
        // turn until then: a write given up while it waits must not let the next flush claim
        // lines before this one is done, nor its failure go unseen.
        let dir = self.dir.clone();
        let file = file.map(|f| (f, dir.join(file_name(number))));
        let head = head.map(|h| (h, dir.join(HEAD_FILE)));
        let (files, flushed, syncs) = (
            Arc::clone(&self.files),
            Arc::clone(&self.flushed),
            Arc::clone(&self.syncs),
        );
        let flush = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let synced = file
                .into_iter()
                .chain(head)
                .try_for_each(|(f, path)| {
                    syncs.fetch_add(1, Ordering::Relaxed);
                    f.sync_data().map_err(|e| JournalError::io(&path, e))
                })
                .and_then(|()| {
                    if created {
                        syncs.fetch_add(1, Ordering::Relaxed);
                        sync_dir(&dir)
                    } else {
                        Ok(())
                    }
                });
            match &synced {
                Ok(()) => flushed.store(upto, Ordering::Release),
                // Lines not known to be on disk: an intent after them would claim too much.
                Err(_) => lock_ignoring_poison(&files).broken = true,
            }
            synced
        });
        flush.await.unwrap_or_else(|e| {
            lock_ignoring_poison(&self.files).broken = true;
            Err(JournalError::io(&self.dir, io::Error::other(e)))
        })
    }

    /// Records how write `call` came back.
    pub fn outcome(
        &self,
        target: &str,
        subject: &Subject,
        call: u64,
        outcome: WriteOutcome,
        status: u16,
        message: Option<String>,
    ) -> Result<(), JournalError> {
        let mut line = Line::about(Kind::Outcome, &self.run_id, target, subject);
        line.call = Some(call);
        line.outcome = Some(outcome);
        line.status = Some(status);
        line.message = message;
        self.append(line).map(drop)
    }

    /// Records that this run read the target of `intent`, an intent without outcome of an
    /// earlier run, afresh.
    pub fn recheck(&self, intent: &Line) -> Result<(), JournalError> {
        let mut line = Line::about(
            Kind::Recheck,
            &self.run_id,
            &intent.target,
            &intent.subject(),
        );
        line.of_run_id = Some(intent.run_id.clone());
        line.of_call = intent.call;
        self.append(line).map(drop)
    }

    /// Chains `line` to the newest one and appends it, starting the next file when this one is
    /// full; returns how many lines this run has written, for [`Journal::flush`].
    fn append(&self, mut line: Line) -> Result<u64, JournalError> {
        line.time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut files = lock_ignoring_poison(&self.files);
        if files.broken {
            return Err(JournalError::Broken);
        }
        let result = files.append(&self.dir, &self.rotation, line, &self.syncs);
        if result.is_err() {
            // A line may be half written: anything after it would read as damage.
            files.broken = true;
        }
        result
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let lines = lock_ignoring_poison(&self.files).written;
        debug!(lines, syncs = self.syncs(), "journal closed");
    }
}

impl Files {
    /// Opens the file being written and the head, creating what is missing. What it creates
    /// is flushed here, its folder too, so that the run's first intent waits for its own line
    /// only, and a journal that exists is found after a crash. `head_was_there`: whether the
    /// head existed before [`Journal::open`] brought it up to date, which creates it if need be.
    fn prepare(
        &mut self,
        dir: &Path,
        head_was_there: bool,
        syncs: &AtomicU64,
    ) -> Result<(), JournalError> {
        let path = dir.join(file_name(self.number));
        let head_path = dir.join(HEAD_FILE);
        let missing = !path.exists() || !head_was_there;
        let file = private(OpenOptions::new().create(true).append(true))
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        let head = private(OpenOptions::new().create(true).write(true).truncate(false))
            .open(&head_path)
            .map_err(|e| JournalError::io(&head_path, e))?;
        if missing {
            file.sync_all().map_err(|e| JournalError::io(&path, e))?;
            head.sync_all()
                .map_err(|e| JournalError::io(&head_path, e))?;
            sync_dir(dir)?;
            syncs.fetch_add(3, Ordering::Relaxed);
        }
        self.file = Some(Arc::new(file));
        self.head = Some(Arc::new(head));
        Ok(())
    }

    fn append(
        &mut self,
        dir: &Path,
        rotation: &JournalConfig,
        mut line: Line,
        syncs: &AtomicU64,
    ) -> Result<u64, JournalError> {
        line.prev = self.prev.clone();
        let mut text = serde_json::to_string(&line).map_err(|e| JournalError::Damaged {
            at: dir.display().to_string(),
            message: format!("cannot encode a journal line: {e}"),
        })?;
        let hash = sha256_hex(text.as_bytes());
        text.push('\n');
        let len = text.len() as u64;
        if self.size > 0 && self.size + len > rotation.max_file_size {
            self.rotate(dir, rotation, syncs)?;
        }
        let path = dir.join(file_name(self.number));
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                // The next file after a rotation: new, so the next flush syncs the folder too.
                self.created = true;
                self.file.insert(Arc::new(
                    private(OpenOptions::new().create(true).append(true))
                        .open(&path)
                        .map_err(|e| JournalError::io(&path, e))?,
                ))
            }
        };
        // One write of the whole line, so that a process killed around it leaves the line
        // whole or absent.
        (&**file)
            .write_all(text.as_bytes())
            .map_err(|e| JournalError::io(&path, e))?;
        self.size += len;
        self.written += 1;
        write_head(&mut self.head, dir, &hash, false)?;
        self.prev = hash;
        Ok(self.written)
    }

    /// Starts the next file, and removes those beyond `max_files`.
    fn rotate(
        &mut self,
        dir: &Path,
        rotation: &JournalConfig,
        syncs: &AtomicU64,
    ) -> Result<(), JournalError> {
        // Lines of this file may wait for a flush, which will flush the next file only.
        if let Some(f) = self.file.take() {
            let path = dir.join(file_name(self.number));
            syncs.fetch_add(1, Ordering::Relaxed);
            f.sync_data().map_err(|e| JournalError::io(&path, e))?;
        }
        self.number += 1;
        self.size = 0;
        let keep_from = (self.number + 1).saturating_sub(rotation.max_files.get() as u64);
        for old in read::list(dir)? {
            if old.number < keep_from {
                fs::remove_file(&old.path).map_err(|e| JournalError::io(&old.path, e))?;
            }
        }
        Ok(())
    }
}

/// Writes `hash` into the head file, in place: one small write at its start, which a killed
/// process leaves whole or not done; `sync` flushes it (else the next intent's flush does).
fn write_head(
    head: &mut Option<Arc<File>>,
    dir: &Path,
    hash: &str,
    sync: bool,
) -> Result<(), JournalError> {
    let path = dir.join(HEAD_FILE);
    let file: &File = match head {
        Some(f) => f,
        None => head.insert(Arc::new(
            private(OpenOptions::new().create(true).write(true).truncate(false))
                .open(&path)
                .map_err(|e| JournalError::io(&path, e))?,
        )),
    };
    let text = format!("{hash}\n");
    let mut writer = file;
    writer
        .seek(SeekFrom::Start(0))
        .and_then(|_| writer.write_all(text.as_bytes()))
        .and_then(|()| file.set_len(text.len() as u64))
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
        .map_err(|e| JournalError::io(&path, e))
}

/// Files the journal creates are for the service's user and group alone: they name groups,
/// members and paths (a state folder that systemd creates is readable by all by default).
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options
}

/// Flushes the folder `dir`, so that the names of the files created in it are on disk.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, e))
}

fn create_dir(dir: &Path) -> Result<(), JournalError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // The journal names groups, members and paths: not for every local user to read.
        builder.mode(0o750);
    }
    builder.create(dir).map_err(|e| JournalError::io(dir, e))
}

/// Takes the journal's lock, without waiting: a second writer would fork the chain.
fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    #[cfg(unix)]
    {
        use rustix::fs::{FlockOperation, flock};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(JournalError::Busy {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(JournalError::io(&path, e.into())),
        }
    }
    Ok(file)
}

/// Locks a mutex, taking it over when a panicking thread poisoned it: the journal's state is a
/// file position and a hash, left consistent by every step that can fail.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
