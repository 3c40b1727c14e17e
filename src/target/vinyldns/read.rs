//! Reading VinylDNS: the observe (every group, the members of those in scope, roster's own
//! account, the ids of the desired users) and the lookups a send or recheck makes (a group by
//! name, a fresh group).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use reqwest::{Method, StatusCode};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;
use tracing::debug;

use super::{Account, CASE_INSENSITIVE, Listing, TYPE, VinylDnsTarget, api, sorted_names};
use crate::model::{
    Attributes, Group, GroupKind, GroupName, Observed, ObservedGroup, Unmanaged, UserKey,
};
use crate::plan::{Scope, fold};
use crate::target::http::paging::{self, Cursored};
use crate::target::progress;
use crate::target::{CallError, CallErrorKind, Named, ObserveError, off_task, resolve_users};

impl VinylDnsTarget {
    /// Every live group, every page. A page that repeats a cursor or a group is an incomplete
    /// read, never a shorter list. `retry`: whether a page is read again after a transient
    /// failure (an observe), or sent once (a send or recheck, which the executor retries).
    pub(super) async fn list_groups(
        &self,
        listing: Listing<'_>,
        retry: bool,
    ) -> Result<Vec<api::Group>, ObserveError> {
        let size = self.page_size.load(Ordering::Relaxed);
        match self.list_groups_by(listing, retry, size).await {
            Err(ObserveError::Call(e)) if size > api::LEGACY_PAGE && refuses_page_size(&e) => {
                tracing::info!(
                    target = %self.name,
                    asked = size,
                    "the server refuses pages this large; listing {} at a time",
                    api::LEGACY_PAGE
                );
                self.page_size.store(api::LEGACY_PAGE, Ordering::Relaxed);
                self.list_groups_by(listing, retry, api::LEGACY_PAGE).await
            }
            r => r,
        }
    }

    /// [`Self::list_groups`] with `size` groups a page.
    async fn list_groups_by(
        &self,
        listing: Listing<'_>,
        retry: bool,
        size: u32,
    ) -> Result<Vec<api::Group>, ObserveError> {
        let what = format!("GET {}", api::GROUPS);
        let listed = &AtomicUsize::new(0);
        let size = listing
            .beyond
            .map_or(size, |n| size.min(u32::try_from(n + 1).unwrap_or(u32::MAX)));
        let pages = paging::cursored(
            &what,
            |g: &api::Group| g.id.clone(),
            |g: &api::Group| format!("group \"{}\"", g.name),
            |start: Option<String>| async move {
                let mut q = vec![("maxItems", size.to_string())];
                if listing.all {
                    q.push(("ignoreAccess", "true".to_owned()));
                }
                if listing.abridged {
                    q.push(("abridged", "true".to_owned()));
                }
                if let Some(f) = listing.filter {
                    q.push(("groupNameFilter", f.to_owned()));
                }
                if let Some(s) = start {
                    q.push(("startFrom", s));
                }
                let reply = {
                    // The semaphore is never closed; were it, the page would go without a
                    // permit. The permit is the call's alone: the parse gives it back.
                    let _permit = match listing.permits {
                        Some(p) => p.acquire().await.ok(),
                        None => None,
                    };
                    if retry {
                        self.read(api::GROUPS, &q, None).await?
                    } else {
                        self.get(api::GROUPS, &q, None).await?
                    }
                };
                let page: Result<api::GroupPage, _> = match listing.interner {
                    Some(ids) => {
                        let ids = Arc::clone(ids);
                        reply.parse_apart(move |body| ids.parse(body)).await
                    }
                    None => reply.json_apart().await,
                };
                let page = page.map_err(|k| self.err(&Method::GET, api::GROUPS, None, k))?;
                if let Some(feed) = listing.feed {
                    feed.page(&page.groups);
                }
                let so_far =
                    listed.fetch_add(page.groups.len(), Ordering::Relaxed) + page.groups.len();
                let enough = listing.beyond.is_some_and(|n| so_far > n);
                Ok(Cursored {
                    items: page.groups,
                    next: page.next_id.filter(|_| !enough),
                })
            },
        )
        .await;
        self.paged(pages)
    }

    /// Every member of a group, every page.
    async fn list_members(
        &self,
        id: &str,
        name: &GroupName,
    ) -> Result<Vec<api::Member>, ObserveError> {
        let path = api::group_members(id);
        let what = format!("GET {path}");
        let pages = paging::cursored(
            &what,
            |m: &api::Member| m.id.clone(),
            |m: &api::Member| format!("member \"{}\"", m.user_name),
            |start: Option<String>| {
                let path = &path;
                async move {
                    let size = self
                        .page_size
                        .load(Ordering::Relaxed)
                        .min(api::MEMBERS_PAGE);
                    let mut q = vec![("maxItems", size.to_string())];
                    if let Some(s) = start {
                        q.push(("startFrom", s));
                    }
                    let page: api::MemberPage = self.read_json(path, &q, Some(name)).await?;
                    Ok(Cursored {
                        items: page.members,
                        next: page.next_id,
                    })
                }
            },
        )
        .await;
        self.paged(pages)
    }

    /// Reads one group's members. The members read must be the ids the group holds, less ids
    /// that name no user (the members list leaves those out; each is confirmed with a lookup):
    /// any other difference means the group changed between the reads, and it is not observed
    /// half-way. The ids left out are the group's orphans: they name no user.
    async fn read_group(
        &self,
        g: api::Group,
    ) -> Result<(api::Group, Vec<api::Member>), ObserveError> {
        let name = GroupName(g.name.clone());
        let members = self.list_members(&g.id, &name).await?;
        let listed: BTreeSet<&str> = g.members.iter().map(|m| &*m.id).collect();
        let read: BTreeSet<&str> = members.iter().map(|m| &*m.id).collect();
        let changed = || {
            self.incomplete(format!(
                "the members of \"{name}\" changed while they were read ({} listed, {} read)",
                listed.len(),
                read.len()
            ))
        };
        if !read.is_subset(&listed) {
            return Err(changed());
        }
        for id in listed.difference(&read) {
            if self.user_named(id, Some(&name)).await?.is_some() {
                return Err(changed());
            }
        }
        Ok((g, members))
    }

    /// The name of the user an id names (`GET /users/{id}`); `None` when it names none (404).
    async fn user_named(
        &self,
        id: &str,
        group: Option<&GroupName>,
    ) -> Result<Option<String>, CallError> {
        let path = api::user(id);
        self.endpoint
            .reads()
            .retry_idempotent(|| async {
                let resp = self
                    .request(
                        Method::GET,
                        &path,
                        &[],
                        None,
                        group,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if resp.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let user: api::User = self.decode(&resp, &Method::GET, &path, group)?;
                Ok(Some(user.user_name))
            })
            .await
    }

    /// Keeps the names the lookups found in the run's cache of user ids.
    fn cache_names(&self, names: &HashMap<String, Option<String>>) {
        let mut cache = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for (id, name) in names {
            if let Some(name) = name {
                cache.insert(fold(name, CASE_INSENSITIVE), Some(id.clone()));
            }
        }
    }

    /// The observed group: its members by user name (what each id stands for in `seen`);
    /// admins spelt as the desired state spells them (VinylDNS user names match without regard
    /// to case) and sorted as [`Target::prepare`] sorts the desired ones; roster's own entry
    /// left out when hidden. Beside it, what the group holds that roster leaves alone: its ids
    /// that name no user, and roster's own entry where hidden.
    fn build_group(
        kept: Kept,
        seen: &Seen<'_>,
    ) -> (ObservedGroup, BTreeSet<String>, BTreeSet<Unmanaged>) {
        let Kept {
            group: g,
            members,
            mut admins,
        } = kept;
        let mut group = Group::named(g.name);
        group.description = g.description.filter(|d| !d.is_empty());
        // A group has few admins: a sorted list answers "is this one an admin" without hashing.
        admins.sort_unstable();
        let is_admin = |at: usize| admins.binary_search(&at).is_ok();
        let mut shown = Vec::new();
        let mut ranks = Vec::with_capacity(members.len());
        let mut orphans = BTreeSet::new();
        let mut unmanaged = BTreeSet::new();
        for at in members {
            match seen.standing.get(at).and_then(Option::as_ref) {
                Some(Standing::User(rank)) => {
                    if is_admin(at) {
                        shown.push(seen.shown[*rank].clone());
                    }
                    ranks.push(*rank);
                }
                Some(Standing::Own(name)) => {
                    let what = if is_admin(at) {
                        "roster's own account, an admin"
                    } else {
                        "roster's own account"
                    };
                    unmanaged.insert(Unmanaged::new(what, *name));
                }
                None => {
                    let id = seen
                        .ids
                        .get(at)
                        .map_or_else(String::new, |id| id.to_string());
                    orphans.insert(id.clone());
                    unmanaged.insert(Unmanaged::new("id that names no user", id));
                }
            }
        }
        // Ranks follow the names' order: sorted, the members go into the set already in order,
        // which it builds in one pass.
        ranks.sort_unstable();
        ranks.dedup();
        group.members = ranks.iter().map(|r| seen.keys[*r].clone()).collect();
        let admins: Vec<Value> = sorted_names(shown).into_iter().map(Value::from).collect();
        group.extras.insert(
            TYPE.to_owned(),
            Attributes::from([
                ("email".to_owned(), Value::from(g.email)),
                ("admins".to_owned(), Value::from(admins)),
            ]),
        );
        let observed = ObservedGroup {
            id: g.id,
            group,
            kind: GroupKind::Managed,
        };
        (observed, orphans, unmanaged)
    }

    /// Learns roster's own account from `groups`, an abridged listing of every group (each
    /// group's lists hold only the caller's id): its id, the groups it administers, how many it
    /// belongs to. `full` is the same listing unabridged: the abridged answer counts as one only
    /// where it holds fewer ids than `full` somewhere (an older server ignores `abridged` and
    /// lists everyone, which must never be taken for the caller).
    async fn learn_account(
        &self,
        full: &[api::Group],
        groups: &[api::Group],
    ) -> Result<(), ObserveError> {
        let sizes: HashMap<&str, usize> = full
            .iter()
            .map(|g| (g.id.as_str(), g.members.len() + g.admins.len()))
            .collect();
        let mut a = Account::default();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut cut = false;
        for g in groups.iter().filter(|g| !g.is_deleted()) {
            a.groups += 1;
            let n = g.members.len() + g.admins.len();
            cut |= sizes.get(g.id.as_str()).is_some_and(|full| n < *full);
            seen.extend(g.members.iter().chain(&g.admins).map(|m| &*m.id));
            if !g.members.is_empty() {
                a.member_of += 1;
            }
            if !g.admins.is_empty() {
                a.admin_of.insert(g.id.clone());
            }
        }
        // A server that ignores `abridged` lists everyone: then nothing here is about the caller,
        // and roster knows no more of its account than the server tells it later.
        if seen.len() > 1 || !cut {
            debug!("the server did not abridge its list; roster's own account stays unknown");
            a = Account {
                groups: a.groups,
                ..Account::default()
            };
            if let Some(user) = &self.own_user {
                let key = UserKey::from(user.as_str());
                let (_, id) = self.resolve_user(key).await?;
                a.id = id;
                a.admin_of = full
                    .iter()
                    .filter(|g| {
                        a.id.as_ref()
                            .is_some_and(|id| g.admins.iter().any(|r| &*r.id == id.as_str()))
                    })
                    .map(|g| g.id.clone())
                    .collect();
                a.member_of = full
                    .iter()
                    .filter(|g| {
                        a.id.as_ref()
                            .is_some_and(|id| g.members.iter().any(|r| &*r.id == id.as_str()))
                    })
                    .count();
                a.identified = a.id.is_some();
            }
        } else {
            a.id = seen.into_iter().next().map(str::to_owned);
            a.identified = true;
        }
        *self.account.lock().unwrap_or_else(|e| e.into_inner()) = a;
        Ok(())
    }

    /// The id of a user key, through the run's cache, else `GET /users/{key}`; `None` when the
    /// API does not know the user.
    pub(super) async fn resolve_user(
        &self,
        key: UserKey,
    ) -> Result<(UserKey, Option<String>), CallError> {
        let folded = fold(key.as_str(), CASE_INSENSITIVE);
        if let Some(hit) = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&folded)
        {
            return Ok((key, hit.clone()));
        }
        let path = api::user(key.as_str());
        let found = self
            .endpoint
            .reads()
            .retry_idempotent(|| async {
                let resp = self
                    .request(
                        Method::GET,
                        &path,
                        &[],
                        None,
                        None,
                        &[StatusCode::NOT_FOUND],
                    )
                    .await?;
                if resp.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let u: api::User = self.decode(&resp, &Method::GET, &path, None)?;
                Ok(Some(u.id))
            })
            .await?;
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(folded, found.clone());
        Ok((key, found))
    }

    /// The live group of this name (compared as VinylDNS compares names), if any. Its pages are
    /// sent once: this is part of a send or recheck.
    pub(super) async fn find_group(
        &self,
        name: &GroupName,
    ) -> Result<Option<api::Group>, CallError> {
        let listing = Listing {
            filter: Some(name.as_str()),
            all: true,
            ..Listing::default()
        };
        let groups = match self.list_groups(listing, false).await {
            Ok(g) => g,
            Err(ObserveError::Call(e)) => return Err(e),
            Err(e) => {
                return Err(self.err(
                    &Method::GET,
                    api::GROUPS,
                    Some(name),
                    CallErrorKind::Decode(e.to_string()),
                ));
            }
        };
        let want = fold(name.as_str(), CASE_INSENSITIVE);
        Ok(groups
            .into_iter()
            .find(|g| !g.is_deleted() && fold(&g.name, CASE_INSENSITIVE) == want))
    }

    /// What [`Target::observe`](crate::target::Target::observe) reads.
    pub(super) async fn observe_groups(
        &self,
        scope: &Scope,
        users: &BTreeSet<UserKey>,
    ) -> Result<Observed, ObserveError> {
        let mut observed = Observed::default();
        let concurrency = self.concurrency.get();
        // The list, the abridged list that tells roster's own account, and the lookups of the
        // ids the list names share the read's calls in flight.
        let permits = tokio::sync::Semaphore::new(concurrency);
        let (feed, ids) = Feed::new(scope);
        let interner = Arc::new(api::Interner::default());
        let listing = async {
            let full = Listing {
                all: true,
                feed: Some(&feed),
                permits: Some(&permits),
                interner: Some(&interner),
                ..Listing::default()
            };
            let own = Listing {
                all: true,
                abridged: true,
                permits: Some(&permits),
                ..Listing::default()
            };
            let listed =
                tokio::try_join!(self.list_groups(full, true), self.list_groups(own, true));
            // Ended whatever the outcome, so that the lookups end too.
            let by_user = feed.finish();
            let (full, own) = listed?;
            self.learn_account(&full, &own).await?;
            // The groups split by scope and, read by user, their ids indexed, off the task:
            // the lookups go on meanwhile, and the build after them asks no hash of an id.
            let scope = scope.clone();
            let split = off_task(move || {
                let (in_scope, others) = split(full, &scope);
                let kept = if by_user {
                    Ok(Indexed::new(in_scope))
                } else {
                    Err(in_scope)
                };
                (kept, others)
            })
            .await;
            Ok::<_, ObserveError>(split)
        };
        let lookups = progress::read_streamed("users", ids, concurrency, |id| {
            let permits = &permits;
            async move {
                let _permit = permits.acquire().await.ok();
                let name = self.user_named(&id, None).await?;
                Ok::<_, ObserveError>((id, name))
            }
        });
        let ((kept, others), named) = tokio::try_join!(listing, lookups)?;
        observed.others = others;
        let mut names: HashMap<String, Option<String>> = named.into_iter().collect();
        let indexed = match kept {
            Ok(indexed) => indexed,
            Err(in_scope) => {
                let reads =
                    progress::read_each("groups", in_scope, concurrency, |g| self.read_group(g))
                        .await?;
                let mut in_scope = Vec::with_capacity(reads.len());
                for (g, members) in reads {
                    for m in members {
                        names.insert(m.id, Some(m.user_name));
                    }
                    in_scope.push(g);
                }
                Indexed::new(in_scope)
            }
        };
        self.cache_names(&names);
        let spelling: HashMap<String, &UserKey> = users
            .iter()
            .map(|u| (fold(u.as_str(), CASE_INSENSITIVE), u))
            .collect();
        // roster's own account is hidden unless the desired state names it.
        let hide = {
            let mut a = self.account.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = a.id.clone() {
                // `names` holds the ids of the groups in scope alone.
                a.name = names.get(&id).cloned().flatten();
            }
            a.desired = a
                .name
                .as_ref()
                .is_some_and(|n| spelling.contains_key(&fold(n, CASE_INSENSITIVE)));
            if a.desired { None } else { a.id.clone() }
        };
        let seen = Seen::new(&indexed.ids, &names, hide.as_deref(), &spelling);
        // Each user that a group in scope holds, once, however many groups hold it.
        observed.users = seen
            .ids
            .iter()
            .zip(&seen.standing)
            .filter_map(|(id, standing)| match standing {
                Some(Standing::User(rank)) => Some((seen.keys[*rank].clone(), id.to_string())),
                _ => None,
            })
            .collect();
        let Built {
            groups,
            orphans,
            unmanaged,
        } = build_groups(indexed.groups, &seen);
        observed.groups = groups;
        observed.unmanaged = unmanaged;
        *self.orphans.lock().unwrap_or_else(|e| e.into_inner()) = orphans;
        // Desired users not seen as members: one lookup each, cached for the run.
        resolve_users(
            &mut observed,
            users.iter().cloned(),
            self.concurrency,
            |u| self.resolve_user(u),
        )
        .await?;
        Ok(observed)
    }
}

/// The live groups of a list: those in `scope`, and the names of the others.
fn split(groups: Vec<api::Group>, scope: &Scope) -> (Vec<api::Group>, BTreeSet<GroupName>) {
    let mut in_scope = Vec::new();
    let mut others = BTreeSet::new();
    for g in groups {
        if g.is_deleted() {
            continue;
        }
        if scope.contains_str(&g.name) {
            in_scope.push(g);
        } else {
            others.insert(GroupName(g.name));
        }
    }
    (in_scope, others)
}

/// The groups in scope with their member and admin ids as places in `ids`, the distinct ids
/// they name: worked out while the lookups go on, so that the build after them looks each id
/// up once, not once per membership.
struct Indexed {
    groups: Vec<Kept>,
    ids: Vec<api::UserId>,
}

/// A group of an [`Indexed`] list: the group as listed, its lists emptied into `members` and
/// `admins`, places in the list's ids.
struct Kept {
    group: api::Group,
    members: Vec<usize>,
    admins: Vec<usize>,
}

impl Indexed {
    fn new(groups: Vec<api::Group>) -> Self {
        let mut at: FxHashMap<api::UserId, usize> = FxHashMap::default();
        let mut ids = Vec::new();
        let mut place = |r: api::IdRef| {
            *at.entry(r.id).or_insert_with_key(|id| {
                ids.push(Arc::clone(id));
                ids.len() - 1
            })
        };
        let groups = groups
            .into_iter()
            .map(|mut group| {
                let members = std::mem::take(&mut group.members)
                    .into_iter()
                    .map(&mut place)
                    .collect();
                let admins = std::mem::take(&mut group.admins)
                    .into_iter()
                    .map(&mut place)
                    .collect();
                Kept {
                    group,
                    members,
                    admins,
                }
            })
            .collect();
        Self { groups, ids }
    }
}

/// The groups a read built, by name; beside them, the ids that name no user by group id, and
/// what roster leaves alone in each group.
#[derive(Default)]
struct Built {
    groups: BTreeMap<GroupName, ObservedGroup>,
    orphans: HashMap<String, BTreeSet<String>>,
    unmanaged: BTreeMap<GroupName, BTreeSet<Unmanaged>>,
}

impl Built {
    /// Builds each of `groups`.
    fn of(groups: Vec<Kept>, seen: &Seen<'_>) -> Self {
        let mut built = Self::default();
        for g in groups {
            let (g, orphans, unmanaged) = VinylDnsTarget::build_group(g, seen);
            if !orphans.is_empty() {
                built.orphans.insert(g.id.clone(), orphans);
            }
            if !unmanaged.is_empty() {
                built.unmanaged.insert(g.group.name.clone(), unmanaged);
            }
            built.groups.insert(g.group.name.clone(), g);
        }
        built
    }

    /// Takes in what another part built (maps merged in one pass each, not entry by entry).
    fn merge(&mut self, mut other: Self) {
        self.groups.append(&mut other.groups);
        self.orphans.extend(other.orphans);
        self.unmanaged.append(&mut other.unmanaged);
    }
}

/// Builds each group read (see [`VinylDnsTarget::build_group`]). A large read is built on the
/// machine's cores at once: 20,000 groups of 50 are a million member names written afresh, and
/// the read's answer waits for them after its last call.
fn build_groups(groups: Vec<Kept>, seen: &Seen<'_>) -> Built {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memberships: usize = groups.iter().map(|g| g.members.len()).sum();
    if cores < 2 || memberships < BUILT_APART {
        return Built::of(groups, seen);
    }
    let mut parts = Vec::with_capacity(cores);
    let mut rest = groups;
    let each = rest.len().div_ceil(cores);
    while rest.len() > each {
        let tail = rest.split_off(each);
        parts.push(std::mem::replace(&mut rest, tail));
    }
    parts.push(rest);
    // Scoped threads rather than the blocking pool: the parts borrow `seen`. The task's thread
    // builds the first part itself, as it would have built the whole.
    std::thread::scope(|s| {
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts.map(|p| s.spawn(move || Built::of(p, seen))).collect();
        let mut built = Built::of(first, seen);
        for other in others {
            match other.join() {
                Ok(b) => built.merge(b),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        built
    })
}

/// The memberships from which [`build_groups`] builds on several cores: below it, a thread
/// costs more than it saves.
const BUILT_APART: usize = 100_000;

/// What each member id of the groups in scope stands for, worked out once per id rather than
/// once per membership (20,000 groups of 50 are a million memberships and a thousand ids).
struct Seen<'a> {
    /// The distinct ids, as [`Indexed`] places them.
    ids: &'a [api::UserId],
    /// What each of `ids` stands for, by place; `None` for an id that names no user.
    standing: Vec<Option<Standing<'a>>>,
    /// The users, in the order of their names: a user's rank is its place here.
    keys: Vec<UserKey>,
    /// Each user's name as an admin list shows it, by rank.
    shown: Vec<String>,
}

/// What a member id stands for.
enum Standing<'a> {
    /// A user, by rank.
    User(usize),
    /// roster's own account, hidden, by name.
    Own(&'a str),
}

impl<'a> Seen<'a> {
    /// `ids`: the distinct ids of the groups in scope; `names`: the user each id names (`None`
    /// when it names none); `hide`: roster's own id, when hidden; `spelling`: the desired
    /// state's spelling of each user, by folded name.
    fn new(
        ids: &'a [api::UserId],
        names: &'a HashMap<String, Option<String>>,
        hide: Option<&str>,
        spelling: &HashMap<String, &UserKey>,
    ) -> Self {
        let named: Vec<Option<&'a str>> = ids
            .iter()
            .map(|id| names.get(&**id).and_then(Option::as_deref))
            .collect();
        let hidden = |id: &api::UserId| hide == Some(&**id);
        let mut users: Vec<&str> = ids
            .iter()
            .zip(&named)
            .filter(|(id, _)| !hidden(id))
            .filter_map(|(_, name)| *name)
            .collect();
        users.sort_unstable();
        users.dedup();
        let standing = ids
            .iter()
            .zip(&named)
            .map(|(id, name)| {
                let name = (*name)?;
                Some(if hidden(id) {
                    Standing::Own(name)
                } else {
                    // Every name not hidden is in `users`, so the search finds it.
                    Standing::User(users.binary_search(&name).unwrap_or_default())
                })
            })
            .collect();
        let shown = users
            .iter()
            .map(|n| {
                spelling
                    .get(&fold(n, CASE_INSENSITIVE))
                    .map_or_else(|| (*n).to_owned(), |k| k.as_str().to_owned())
            })
            .collect();
        let keys = users.into_iter().map(UserKey::from).collect();
        Self {
            ids,
            standing,
            keys,
            shown,
        }
    }
}

/// The member ids of the groups in scope, as the list's pages name them, sent to be looked up
/// while the list is still being read. An id is sent once the groups listed so far share their
/// members (at most half as many distinct ids as groups): a list whose groups do not share is
/// read group by group, and its ids are never looked up. Should later pages stop sharing (as
/// many distinct ids as groups in the end), the groups are read group by group after all and
/// the lookups already made, fewer than half the groups listed when they were sent, are spent.
#[derive(Debug)]
pub(super) struct Feed<'s> {
    scope: &'s Scope,
    state: Mutex<FeedState>,
}

/// What a [`Feed`] has seen.
#[derive(Debug)]
struct FeedState {
    /// Where ids go to be looked up; `None` once the feed is finished.
    send: Option<UnboundedSender<String>>,
    /// The ids of the live groups in scope listed so far (a page read again counts once).
    groups: FxHashSet<String>,
    /// The distinct member ids of those groups (a page of 3,000 groups names 150,000: hashed
    /// with FxHash, not SipHash, as the page is fed between the read's answers).
    ids: FxHashSet<api::UserId>,
    /// Ids seen and not yet sent.
    pending: Vec<String>,
}

impl FeedState {
    fn send_pending(&mut self) {
        if let Some(send) = &self.send {
            for id in self.pending.drain(..) {
                // The lookups stop only when the read fails, and then nothing is looked up.
                let _ = send.unbounded_send(id);
            }
        }
    }
}

impl<'s> Feed<'s> {
    /// A feed of the groups in `scope`, and the ids it sends.
    pub(super) fn new(scope: &'s Scope) -> (Self, UnboundedReceiver<String>) {
        let (send, ids) = futures::channel::mpsc::unbounded();
        let state = FeedState {
            send: Some(send),
            groups: FxHashSet::default(),
            ids: FxHashSet::default(),
            pending: Vec::new(),
        };
        let feed = Self {
            scope,
            state: Mutex::new(state),
        };
        (feed, ids)
    }

    /// Takes in one page of the list.
    pub(super) fn page(&self, groups: &[api::Group]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for g in groups {
            if g.is_deleted() || !self.scope.contains_str(&g.name) || st.groups.contains(&g.id) {
                continue;
            }
            st.groups.insert(g.id.clone());
            for m in &g.members {
                if !st.ids.contains(&m.id) {
                    st.ids.insert(m.id.clone());
                    st.pending.push(m.id.to_string());
                }
            }
        }
        if st.ids.len() * 2 <= st.groups.len() {
            st.send_pending();
        }
    }

    /// Ends the feed once the list is read (or failed): whether the groups are read by user
    /// (fewer distinct member ids than groups), in which case every id is sent.
    pub(super) fn finish(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let by_user = st.ids.len() < st.groups.len();
        if by_user {
            st.send_pending();
        }
        st.send = None;
        by_user
    }
}

/// Whether a failed list call is the server refusing the page size asked for (older servers
/// take at most 100 items a page, and say so naming `maxItems`).
fn refuses_page_size(e: &CallError) -> bool {
    matches!(&e.kind, CallErrorKind::Status { status: 400, message, .. } if message.contains("maxItems"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listed group of `members` (ids), its admins `admins`.
    fn listed(name: &str, members: &[String], admins: &[String]) -> api::Group {
        let refs = |ids: &[String]| {
            ids.iter()
                .map(|id| api::IdRef {
                    id: api::UserId::from(id.as_str()),
                })
                .collect()
        };
        api::Group {
            id: format!("id-{name}"),
            name: name.to_owned(),
            email: "g@corp.com".to_owned(),
            description: None,
            status: None,
            members: refs(members),
            admins: refs(admins),
        }
    }

    #[test]
    fn groups_built_on_several_cores_are_each_built_whole() {
        // Enough memberships that the build is split across threads where there are cores.
        let groups = 2_100;
        let per = 50;
        let id = |u: usize| format!("user-id-{u:04}");
        let mut names = HashMap::new();
        for u in 0..1_000 {
            // Every seventh id names no user; id 3 is roster's own account.
            let name = (u % 7 != 0).then(|| format!("user{u:04}"));
            names.insert(id(u), name);
        }
        let listing: Vec<api::Group> = (0..groups)
            .map(|g| {
                let members: Vec<String> =
                    (0..per).map(|m| id((g * 37 + m * 11) % 1_000)).collect();
                let admins = vec![members[1].clone(), id(3)];
                listed(&format!("g{g:05}"), &members, &admins)
            })
            .collect();
        assert!(groups * per >= BUILT_APART);
        let spelling = HashMap::new();
        let indexed = Indexed::new(listing.clone());
        let hide = id(3);
        let seen = Seen::new(&indexed.ids, &names, Some(&hide), &spelling);
        let built = build_groups(indexed.groups, &seen);
        assert_eq!(built.groups.len(), groups);
        // Every member is one of the read's keys, shared: a million memberships, a thousand
        // copies of the names.
        let keys: HashSet<*const u8> = seen.keys.iter().map(|k| k.as_str().as_ptr()).collect();
        for g in &listing {
            let observed = &built.groups[&GroupName::from(g.name.as_str())];
            assert_eq!(observed.id, g.id);
            assert!(
                observed
                    .group
                    .members
                    .iter()
                    .all(|k| keys.contains(&k.as_str().as_ptr())),
                "{}: a member's name was copied",
                g.name
            );
            let want: BTreeSet<UserKey> = g
                .members
                .iter()
                .filter(|m| *m.id != *hide)
                .filter_map(|m| names[&*m.id].clone())
                .map(UserKey::from)
                .collect();
            assert_eq!(observed.group.members, want, "{}", g.name);
            let want_orphans: BTreeSet<String> = g
                .members
                .iter()
                .filter(|m| names[&*m.id].is_none())
                .map(|m| m.id.to_string())
                .collect();
            let orphans = built.orphans.get(&g.id).cloned().unwrap_or_default();
            assert_eq!(orphans, want_orphans, "{}", g.name);
            let unmanaged = built
                .unmanaged
                .get(&observed.group.name)
                .map_or(0, BTreeSet::len);
            assert_eq!(
                unmanaged,
                want_orphans.len() + usize::from(g.members.iter().any(|m| *m.id == *hide)),
                "{}",
                g.name
            );
            let admin = Some(&g.admins[0].id)
                .filter(|a| ***a != *hide)
                .and_then(|a| names[&**a].clone());
            let admins = &observed.group.extras[TYPE]["admins"];
            assert_eq!(
                admins.as_array().map(Vec::len),
                Some(usize::from(admin.is_some())),
                "{}: the admin named, roster's own seat hidden",
                g.name
            );
        }
        // Each user once, by the id it has, roster's own account not among them.
        let users: BTreeSet<&str> = names
            .iter()
            .filter(|(i, n)| n.is_some() && **i != hide)
            .filter(|(i, _)| {
                listing
                    .iter()
                    .any(|g| g.members.iter().any(|m| *m.id == ***i))
            })
            .map(|(i, _)| i.as_str())
            .collect();
        let seen_users: BTreeSet<&str> = seen
            .ids
            .iter()
            .zip(&seen.standing)
            .filter(|(_, s)| matches!(s, Some(Standing::User(_))))
            .map(|(i, _)| &**i)
            .collect();
        assert_eq!(seen_users, users);
    }

    #[test]
    fn the_split_keeps_live_groups_in_scope_and_names_the_others() {
        let scope = Scope::new(
            Some(&["team-*".to_owned()]),
            &crate::model::Desired::default(),
            true,
        )
        .expect("scope");
        let mut gone = listed("team-gone", &[], &[]);
        gone.status = Some("Deleted".to_owned());
        let groups = vec![listed("Team-A", &[], &[]), listed("other", &[], &[]), gone];
        let (in_scope, others) = split(groups, &scope);
        let kept: Vec<&str> = in_scope.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(kept, ["Team-A"]);
        assert_eq!(others, BTreeSet::from([GroupName::from("other")]));
    }
}
