//! Watching a directory for changes to the groups, for the daemon's change-triggered runs
//! (see [`crate::source::watch`]; a change only starts a run, which reads the source whole).
//!
//! One connection per watch, bound with the source's credentials and TLS settings, and one of
//! three ways to watch, chosen from the rootDSE (or forced by [`LdapWatchMode`]):
//!
//! - **Persistent search** (OpenLDAP with the `syncprov` overlay, whose rootDSE lists the Sync
//!   Request control): an RFC 4533 search in `refreshAndPersist` mode of the groups' base, scope
//!   and filter, asking for no attributes (`1.1`). The refresh phase's entries are the current
//!   state, not changes, and are skipped; from the end of the refresh (a Sync Info message with
//!   `refreshDone`, or the first entry whose state is modify or delete) every entry, and every
//!   set of deleted entries, is a [`ChangeKind::Syncrepl`]. The raw search stream is read, since
//!   ldap3's `EntriesOnly` adapter drops the Sync Info messages, and without a timeout, which
//!   would end an idle persistent search. A silent network failure would leave the search
//!   waiting forever, so a base read of the rootDSE checks the connection once a minute: the
//!   only operation an idle persistent watch makes.
//! - **Polling `contextCSN`** (OpenLDAP without `syncprov`): one base read of the naming
//!   context that holds the base, each poll; any change of its `contextCSN` values is a
//!   [`ChangeKind::ContextCsn`]. The first read is the baseline. Note that only `syncprov` (on a
//!   provider) or a syncrepl consumer keeps `contextCSN` current: a standalone slapd without
//!   `syncprov` has none, or a stale one written by `slapadd -w`, and nothing can be seen by
//!   polling it; the watcher says so in a warning.
//! - **Polling `highestCommittedUSN`** (Active Directory): one base read of the rootDSE each
//!   poll; a changed USN, or a changed domain controller (`dnsHostName`, `serverName`,
//!   `dsServiceName`, and the `invocationID` of its NTDS settings, read once per connection),
//!   is a [`ChangeKind::Usn`]. The USN counts every write to the DC's database, not only to
//!   groups (a first logon of the day of a user updates `lastLogonTimestamp`, say), so on a busy
//!   domain most polls see a change: the daemon's coalescing is what bounds the runs.
//!
//! Errors end the watch (the supervisor logs them and starts it again); nothing here panics on
//! a server's reply except ldap3's own control and Sync Info parsers, which is why the watch runs
//! in a task of its own.

use std::collections::BTreeSet;
use std::time::Duration;

use ldap3::controls::{
    ControlType, EntryState, MakeCritical, RefreshMode, SyncInfo, SyncRequest, parse_syncinfo,
};
use ldap3::{Ldap, ResultEntry, Scope, SearchEntry};
use tracing::{info, warn};

use super::search::{self, At, Entry};
use super::{AD_CAPABILITY, Directory, LdapScope, LdapSourceConfig, config, describe, text_of};
use crate::source::watch::{ChangeKind, LdapWatchMode, Session, WatchError, WatchOptions};

/// The OID of the RFC 4533 Sync Request control, listed in `supportedControl` by a server
/// that can run a persistent search (OpenLDAP with `syncprov`).
const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";

/// How often a persistent watch checks that its connection still answers. The idle cost bound
/// is one LDAP operation a minute beyond the persistent search.
const LIVENESS: Duration = Duration::from_secs(60);

/// How a directory is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// An RFC 4533 persistent search.
    Persist,
    /// Polling the naming context's `contextCSN`.
    ContextCsn,
    /// Polling the rootDSE's `highestCommittedUSN`.
    Usn,
}

/// Which way to watch, from what the config says, what the rootDSE says, and what is forced.
fn choose(mode: LdapWatchMode, ad: bool, syncrepl: bool) -> How {
    match (mode, ad) {
        (LdapWatchMode::Persist, _) => How::Persist,
        (_, true) => How::Usn,
        (LdapWatchMode::Poll, false) => How::ContextCsn,
        (LdapWatchMode::Auto, false) if syncrepl => How::Persist,
        (LdapWatchMode::Auto, false) => How::ContextCsn,
    }
}

/// Watches one LDAP source on one connection until the connection fails (an error), the
/// server ends the search, or the session is stopped (`Ok`).
pub(crate) async fn watch(
    cfg: &LdapSourceConfig,
    opts: &WatchOptions,
    mut session: Session,
) -> Result<(), WatchError> {
    let (mut ldap, server, _tls) = tokio::select! {
        r = super::connect(cfg) => r?,
        () = session.stop().cancelled() => return Ok(()),
    };
    let stop = session.stop().clone();
    let result = tokio::select! {
        r = watch_on(cfg, opts, &mut ldap, &server, &mut session) => r,
        () = stop.cancelled() => Ok(()),
    };
    // Ends the persistent search too; a server that does not answer must not hold up a stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), ldap.unbind()).await;
    result
}

async fn watch_on(
    cfg: &LdapSourceConfig,
    opts: &WatchOptions,
    ldap: &mut Ldap,
    server: &str,
    session: &mut Session,
) -> Result<(), WatchError> {
    let at = At { cfg, server };
    let attrs = [
        "supportedCapabilities",
        "supportedControl",
        "namingContexts",
    ]
    .map(str::to_owned);
    let root = search::entry(
        &at,
        ldap,
        "",
        &attrs,
        "reading the rootDSE to choose how to watch",
    )
    .await?
    .unwrap_or_default();
    let ad = match cfg.directory {
        Directory::Ad => true,
        Directory::OpenLdap => false,
        Directory::Auto => root
            .values("supportedCapabilities")
            .iter()
            .any(|v| v == AD_CAPABILITY),
    };
    let syncrepl = root
        .values("supportedControl")
        .iter()
        .any(|v| v == SYNC_REQUEST_OID);
    let how = choose(opts.ldap, ad, syncrepl);
    info!(source = %session.label(), server, how = ?how, "watching the directory");
    match how {
        How::Persist => persist(&at, ad, ldap, session).await,
        How::ContextCsn => {
            let context = super::naming_context(&cfg.base_dn, root.values("namingContexts"))
                .map_or(cfg.base_dn.as_str(), String::as_str)
                .to_owned();
            poll_context_csn(&at, &context, opts.poll, ldap, session).await
        }
        How::Usn => poll_usn(&at, opts.poll, ldap, session).await,
    }
}

/// An error of the watch on `at`'s server.
fn search_error(at: &At<'_>, doing: &str, message: impl Into<String>) -> WatchError {
    WatchError::Search {
        server: at.server.to_owned(),
        doing: doing.to_owned(),
        message: message.into(),
    }
}

/// The persistent search: returns only with an error (a server that ends the search, a
/// connection that fails or stops answering).
async fn persist(
    at: &At<'_>,
    ad: bool,
    ldap: &mut Ldap,
    session: &mut Session,
) -> Result<(), WatchError> {
    let cfg = at.cfg;
    let filter = cfg.group_filter.as_deref().unwrap_or(if ad {
        config::AD_GROUP_FILTER
    } else {
        config::DEFAULT_GROUP_FILTER
    });
    let scope = match cfg.scope {
        LdapScope::Sub => Scope::Subtree,
        LdapScope::One => Scope::OneLevel,
    };
    let doing = format!("persistent search of {} for {filter}", cfg.base_dn);
    // Critical: a server that cannot keep the search open must refuse it, not answer it as a
    // plain search that ends after the refresh.
    let control = SyncRequest {
        mode: RefreshMode::RefreshAndPersist,
        cookie: None,
        reload_hint: false,
    }
    .critical();
    // The liveness reads go over the same connection while the search holds it.
    let mut alive = ldap.clone();
    // No `with_timeout`: ldap3's per-search timeout would end an idle persistent search.
    let mut stream = ldap
        .with_controls(control)
        .streaming_search(&cfg.base_dn, scope, filter, vec!["1.1"])
        .await
        .map_err(|e| search_error(at, &doing, describe(&e)))?;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LIVENESS, LIVENESS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut phase = Phase::Refresh;
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Ok(Some(message)) => {
                    let (seen, next_phase) = phase.read(message);
                    if phase == Phase::Refresh && next_phase == Phase::Persist {
                        session.established()?;
                    }
                    phase = next_phase;
                    if seen {
                        session.changed(ChangeKind::Syncrepl)?;
                    }
                }
                Ok(None) => {
                    let done = stream.finish().await;
                    return Err(search_error(
                        at,
                        &doing,
                        format!(
                            "the server ended the search (result code {}{})",
                            done.rc,
                            text_of(&done.text)
                        ),
                    ));
                }
                Err(e) => return Err(search_error(at, &doing, describe(&e))),
            },
            _ = tick.tick() => {
                let attrs = ["1.1".to_owned()];
                search::entry(at, &mut alive, "", &attrs, "checking that the server answers")
                    .await?;
            }
        }
    }
}

/// Where a persistent search is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Sending the current state: nothing read is a change.
    Refresh,
    /// Sending changes as they are made.
    Persist,
}

impl Phase {
    /// Reads one message of the search: whether it tells of a change, and the phase after it.
    ///
    /// Panics (in ldap3's parsers) on a malformed Sync State control or Sync Info message.
    fn read(self, message: ResultEntry) -> (bool, Phase) {
        if message.is_intermediate() {
            return match parse_syncinfo(message) {
                SyncInfo::RefreshDelete {
                    refresh_done: true, ..
                }
                | SyncInfo::RefreshPresent {
                    refresh_done: true, ..
                } => (false, Phase::Persist),
                // Entries deleted while persisting may come as a set of their UUIDs.
                SyncInfo::SyncIdSet { .. } => (self == Phase::Persist, self),
                _ => (false, self),
            };
        }
        if message.is_ref() {
            return (false, self);
        }
        let state = message
            .1
            .iter()
            .find(|c| matches!(c.0, Some(ControlType::SyncState)))
            .map(|c| c.1.parse::<ldap3::controls::SyncState>().state);
        match (self, state) {
            (Phase::Persist, _) => (true, Phase::Persist),
            // Only the persist phase modifies or deletes: the refresh ended unannounced.
            (Phase::Refresh, Some(EntryState::Modify | EntryState::Delete)) => {
                (true, Phase::Persist)
            }
            (Phase::Refresh, _) => (false, Phase::Refresh),
        }
    }
}

/// Polls the `contextCSN` of `context`: returns only with an error.
async fn poll_context_csn(
    at: &At<'_>,
    context: &str,
    poll: Duration,
    ldap: &mut Ldap,
    session: &mut Session,
) -> Result<(), WatchError> {
    let attrs = ["contextCSN".to_owned()];
    let doing = format!("reading the contextCSN of {context}");
    let read = |e: Option<Entry>| -> BTreeSet<String> {
        e.map(|e| e.values("contextCSN").iter().cloned().collect())
            .unwrap_or_default()
    };
    let mut last = read(search::entry(at, ldap, context, &attrs, &doing).await?);
    if last.is_empty() {
        warn!(
            source = %session.label(),
            context,
            "the server keeps no contextCSN for the naming context of the groups, so polling \
             cannot see changes (only the syncprov overlay or a syncrepl consumer keeps it); \
             runs start on the schedule only"
        );
    }
    session.established()?;
    loop {
        tokio::time::sleep(poll).await;
        let now = read(search::entry(at, ldap, context, &attrs, &doing).await?);
        if now != last {
            session.changed(ChangeKind::ContextCsn)?;
            last = now;
        }
    }
}

/// What identifies the state of an Active Directory domain controller.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DcState {
    /// `highestCommittedUSN`: rises with every write to the DC's database.
    usn: Vec<String>,
    /// `dnsHostName`, `serverName`, `dsServiceName`: which DC answers (a USN means something
    /// only on its own DC).
    dc: Vec<Vec<String>>,
}

/// The rootDSE attributes read each poll of an Active Directory.
const DC_ATTRS: [&str; 4] = [
    "highestCommittedUSN",
    "dnsHostName",
    "serverName",
    "dsServiceName",
];

/// Polls Active Directory's `highestCommittedUSN`: returns only with an error.
async fn poll_usn(
    at: &At<'_>,
    poll: Duration,
    ldap: &mut Ldap,
    session: &mut Session,
) -> Result<(), WatchError> {
    let attrs = DC_ATTRS.map(str::to_owned);
    let doing = "reading the rootDSE's highestCommittedUSN";
    let read = |e: Option<Entry>| -> DcState {
        let e = e.unwrap_or_default();
        DcState {
            usn: e.values(DC_ATTRS[0]).to_vec(),
            dc: DC_ATTRS[1..].iter().map(|a| e.values(a).to_vec()).collect(),
        }
    };
    let mut last = read(search::entry(at, ldap, "", &attrs, doing).await?);
    if last.usn.is_empty() {
        warn!(
            source = %session.label(),
            "the rootDSE shows no highestCommittedUSN, so polling cannot see changes; runs \
             start on the schedule only"
        );
    }
    // A DC restored from a backup reuses USNs under a new invocationID.
    let service = last.dc[2].first().cloned();
    let mut invocation = match &service {
        Some(dn) => invocation_id(at, ldap, dn).await?,
        None => None,
    };
    session.established()?;
    loop {
        tokio::time::sleep(poll).await;
        let now = read(search::entry(at, ldap, "", &attrs, doing).await?);
        if now == last {
            continue;
        }
        if now.dc != last.dc {
            invocation = match now.dc[2].first() {
                Some(dn) => {
                    let id = invocation_id(at, ldap, dn).await?;
                    if id != invocation {
                        info!(source = %session.label(), "another domain controller answers");
                    }
                    id
                }
                None => None,
            };
        }
        session.changed(ChangeKind::Usn)?;
        last = now;
    }
}

/// The `invocationID` (16 bytes) of the NTDS settings object `dn`, if the bind account may read
/// it.
async fn invocation_id(
    at: &At<'_>,
    ldap: &mut Ldap,
    dn: &str,
) -> Result<Option<Vec<u8>>, WatchError> {
    let doing = format!("reading the invocationID of {dn}");
    let ldap3::SearchResult(entries, result) = ldap
        .with_timeout(at.cfg.timeout)
        .search(dn, Scope::Base, "(objectClass=*)", vec!["invocationID"])
        .await
        .map_err(|e| search_error(at, &doing, describe(&e)))?;
    if result.rc != 0 {
        // Not readable by this account: the DC's name alone identifies it.
        return Ok(None);
    }
    // `construct` panics on a malformed entry: this runs in the watch's own task.
    let value = entries.into_iter().next().and_then(|e| {
        let e = SearchEntry::construct(e);
        let binary = e
            .bin_attrs
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("invocationID"))
            .and_then(|(_, v)| v.into_iter().next());
        // 16 bytes that happen to be UTF-8 land among the text attributes.
        binary.or_else(|| {
            e.attrs
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("invocationID"))
                .and_then(|(_, v)| v.into_iter().next())
                .map(String::into_bytes)
        })
    });
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_way_to_watch_follows_the_directory_unless_forced() {
        use LdapWatchMode::*;
        assert_eq!(choose(Auto, false, true), How::Persist);
        assert_eq!(choose(Auto, false, false), How::ContextCsn);
        assert_eq!(choose(Auto, true, false), How::Usn);
        assert_eq!(choose(Poll, false, true), How::ContextCsn);
        assert_eq!(choose(Poll, true, false), How::Usn);
        assert_eq!(choose(Persist, false, false), How::Persist);
        assert_eq!(choose(Persist, true, false), How::Persist);
    }
}
