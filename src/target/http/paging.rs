//! Reading a paged list whole, or knowing that it was not: the two shapes of paging the
//! connectors' APIs use, each with its completeness checks written once.
//!
//! - [`counted`]: pages at an offset, each carrying the list's total (Contensis, Crafter Studio,
//!   UiPath Identity). The list is whole when as many items as the total were read and the total
//!   did not move; a list that shifts while it is read is read once more, and is incomplete if it
//!   shifts again.
//! - [`cursored`]: pages that hand out the cursor of the next (VinylDNS). The list is whole when
//!   the last page has no cursor; a cursor seen twice, or an item seen twice, is incomplete.
//!
//! An incomplete list is never a short list: the caller gets [`Paged::Incomplete`] and must not
//! plan from it.

use std::collections::HashSet;
use std::future::Future;

use tracing::debug;

/// Why a paged list could not be read whole.
#[derive(Debug, PartialEq, Eq)]
pub enum Paged<E> {
    /// A page could not be read.
    Failed(E),
    /// Every page was read, but they do not add up (the message says how).
    Incomplete(String),
}

impl<E> From<E> for Paged<E> {
    fn from(e: E) -> Self {
        Paged::Failed(e)
    }
}

/// One page of a counted list: its items and the total the server gave with it.
#[derive(Debug)]
pub struct Counted<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items the whole list has, as this page says.
    pub total: u64,
}

/// Every item of a counted list. `page` reads the page that starts at an offset (the number of
/// items read so far); `what` names the list in messages (`GET /groups`), and `total` the field
/// that carries the total (`totalCount`), so that a message speaks the API's words.
pub async fn counted<T, E, F, Fut>(what: &str, total: &str, page: F) -> Result<Vec<T>, Paged<E>>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Counted<T>, Paged<E>>>,
{
    let mut last = String::new();
    for _ in 0..2 {
        let mut items: Vec<T> = Vec::new();
        let mut first_total = None;
        let mut moved = false;
        loop {
            let got = page(items.len() as u64).await?;
            if *first_total.get_or_insert(got.total) != got.total {
                moved = true;
                break;
            }
            let n = got.items.len();
            items.extend(got.items);
            if n == 0 || items.len() as u64 >= got.total {
                break;
            }
        }
        let count = first_total.unwrap_or(0);
        if !moved && items.len() as u64 == count {
            return Ok(items);
        }
        last = if moved {
            format!("{what}: the total changed while it was read")
        } else {
            format!(
                "{what} returned {} items where {total} is {count}",
                items.len()
            )
        };
        debug!("{last}; reading again");
    }
    Err(Paged::Incomplete(last))
}

/// One page of a cursored list: its items and the cursor of the next page, if there is one.
#[derive(Debug)]
pub struct Cursored<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// Every item of a cursored list. `page` reads the page at a cursor (`None`: the first page);
/// `key` identifies an item, so that an item listed twice is caught, and `label` names it in
/// that message (`group "ops"`); `what` names the list.
pub async fn cursored<T, E, F, Fut, K, L>(
    what: &str,
    key: K,
    label: L,
    mut page: F,
) -> Result<Vec<T>, Paged<E>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Cursored<T>, Paged<E>>>,
    K: Fn(&T) -> String,
    L: Fn(&T) -> String,
{
    let mut items = Vec::new();
    let mut keys = HashSet::new();
    let mut cursors = HashSet::new();
    let mut at = None;
    loop {
        let got = page(at.clone()).await?;
        for item in got.items {
            if !keys.insert(key(&item)) {
                return Err(Paged::Incomplete(format!(
                    "{what} listed {} twice",
                    label(&item)
                )));
            }
            items.push(item);
        }
        match got.next {
            None => return Ok(items),
            Some(next) => {
                if !cursors.insert(next.clone()) {
                    return Err(Paged::Incomplete(format!(
                        "{what} returned the cursor {next} twice"
                    )));
                }
                at = Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    type Pages = Mutex<Vec<(Vec<u32>, u64)>>;

    /// An item's label in messages: the number, in quotes.
    fn quoted(n: &u32) -> String {
        format!("\"{n}\"")
    }

    /// Serves pages of a list whose contents are given per read: each read pops the next page.
    async fn serve(pages: &Pages, _offset: u64) -> Result<Counted<u32>, Paged<()>> {
        let (items, total) = pages.lock().expect("not poisoned").remove(0);
        Ok(Counted { items, total })
    }

    #[tokio::test]
    async fn a_counted_list_is_whole_when_its_total_is_read() {
        let pages: Pages = Mutex::new(vec![(vec![1, 2], 3), (vec![3], 3)]);
        let got = counted("GET /l", "total", |o| serve(&pages, o)).await;
        assert_eq!(got, Ok(vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn a_list_that_shifts_is_read_again_and_then_refused() {
        // First read: the total moves mid-way; second read: comes up short.
        let pages: Pages = Mutex::new(vec![(vec![1], 2), (vec![2], 3), (vec![1], 2), (vec![], 2)]);
        let got = counted("GET /l", "total", |o| serve(&pages, o)).await;
        assert_eq!(
            got,
            Err(Paged::Incomplete(
                "GET /l returned 1 items where total is 2".into()
            ))
        );
        // A shift once, then a clean read: the clean read is the answer.
        let pages: Pages = Mutex::new(vec![(vec![1], 2), (vec![2], 3), (vec![1, 2, 3], 3)]);
        assert_eq!(
            counted("GET /l", "total", |o| serve(&pages, o)).await,
            Ok(vec![1, 2, 3])
        );
        let pages: Pages = Mutex::new(vec![(vec![1], 2), (vec![2], 3), (vec![1], 2), (vec![2], 3)]);
        assert_eq!(
            counted("GET /l", "total", |o| serve(&pages, o)).await,
            Err(Paged::Incomplete(
                "GET /l: the total changed while it was read".into()
            ))
        );
    }

    #[tokio::test]
    async fn a_cursored_list_refuses_repeats() {
        let page = |at: Option<String>| async move {
            Ok::<_, Paged<()>>(match at.as_deref() {
                None => Cursored {
                    items: vec![1],
                    next: Some("a".into()),
                },
                Some("a") => Cursored {
                    items: vec![2],
                    next: Some("b".into()),
                },
                _ => Cursored {
                    items: vec![3],
                    next: None,
                },
            })
        };
        assert_eq!(
            cursored("GET /l", u32::to_string, quoted, page).await,
            Ok(vec![1, 2, 3])
        );
        let looping = |_: Option<String>| async move {
            Ok::<_, Paged<()>>(Cursored {
                items: vec![],
                next: Some("a".into()),
            })
        };
        assert_eq!(
            cursored("GET /l", u32::to_string, quoted, looping).await,
            Err(Paged::Incomplete(
                "GET /l returned the cursor a twice".into()
            ))
        );
        let twice = |at: Option<String>| async move {
            Ok::<_, Paged<()>>(Cursored {
                items: vec![1],
                next: at.is_none().then(|| "a".into()),
            })
        };
        assert_eq!(
            cursored("GET /l", u32::to_string, quoted, twice).await,
            Err(Paged::Incomplete("GET /l listed \"1\" twice".into()))
        );
    }
}
