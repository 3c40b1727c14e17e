//! The watch on one attempt at a call: every write request the attempt sends, before it leaves and
//! after its answer comes, and how the attempt ended. The audit journal is written through it.
//!
//! The executor sets a [`CallWatch`] around each attempt (a [`Target::send`] or a
//! [`Target::recheck`]), and [`http::endpoint::Endpoint::send`] tells it of each write request
//! (any method but `GET`, `HEAD` and `OPTIONS`) it sends meanwhile. It is a task-local value
//! rather than an argument because a connector decides how many requests one call takes (a read
//! before a replacing `PUT`, a second `POST` after a refused bulk add, a fresh token after a
//! 401): watching the endpoint every request passes through catches each write exactly once,
//! whatever the connector does, and the connectors pass nothing along for it.
//!
//! Not watched: reads, including the `POST` lookups a connector sends through
//! [`http::endpoint::Endpoint::read`] (UiPath's `BulkResolveByName`); token and login requests,
//! which do not pass through the endpoint; and anything sent outside an attempt (an observe, a
//! vet).
//!
//! [`Target::send`]: crate::target::Target::send
//! [`Target::recheck`]: crate::target::Target::recheck
//! [`http::endpoint::Endpoint::send`]: crate::target::http::endpoint::Endpoint::send
//! [`http::endpoint::Endpoint::read`]: crate::target::http::endpoint::Endpoint::read

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::target::{CallError, Sent};

/// One write request as it is about to leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path as sent, without the query string (which could carry what a journal must not).
    pub path: &'a str,
}

/// How a write request came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteAnswer {
    /// The server answered with this status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's message, for a status that is not a success.
        message: Option<String>,
    },
    /// No answer came (a timeout, a broken connection): whether the write took effect is unknown.
    None(String),
    /// The request was not sent (the attempt's gate closed, or the attempt was given up before
    /// the request left), for this reason: it cannot have taken effect.
    NotSent(String),
}

/// Watches one attempt at a call. See the module documentation.
pub trait CallWatch: Send + Sync {
    /// A write request will be sent once this resolves and the request has its slot (a journal
    /// waits for its intent to be on disk, meanwhile the requests before it are out). An error
    /// keeps it from being sent: the request fails with
    /// [`CallErrorKind::NotSent`](crate::target::CallErrorKind::NotSent) and this reason. A
    /// request told here and then held back is told to [`CallWatch::after`] as
    /// [`WriteAnswer::NotSent`].
    fn before<'a>(&'a self, request: WriteRequest<'a>) -> BoxFuture<'a, Result<(), String>>;

    /// The write request told last came back, or did not, or was not sent after all.
    fn after(&self, answer: WriteAnswer);

    /// The attempt ended: what the connector made of its answers (`Ok(None)`: a recheck found
    /// that the call had not landed).
    fn finish(&self, result: Result<Option<&Sent>, &CallError>);
}

tokio::task_local! {
    static WATCH: Arc<dyn CallWatch>;
}

/// Runs `attempt` with `watch` told of every write request it sends.
pub async fn watched<F: Future>(watch: Arc<dyn CallWatch>, attempt: F) -> F::Output {
    WATCH.scope(watch, attempt).await
}

/// The watch of the attempt being carried out, if any.
pub fn current() -> Option<Arc<dyn CallWatch>> {
    WATCH.try_with(Arc::clone).ok()
}

/// Whether a request of this method writes.
pub fn is_write(method: &reqwest::Method) -> bool {
    !matches!(
        *method,
        reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::OPTIONS
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl CallWatch for Log {
        fn before<'a>(&'a self, r: WriteRequest<'a>) -> BoxFuture<'a, Result<(), String>> {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}", r.method, r.path));
            Box::pin(async { Ok(()) })
        }
        fn after(&self, _answer: WriteAnswer) {}
        fn finish(&self, _result: Result<Option<&Sent>, &CallError>) {}
    }

    #[tokio::test]
    async fn the_watch_is_set_only_inside_its_attempt_and_each_attempt_sees_its_own() {
        assert!(current().is_none());
        let a = Arc::new(Log::default());
        let b = Arc::new(Log::default());
        let send = |path: &'static str| async move {
            tokio::task::yield_now().await;
            if let Some(w) = current() {
                w.before(WriteRequest {
                    method: "POST",
                    path,
                })
                .await
                .unwrap();
            }
        };
        // Interleaved in one task, as the executor's concurrent calls are.
        futures::join!(
            watched(a.clone(), send("/a")),
            watched(b.clone(), send("/b")),
            send("/none")
        );
        assert_eq!(*a.0.lock().unwrap(), ["POST /a"]);
        assert_eq!(*b.0.lock().unwrap(), ["POST /b"]);
    }

    #[test]
    fn reads_are_not_writes() {
        assert!(!is_write(&reqwest::Method::GET));
        assert!(is_write(&reqwest::Method::POST));
        assert!(is_write(&reqwest::Method::PATCH));
        assert!(is_write(&reqwest::Method::DELETE));
    }
}
