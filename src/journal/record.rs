//! How a run writes its journal: [`Audit`] (one run's journal and the intents without outcome it
//! found), [`TargetJournal`] (one target's, given to the executor), and the watch of one attempt
//! at a call, which turns the write requests the endpoint reports into intent and outcome lines.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tracing::warn;

use super::{ChangeRef, Journal, JournalError, Line, Subject, WriteOutcome, read};
use crate::config::Config;
use crate::exec::CallJournal;
use crate::model::GroupName;
use crate::plan::change::{Change, Plan};
use crate::target::watch::{CallWatch, WriteAnswer, WriteRequest};
use crate::target::{CallError, Sent};

/// One run's audit journal: open for writing when the run applies, and the intents without
/// outcome that earlier runs left.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    journal: Option<Arc<Journal>>,
    pending: Vec<Line>,
}

impl Audit {
    /// Opens the journal of `config` for run `run_id`: for writing when `write` (a run that
    /// applies), else only to read the intents without outcome (a plan, which writes nothing,
    /// not even to the journal). A plan that cannot read the journal says so and goes on; a
    /// run that would write and cannot journal fails before it reads anything.
    pub fn open(config: &Config, write: bool, run_id: &str) -> Result<Self, JournalError> {
        let dir = &config.state_dir;
        if !write {
            let pending = read::pending(dir).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the journal for writes an earlier run left unfinished");
                Vec::new()
            });
            return Ok(Self {
                journal: None,
                pending,
            });
        }
        let journal = Journal::open(dir, &config.journal, run_id, &config.settings_hash())?;
        let pending = read::pending(dir)?;
        Ok(Self {
            journal: Some(Arc::new(journal)),
            pending,
        })
    }

    /// The journal, when this run writes one.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// Every intent without outcome or recheck, oldest first.
    pub fn pending(&self) -> &[Line] {
        &self.pending
    }

    /// The intents without outcome or recheck of writes to `target`, oldest first.
    pub fn pending_for<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.pending.iter().filter(move |l| l.target == target)
    }

    /// The journal of `target` for the calls that carry out `plan`, when this run writes one.
    pub fn for_target(&self, target: &str, plan: &Plan) -> Option<Arc<dyn CallJournal>> {
        let journal = self.journal.as_ref()?;
        Some(Arc::new(TargetJournal {
            journal: Arc::clone(journal),
            target: target.to_owned(),
            changes: plan.changes.iter().map(change_ref).collect(),
        }))
    }
}

/// What a change of the plan is, as a journal line names it.
fn change_ref(c: &Change) -> ChangeRef {
    let (member, child) = match c {
        Change::AddMember { member, .. } | Change::RemoveMember { member, .. } => {
            (Some(member.as_str().to_owned()), None)
        }
        Change::AddChild { child, .. } | Change::RemoveChild { child, .. } => {
            (None, Some(child.as_str().to_owned()))
        }
        _ => (None, None),
    };
    ChangeRef {
        op: c.op().to_owned(),
        member,
        child,
    }
}

/// One target's journal for one run: it names each write by the plan's changes it carries out.
pub struct TargetJournal {
    journal: Arc<Journal>,
    target: String,
    changes: Vec<ChangeRef>,
}

impl fmt::Debug for TargetJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetJournal")
            .field("target", &self.target)
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl TargetJournal {
    /// What a call writing to `group` and carrying out changes `covers` is about.
    fn subject(&self, group: &GroupName, covers: &[usize]) -> Subject {
        let refs: Vec<&ChangeRef> = covers.iter().filter_map(|i| self.changes.get(*i)).collect();
        let mut ops: Vec<&str> = Vec::new();
        for r in &refs {
            if !ops.contains(&r.op.as_str()) {
                ops.push(&r.op);
            }
        }
        let mut subject = Subject {
            op: if ops.is_empty() {
                "write".to_owned()
            } else {
                ops.join("+")
            },
            group: group.as_str().to_owned(),
            ..Subject::default()
        };
        match refs.as_slice() {
            [one] => {
                subject.member = one.member.clone();
                subject.child = one.child.clone();
            }
            [] => {}
            many => subject.changes = Some(many.iter().map(|r| (*r).clone()).collect()),
        }
        subject
    }
}

impl CallJournal for TargetJournal {
    fn attempt(&self, group: &GroupName, covers: &[usize]) -> Arc<dyn CallWatch> {
        Arc::new(Attempt {
            journal: Arc::clone(&self.journal),
            target: self.target.clone(),
            subject: self.subject(group, covers),
            open: Mutex::new(None),
        })
    }
}

/// The watch of one attempt at a call: an intent before each write request, and its outcome once
/// the next one starts or the attempt ends, when what the connector made of the answer is known.
struct Attempt {
    journal: Arc<Journal>,
    target: String,
    subject: Subject,
    /// The write sent last whose outcome is not yet written: its number and its answer.
    open: Mutex<Option<(u64, Option<WriteAnswer>)>>,
}

impl Attempt {
    fn take_open(&self) -> Option<(u64, Option<WriteAnswer>)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn write_outcome(
        &self,
        call: u64,
        (outcome, status, message): (WriteOutcome, u16, Option<String>),
    ) {
        if let Err(e) =
            self.journal
                .outcome(&self.target, &self.subject, call, outcome, status, message)
        {
            // The intent stays without outcome, which the next run reports; the journal is
            // now closed to this run, so no write is sent unrecorded.
            warn!(error = %e, call, "cannot journal the outcome of a write");
        }
    }
}

impl CallWatch for Attempt {
    fn before<'a>(&'a self, request: WriteRequest<'a>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // A connector that sends a second write in one call (a fresh token after a 401,
            // what a refused bulk add left out) has settled what the first one came to.
            if let Some((call, answer)) = self.take_open() {
                self.write_outcome(call, classify(answer.as_ref(), None));
            }
            let refused =
                |e: JournalError| format!("cannot journal the write, so it was not sent: {e}");
            let intent = self
                .journal
                .intent(&self.target, &self.subject, request.method, request.path)
                .map_err(refused)?;
            // Open before the flush is waited for: an attempt given up meanwhile still records
            // what came of this write.
            *self.open.lock().unwrap_or_else(|e| e.into_inner()) = Some((intent.call, None));
            self.journal.on_disk(&intent).await.map_err(refused)
        })
    }

    fn after(&self, answer: WriteAnswer) {
        if let Some((_, slot)) = self.open.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            *slot = Some(answer);
        }
    }

    fn finish(&self, result: Result<Option<&Sent>, &CallError>) {
        if let Some((call, answer)) = self.take_open() {
            self.write_outcome(call, classify(answer.as_ref(), Some(result)));
        }
    }
}

impl Drop for Attempt {
    /// An attempt dropped before it finished (a stopping daemon gave up on it) still records
    /// what is known of its last write.
    fn drop(&mut self) {
        if let Some((call, answer)) = self.take_open() {
            self.write_outcome(call, classify(answer.as_ref(), None));
        }
    }
}

/// The outcome of a write from its answer and, for the last write of an attempt, what the
/// connector made of it (`result`): `(outcome, status, message)`, status 0 when no answer came.
fn classify(
    answer: Option<&WriteAnswer>,
    result: Option<Result<Option<&Sent>, &CallError>>,
) -> (WriteOutcome, u16, Option<String>) {
    match (answer, result) {
        (Some(WriteAnswer::Status { status, .. }), Some(Ok(Some(Sent::Done)))) => {
            (WriteOutcome::Applied, *status, None)
        }
        (Some(WriteAnswer::Status { status, .. }), Some(Ok(Some(Sent::AlreadyDone(why))))) => {
            (WriteOutcome::AlreadyDone, *status, Some(why.clone()))
        }
        (Some(WriteAnswer::Status { status, .. }), _) if (200..300).contains(status) => {
            (WriteOutcome::Applied, *status, None)
        }
        (Some(WriteAnswer::Status { status, message }), _) => {
            (WriteOutcome::Failed, *status, message.clone())
        }
        (Some(WriteAnswer::None(why)), _) => (WriteOutcome::Unknown, 0, Some(why.clone())),
        (Some(WriteAnswer::NotSent(why)), _) => (WriteOutcome::NotSent, 0, Some(why.clone())),
        (None, Some(Err(e))) => (WriteOutcome::Unknown, 0, Some(e.to_string())),
        (None, _) => (
            WriteOutcome::Unknown,
            0,
            Some("roster stopped waiting before the answer came".to_owned()),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::journal::tests;
    use crate::target::CallErrorKind;

    fn status(s: u16, message: Option<&str>) -> WriteAnswer {
        WriteAnswer::Status {
            status: s,
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn an_outcome_is_the_connectors_reading_of_the_last_answer() {
        let done = Sent::Done;
        let already = Sent::AlreadyDone("already a member".into());
        assert_eq!(
            classify(Some(&status(204, None)), Some(Ok(Some(&done)))),
            (WriteOutcome::Applied, 204, None)
        );
        assert_eq!(
            classify(Some(&status(409, Some("exists"))), Some(Ok(Some(&already)))),
            (
                WriteOutcome::AlreadyDone,
                409,
                Some("already a member".into())
            )
        );
        let err = CallError {
            target: "t".into(),
            group: None,
            method: "POST".into(),
            path: "/g".into(),
            kind: CallErrorKind::Timeout,
        };
        assert_eq!(
            classify(Some(&status(500, Some("boom"))), Some(Err(&err))),
            (WriteOutcome::Failed, 500, Some("boom".into()))
        );
        assert_eq!(
            classify(
                Some(&WriteAnswer::None("timed out".into())),
                Some(Err(&err))
            ),
            (WriteOutcome::Unknown, 0, Some("timed out".into()))
        );
        // An earlier write of the attempt: its own answer says it all.
        assert_eq!(
            classify(Some(&status(201, None)), None),
            (WriteOutcome::Applied, 201, None)
        );
        assert_eq!(classify(None, None).0, WriteOutcome::Unknown);
        assert_eq!(
            classify(
                Some(&WriteAnswer::NotSent("the lease was lost".into())),
                Some(Err(&err))
            ),
            (WriteOutcome::NotSent, 0, Some("the lease was lost".into()))
        );
    }

    #[test]
    fn a_writes_subject_names_its_group_and_the_kinds_of_the_changes_it_carries() {
        let (_d, dir) = tests::state();
        let change = tests::member_change;
        let target = TargetJournal {
            journal: Arc::new(tests::open(&dir, "run1")),
            target: "cms".to_owned(),
            changes: vec![
                change("add_member", "alice"),
                change("remove_member", "bob"),
                change("add_member", "carol"),
            ],
        };
        let many = target.subject(&GroupName("eng".to_owned()), &[0, 1, 2]);
        assert_eq!(many.op, "add_member+remove_member");
        assert_eq!(many.group, "eng");
        assert_eq!(many.member, None);
        assert_eq!(many.changes.as_ref().map(Vec::len), Some(3));
        let one = target.subject(&GroupName("ops".to_owned()), &[1]);
        assert_eq!(
            (one.op.as_str(), one.group.as_str(), one.member.as_deref()),
            ("remove_member", "ops", Some("bob"))
        );
        let none = target.subject(&GroupName("qa".to_owned()), &[]);
        assert_eq!((none.op.as_str(), none.group.as_str()), ("write", "qa"));
    }

    #[tokio::test]
    async fn a_write_given_up_while_its_intent_waits_for_a_flush_is_recorded_not_sent() {
        let (_d, dir) = tests::state();
        let journal = Arc::new(tests::open(&dir, "run1"));
        let target = TargetJournal {
            journal: Arc::clone(&journal),
            target: "cms".to_owned(),
            changes: Vec::new(),
        };
        let watch = target.attempt(&GroupName("eng".to_owned()), &[]);
        {
            // A flush is under way: the intent is written and waits for the next.
            let _under_way = journal.flushing.lock().await;
            let before = watch.before(WriteRequest {
                method: "POST",
                path: "/api/groups",
            });
            tokio::pin!(before);
            assert!(futures::poll!(&mut before).is_pending());
            // Given up there, and told so by the endpoint.
            watch.after(WriteAnswer::NotSent("gave up".to_owned()));
        }
        drop(watch);
        drop(target);
        drop(journal);

        let lines = tests::parsed(&dir);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1].call, lines[0].call);
        assert_eq!(lines[1].outcome, Some(WriteOutcome::NotSent));
        assert_eq!(lines[1].message.as_deref(), Some("gave up"));
        assert!(read::verify(&dir).unwrap().open.is_empty());
    }
}
