//! The user search: every user's normalised DN with its key (and, for `exclude_disabled`,
//! whether its account is disabled), for member DNs that do not name their user key.
//!
//! The search runs on a second connection while the groups are read on the first, so that the
//! server sends users while roster still works on groups (a server keeps one paged search per
//! connection: OpenLDAP drops the first one's cookie once a second starts). Users are folded
//! into a [`UserIndex`] page by page, so a large directory's user entries are never all in
//! memory at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use ldap3::{Ldap, Scope};
use tracing::debug;

use super::dn::normalize_dn;
use super::search::{At, Paged, Query};
use super::{ACCOUNT_DISABLE, LdapSourceConfig, Tls, connect_to};
use crate::source::SourceError;

/// What the user search needs to know, owned, so that it can run on a task of its own.
#[derive(Clone)]
pub(super) struct UserSearch {
    /// The source's config.
    pub cfg: LdapSourceConfig,
    /// The server the groups are read from.
    pub server: String,
    /// The search base.
    pub base: String,
    /// The user filter (the config's, or the directory's default).
    pub filter: String,
    /// The attribute holding the user key.
    pub key_attr: String,
}

/// The users read, and the pages and entries it took.
pub(super) struct Users {
    /// Users by normalised DN.
    pub index: UserIndex,
    /// Pages read.
    pub pages: usize,
    /// User entries read.
    pub entries: usize,
}

/// What the index knows of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Found<'a> {
    /// Its key, if it has one.
    pub key: Option<&'a str>,
    /// Whether its account is disabled (read only with `exclude_disabled`).
    pub disabled: bool,
}

/// Users by normalised DN: every DN and key end to end in one buffer, found through a table of
/// hashes. A million member DNs are looked up in it, and in a map of a hundred thousand
/// separately allocated strings each lookup costs a cache miss or three.
#[derive(Default)]
pub(super) struct UserIndex<S = rustc_hash::FxBuildHasher> {
    text: String,
    /// Per user: where its DN ends, where its key ends (its DN starts where the previous
    /// user's key ends), whether it has a key, and whether it is disabled.
    slots: Vec<Slot>,
    /// The user added last of each hash of a DN, and per user the one added before it with the
    /// same hash (`usize::MAX`: none).
    newest: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
    older: Vec<usize>,
    hasher: S,
}

#[derive(Clone, Copy)]
struct Slot {
    dn_end: usize,
    key_end: usize,
    has_key: bool,
    disabled: bool,
}

impl<S: BuildHasher> UserIndex<S> {
    /// Adds a user; of two with one DN, the one added later counts (as in a map).
    pub fn insert(&mut self, dn: &str, key: Option<&str>, disabled: bool) {
        let i = self.slots.len();
        self.text.push_str(dn);
        let dn_end = self.text.len();
        self.text.push_str(key.unwrap_or_default());
        self.slots.push(Slot {
            dn_end,
            key_end: self.text.len(),
            has_key: key.is_some(),
            disabled,
        });
        let before = self.newest.insert(self.hasher.hash_one(dn), i);
        self.older.push(before.unwrap_or(usize::MAX));
    }

    /// The user with this normalised DN.
    pub fn get(&self, dn: &str) -> Option<Found<'_>> {
        let mut at = *self.newest.get(&self.hasher.hash_one(dn))?;
        while at != usize::MAX {
            let start = at.checked_sub(1).map_or(0, |b| self.slots[b].key_end);
            let slot = self.slots[at];
            if &self.text[start..slot.dn_end] == dn {
                return Some(Found {
                    key: slot.has_key.then(|| &self.text[slot.dn_end..slot.key_end]),
                    disabled: slot.disabled,
                });
            }
            at = self.older[at];
        }
        None
    }
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Reads every user, folding each page into the index as it comes.
pub(super) async fn read(s: &UserSearch, ldap: &mut Ldap) -> Result<Users, SourceError> {
    let cfg = &s.cfg;
    let at = At {
        cfg,
        server: &s.server,
    };
    let mut attrs = vec![s.key_attr.clone()];
    if cfg.exclude_disabled {
        attrs.push("userAccountControl".to_owned());
    }
    let query = Query {
        base: &s.base,
        scope: Scope::Subtree,
        filter: &s.filter,
        attrs,
    };
    let mut paged = Paged::start(&at, ldap, &query).await?;
    let mut users = Users {
        index: UserIndex::default(),
        pages: 0,
        entries: 0,
    };
    while let Some(page) = paged.next_page().await? {
        for u in page {
            let u = u.map_err(|why| paged.incomplete(&why))?;
            users.entries += 1;
            // A key that is not text cannot name a user to a target; reading it as "no key"
            // would empty every group.
            if u.is_binary(&s.key_attr) {
                return Err(at.error(
                    "mapping member DNs to user keys",
                    format!(
                        "`{}` of {} is not text, so it cannot be a user key; set \
                         `user_key_attr` to a text attribute such as sAMAccountName, \
                         userPrincipalName or mail",
                        s.key_attr, u.dn
                    ),
                ));
            }
            let disabled = cfg.exclude_disabled
                && u.values("userAccountControl")
                    .first()
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .is_some_and(|flags| flags & i64::from(ACCOUNT_DISABLE) != 0);
            if let Some(norm) = normalize_dn(&u.dn) {
                let key = u.values(&s.key_attr).first().map(String::as_str);
                users.index.insert(&norm, key, disabled);
            }
        }
    }
    users.pages = paged.pages();
    Ok(users)
}

/// Aborts a task when dropped: a user search started alongside the groups ends with them.
pub(super) struct Started {
    task: tokio::task::JoinHandle<Result<Option<Users>, SourceError>>,
    /// The server searched, for the message should the task itself fail.
    server: String,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Started {
    /// Whether the search is over (so [`join`](Self::join) will not wait).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The users, once read; `Ok(None)` if the second connection could not be opened (then
    /// the search is to be made on the first).
    pub async fn join(mut self) -> Result<Option<Users>, SourceError> {
        match (&mut self.task).await {
            Ok(read) => read,
            Err(e) => Err(SourceError::Ldap {
                server: self.server.clone(),
                doing: "searching users".to_owned(),
                message: format!("the search stopped ({e}); {}", super::search::INCOMPLETE),
            }),
        }
    }
}

/// Starts the user search on a task of its own, over a second connection to the same server.
pub(super) fn spawn(s: &UserSearch, tls: &Tls) -> Started {
    let server = s.server.clone();
    let (s, tls) = (s.clone(), tls.clone());
    let task = tokio::spawn(async move {
        let mut ldap = match connect_to(&s.cfg, &tls, &s.server).await {
            Ok(ldap) => ldap,
            Err(_) => {
                debug!(server = %s.server, "no second connection; users are read after the groups");
                return Ok(None);
            }
        };
        let read = read(&s, &mut ldap).await;
        let _ = ldap.unbind().await;
        read.map(Some)
    });
    Started { task, server }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_every_user_and_the_later_of_two_with_one_dn() {
        let mut index: UserIndex = UserIndex::default();
        for i in 0..1000 {
            index.insert(
                &format!("uid=u{i},ou=p"),
                Some(&format!("u{i}@x")),
                i % 3 == 0,
            );
        }
        index.insert("uid=u7,ou=p", Some("seven@x"), false);
        index.insert("uid=nokey,ou=p", None, false);
        index.insert("", Some("root@x"), true);
        for i in (0..1000).filter(|i| *i != 7) {
            let key = format!("u{i}@x");
            assert_eq!(
                index.get(&format!("uid=u{i},ou=p")),
                Some(Found {
                    key: Some(key.as_str()),
                    disabled: i % 3 == 0
                })
            );
        }
        assert_eq!(
            index.get("uid=u7,ou=p"),
            Some(Found {
                key: Some("seven@x"),
                disabled: false
            })
        );
        assert_eq!(
            index.get("uid=nokey,ou=p"),
            Some(Found {
                key: None,
                disabled: false
            })
        );
        assert_eq!(
            index.get(""),
            Some(Found {
                key: Some("root@x"),
                disabled: true
            })
        );
        assert_eq!(index.get("uid=u1000,ou=p"), None);
        assert_eq!(index.get("uid=u1,ou=p,dc=x"), None);
    }

    /// Hashes every DN alike, so that every user is in one chain.
    #[derive(Default)]
    struct Collide;

    impl Hasher for Collide {
        fn finish(&self) -> u64 {
            42
        }

        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn users_whose_hashes_collide_are_told_apart_by_their_dn() {
        let mut index: UserIndex<BuildHasherDefault<Collide>> = UserIndex::default();
        for (dn, key) in [("a", "1"), ("b", "2"), ("c", "3")] {
            index.insert(dn, Some(key), false);
        }
        let key = |dn: &str| index.get(dn).and_then(|f| f.key);
        assert_eq!(
            [key("a"), key("b"), key("c"), key("d")],
            [Some("1"), Some("2"), Some("3"), None]
        );
    }
}
