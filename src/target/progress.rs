//! Progress of a target's read: groups read of the groups in scope, on the run's terminal bar.
//!
//! The run sets a bar around a target's reconcile ([`reading`]), and every connector reads its
//! groups through [`read_each`], which sets the bar's length once the list says how many groups
//! are in scope and advances it as each group is read. It is a task-local value, as the call
//! watch is, so that the connectors, which decide how many requests a group takes, pass nothing
//! along for it. Outside [`reading`] nothing is shown.

use std::future::Future;

use futures::{Stream, StreamExt, TryStreamExt};
use indicatif::ProgressBar;

tokio::task_local! {
    static READ: ProgressBar;
}

/// Runs `f` with `bar` as the bar its group reads advance.
pub async fn reading<F: Future>(bar: ProgressBar, f: F) -> F::Output {
    READ.scope(bar, f).await
}

/// Reads each of `items` (`what`: "groups", or "users" when a connector reads the groups' members
/// by user) with `read`, up to `concurrency` at once, advancing the read bar as each is read.
/// The first failure fails the whole read (and drops the reads in flight).
pub async fn read_each<G, R, E, F, Fut>(
    what: &'static str,
    items: Vec<G>,
    concurrency: usize,
    read: F,
) -> Result<Vec<R>, E>
where
    F: FnMut(G) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let bar = read_bar(what, items.len());
    read_all(bar, futures::stream::iter(items), concurrency, read).await
}

/// [`read_each`] for items that arrive while they are read (the ids a list's pages name, looked
/// up as each page comes): the bar's length grows with each item, and the read ends when the
/// stream does.
pub async fn read_streamed<G, R, E, F, Fut>(
    what: &'static str,
    items: impl Stream<Item = G>,
    concurrency: usize,
    read: F,
) -> Result<Vec<R>, E>
where
    F: FnMut(G) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let bar = read_bar(what, 0);
    let counted = {
        let bar = bar.clone();
        items.inspect(move |_| {
            if let Some(bar) = &bar {
                bar.inc_length(1);
            }
        })
    };
    read_all(bar, counted, concurrency, read).await
}

/// The read bar of the present target, if any, set to count `total` of `what` from nothing.
fn read_bar(what: &'static str, total: usize) -> Option<ProgressBar> {
    let bar = READ.try_with(ProgressBar::clone).ok();
    if let Some(bar) = &bar {
        bar.set_message(what);
        bar.set_length(total as u64);
        bar.set_position(0);
    }
    bar
}

/// Reads every item of `items`, up to `concurrency` at once, advancing `bar` as each is read.
async fn read_all<G, R, E, F, Fut>(
    bar: Option<ProgressBar>,
    items: impl Stream<Item = G>,
    concurrency: usize,
    read: F,
) -> Result<Vec<R>, E>
where
    F: FnMut(G) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    items
        .map(read)
        .buffer_unordered(concurrency.max(1))
        .inspect_ok(|_| {
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        })
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bar_counts_the_groups_read_of_those_in_scope() {
        let bar = ProgressBar::hidden();
        let read = reading(
            bar.clone(),
            read_each("groups", (0..7).collect(), 3, |g: u32| async move {
                Ok::<_, String>(g * 2)
            }),
        )
        .await;
        let mut read = read.expect("all read");
        read.sort_unstable();
        assert_eq!(read, [0, 2, 4, 6, 8, 10, 12]);
        assert_eq!((bar.position(), bar.length()), (7, Some(7)));
        assert_eq!(bar.message(), "groups");
    }

    #[tokio::test]
    async fn a_failed_read_stops_the_bar_where_it_failed() {
        let bar = ProgressBar::hidden();
        let read = reading(
            bar.clone(),
            read_each("groups", (0..7).collect(), 1, |g: u32| async move {
                if g == 3 {
                    Err(format!("group {g}"))
                } else {
                    Ok(g)
                }
            }),
        )
        .await;
        assert_eq!(read, Err("group 3".to_owned()));
        assert_eq!((bar.position(), bar.length()), (3, Some(7)));
    }

    #[tokio::test]
    async fn a_streamed_read_grows_the_bar_as_items_arrive() {
        let bar = ProgressBar::hidden();
        let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
        let feed = async move {
            for i in 0..5 {
                tx.unbounded_send(i).expect("the reader listens");
                tokio::task::yield_now().await;
            }
        };
        let reads = reading(
            bar.clone(),
            read_streamed("users", rx, 2, |i: u32| async move { Ok::<_, ()>(i + 10) }),
        );
        let ((), read) = tokio::join!(feed, reads);
        let mut read = read.expect("all read");
        read.sort_unstable();
        assert_eq!(read, [10, 11, 12, 13, 14]);
        assert_eq!((bar.position(), bar.length()), (5, Some(5)));
        assert_eq!(bar.message(), "users");
    }

    #[tokio::test]
    async fn outside_a_read_bar_groups_are_read_all_the_same() {
        let read = read_each(
            "groups",
            vec![1, 2],
            8,
            |g: u32| async move { Ok::<_, ()>(g) },
        )
        .await;
        assert_eq!(read.map(|r| r.len()), Ok(2));
    }
}
