//! The change watchers of the daemon's change-triggered runs (issue 13), against real servers:
//! a slapd with `syncprov` (persistent search), a syncrepl consumer without it (`contextCSN`
//! polling), a standalone slapd without it (nothing to poll), a slapd killed and restarted
//! (reconnect), a Samba AD DC (`highestCommittedUSN` polling), and TOML files edited on disk.
//!
//! Every test asserts on the changes sent: what must come (within generous timeouts), and what
//! must not (the refresh of a persistent search, reads of the files, editor swap files,
//! changes outside the groups' base); and that cancelling the stop token ends every task.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use roster::config::{SourceConfig, TomlSourceConfig};
use roster::model::Origin;
use roster::secret::Secret;
use roster::source::ldap::{Directory, LdapScope, LdapSourceConfig, MemberKind};
use roster::source::watch::{
    Change, ChangeKind, LdapWatchMode, WatchOptions, source_label, spawn_all,
};
use support::ldif::{self, GROUPS_DN};
use support::samba::{self, Samba};
use support::slapd::{Slapd, SlapdOptions, source_config};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Long enough for a watcher to connect, bind and finish a refresh on a loaded machine.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long a change may take to arrive before the test fails.
const ARRIVE: Duration = Duration::from_secs(10);

/// The watchers of `sources`, and what they send.
struct Watching {
    rx: UnboundedReceiver<Change>,
    stop: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

impl Watching {
    fn start(sources: &[SourceConfig], opts: WatchOptions) -> Watching {
        let (tx, rx) = unbounded_channel();
        let stop = CancellationToken::new();
        let handles = spawn_all(sources, &opts, tx, stop.clone());
        assert_eq!(handles.len(), sources.len());
        Watching { rx, stop, handles }
    }

    /// The next change, failing the test when none comes within `within`.
    async fn next(&mut self, within: Duration, waiting_for: &str) -> Change {
        match tokio::time::timeout(within, self.rx.recv()).await {
            Ok(Some(c)) => c,
            Ok(None) => panic!("the watchers ended while waiting for {waiting_for}"),
            Err(_) => panic!("no change within {within:?} while waiting for {waiting_for}"),
        }
    }

    /// Every change sent within `within` (waits the whole time).
    async fn during(&mut self, within: Duration) -> Vec<Change> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(c)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            seen.push(c);
        }
        seen
    }

    /// Cancels the stop token; every task must end within a few seconds.
    async fn stop(self) {
        self.stop.cancel();
        for h in self.handles {
            tokio::time::timeout(Duration::from_secs(4), h)
                .await
                .expect("a watcher did not end within 4 s of the stop")
                .expect("a watcher task failed");
        }
    }
}

fn change(source: &str, kind: ChangeKind) -> Change {
    Change {
        source: source.to_owned(),
        kind,
    }
}

/// A directory with two users and two groups under `ou=groups`.
fn directory() -> String {
    let mut l = ldif::base();
    for uid in ["alice", "bob"] {
        l.push_str(&ldif::user(uid, uid));
    }
    l.push_str(&ldif::group_of_names(
        "eng",
        None,
        &[&ldif::user_dn("alice")],
    ));
    l.push_str(&ldif::group_of_names("ops", None, &[&ldif::user_dn("bob")]));
    l
}

fn add_bob_to_eng(s: &Slapd) {
    s.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n",
        ldif::group_dn("eng"),
        ldif::user_dn("bob")
    ));
}

fn ldap(cfg: LdapSourceConfig) -> SourceConfig {
    SourceConfig::Ldap(cfg)
}

fn opts(ldap: LdapWatchMode, poll: Duration) -> WatchOptions {
    WatchOptions { poll, ldap }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_search_sees_changes_to_groups_and_nothing_of_its_refresh() {
    let s = Slapd::start(SlapdOptions {
        syncprov: true,
        ..SlapdOptions::with_ldif(directory())
    });
    let url = s.url();
    // Auto with a poll far longer than the test: only a persistent search can see in time.
    let mut w = Watching::start(
        &[ldap(source_config(&url))],
        opts(LdapWatchMode::Auto, Duration::from_secs(3600)),
    );
    let refresh = w.during(SETTLE).await;
    assert_eq!(refresh, [], "the refresh phase's entries are not changes");

    add_bob_to_eng(&s);
    assert_eq!(
        w.next(ARRIVE, "a member added").await,
        change(&url, ChangeKind::Syncrepl)
    );
    let rest = w.during(Duration::from_millis(500)).await;
    assert!(rest.is_empty(), "one modify, one change: {rest:?}");

    // A change outside the groups' base is not watched.
    s.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nreplace: cn\ncn: Alice A\n",
        ldif::user_dn("alice")
    ));
    assert_eq!(w.during(Duration::from_secs(1)).await, []);

    s.ldapmodify(&format!(
        "dn: {}\nchangetype: delete\n",
        ldif::group_dn("ops")
    ));
    assert_eq!(
        w.next(ARRIVE, "a group deleted").await,
        change(&url, ChangeKind::Syncrepl)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_syncprov_a_consumer_is_polled_for_its_context_csn() {
    let provider = Slapd::start(SlapdOptions {
        syncprov: true,
        ..SlapdOptions::with_ldif(directory())
    });
    // A read-only replica without syncprov: no persistent search, but syncrepl keeps its
    // contextCSN current, so polling it sees the provider's writes.
    let consumer = Slapd::start(SlapdOptions {
        consumer_of: Some(provider.url()),
        ..SlapdOptions::with_ldif("")
    });
    wait_for_group(&consumer, "eng");
    let url = consumer.url();
    let mut w = Watching::start(
        &[ldap(source_config(&url))],
        opts(LdapWatchMode::Auto, Duration::from_millis(200)),
    );
    assert_eq!(w.during(SETTLE).await, [], "the first read is the baseline");

    add_bob_to_eng(&provider);
    assert_eq!(
        w.next(ARRIVE, "the replicated write").await,
        change(&url, ChangeKind::ContextCsn)
    );
    w.stop().await;
}

/// Waits until the consumer has replicated the group `cn`.
fn wait_for_group(s: &Slapd, cn: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = s
            .tool("ldapsearch")
            .args(["-x", "-LLL", "-H", &s.url(), "-D", support::slapd::ADMIN_DN])
            .args(["-w", support::slapd::ADMIN_PW, "-b", &ldif::group_dn(cn)])
            .args(["-s", "base", "1.1"])
            .output()
            .expect("run ldapsearch");
        if out.status.success() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer did not replicate {cn}:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_slapd_without_syncprov_has_no_context_csn_to_poll() {
    // The real behaviour, pinned: slapd keeps contextCSN only through syncprov (or as a
    // consumer), so the fallback poll of a standalone server sees no write at all.
    let s = Slapd::with_ldif(directory());
    let url = s.url();
    let mut w = Watching::start(
        &[ldap(source_config(&url))],
        opts(LdapWatchMode::Auto, Duration::from_millis(200)),
    );
    assert_eq!(w.during(SETTLE).await, []);
    add_bob_to_eng(&s);
    assert_eq!(w.during(Duration::from_secs(2)).await, []);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_polling_of_a_syncprov_server_sees_its_context_csn() {
    let s = Slapd::start(SlapdOptions {
        syncprov: true,
        ..SlapdOptions::with_ldif(directory())
    });
    let url = s.url();
    let mut w = Watching::start(
        &[ldap(source_config(&url))],
        opts(LdapWatchMode::Poll, Duration::from_millis(200)),
    );
    assert_eq!(w.during(SETTLE).await, []);
    add_bob_to_eng(&s);
    assert_eq!(
        w.next(ARRIVE, "a member added").await,
        change(&url, ChangeKind::ContextCsn)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_slapd_is_watched_again_after_a_reconnect() {
    let mut s = Slapd::start(SlapdOptions {
        syncprov: true,
        ..SlapdOptions::with_ldif(directory())
    });
    let url = s.url();
    let mut w = Watching::start(
        &[ldap(source_config(&url))],
        opts(LdapWatchMode::Persist, Duration::from_secs(3600)),
    );
    assert_eq!(w.during(SETTLE).await, []);

    s.stop();
    // Written while nothing watches: only the Reconnect can tell of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.restart();
    add_bob_to_eng(&s);
    assert_eq!(
        w.next(Duration::from_secs(20), "the reconnect").await,
        change(&url, ChangeKind::Reconnect)
    );
    // And the new persistent search sees the next write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.ldapmodify(&format!(
        "dn: {}\nchangetype: delete\n",
        ldif::group_dn("ops")
    ));
    assert_eq!(
        w.next(ARRIVE, "a group deleted after the reconnect").await,
        change(&url, ChangeKind::Syncrepl)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_token_ends_a_watcher_that_waits_to_retry() {
    // Nothing listens on this port: the watcher fails, then waits in its backoff.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = source_config(&format!("ldap://127.0.0.1:{port}"));
    cfg.timeout = Duration::from_secs(1);
    let mut w = Watching::start(&[ldap(cfg)], WatchOptions::default());
    assert_eq!(w.during(Duration::from_millis(1500)).await, []);
    w.stop().await;
}

fn toml_source(path: &Path) -> SourceConfig {
    SourceConfig::Toml(TomlSourceConfig {
        path: path.to_path_buf(),
        origin: Origin::File {
            path: PathBuf::from("roster.toml"),
            line: 1,
            col: 1,
        },
    })
}

const GROUP: &str = "[[group]]\nname = \"eng\"\nmembers = [\"alice\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_desired_state_files_sends_files_and_reading_them_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("groups");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.toml"), GROUP).unwrap();
    let single = dir.path().join("one.toml");
    let other = GROUP.replace("eng", "sre");
    std::fs::write(&single, &other).unwrap();
    let sources = [toml_source(&folder), toml_source(&single)];
    let (folder_label, single_label) = (source_label(&sources[0]), source_label(&sources[1]));
    let mut w = Watching::start(&sources, WatchOptions::default());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A run reads the files: that must not start another run.
    roster::source::load_desired(&sources).await.unwrap();
    let _ = std::fs::read_to_string(folder.join("a.toml")).unwrap();
    assert_eq!(w.during(Duration::from_millis(500)).await, []);

    // A write in place: one change (a few at most), for that source only.
    std::fs::write(
        folder.join("a.toml"),
        format!("{GROUP}description = \"x\"\n"),
    )
    .unwrap();
    let seen = w.during(Duration::from_secs(1)).await;
    assert!(!seen.is_empty() && seen.len() <= 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|c| *c == change(&folder_label, ChangeKind::Files)),
        "{seen:?}"
    );

    // Editor swap files, backups and subfolders are not what a load reads.
    std::fs::write(folder.join(".a.toml.swp"), "x").unwrap();
    std::fs::write(folder.join("a.toml~"), "x").unwrap();
    std::fs::create_dir(folder.join("sub")).unwrap();
    std::fs::write(folder.join("sub/b.toml"), GROUP).unwrap();
    assert_eq!(w.during(Duration::from_millis(500)).await, []);

    // A new file in the folder.
    std::fs::write(folder.join("b.toml"), GROUP.replace("eng", "ops")).unwrap();
    assert_eq!(
        w.next(ARRIVE, "a file created").await,
        change(&folder_label, ChangeKind::Files)
    );
    w.during(Duration::from_millis(300)).await;

    // A file source saved as editors do: a temporary file renamed over it.
    let tmp = dir.path().join(".one.toml.tmp");
    std::fs::write(&tmp, format!("{other}description = \"y\"\n")).unwrap();
    std::fs::rename(&tmp, &single).unwrap();
    assert_eq!(
        w.next(ARRIVE, "a file replaced by rename").await,
        change(&single_label, ChangeKind::Files)
    );
    // ...and a second save still counts (the watch survived the rename).
    w.during(Duration::from_millis(300)).await;
    std::fs::write(&single, &other).unwrap();
    assert_eq!(
        w.next(ARRIVE, "a second save").await,
        change(&single_label, ChangeKind::Files)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_is_polled_for_its_highest_committed_usn() {
    let s = Samba::start();
    let url = s.url();
    let cfg = LdapSourceConfig {
        bind_dn: Some(samba::BIND_DN.to_owned()),
        bind_password: Some(Secret::new(samba::BIND_PW)),
        base_dn: samba::GROUPS_DN.to_owned(),
        scope: LdapScope::Sub,
        directory: Directory::Auto,
        group_filter: None,
        member_kind: MemberKind::Dn,
        user_base_dn: Some(samba::PEOPLE_DN.to_owned()),
        user_filter: None,
        user_key_attr: None,
        ..source_config(&url)
    };
    let mut w = Watching::start(
        &[ldap(cfg)],
        // Auto would even choose a persistent search were it offered: Samba offers none.
        opts(LdapWatchMode::Auto, Duration::from_millis(300)),
    );
    // Samba may write on its own while it starts (and a first logon updates
    // lastLogonTimestamp): only what follows the group change counts.
    w.during(Duration::from_secs(3)).await;
    s.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n",
        samba::group_dn(samba::NESTED_CHILD),
        samba::user(10).dn
    ));
    assert_eq!(
        w.next(ARRIVE, "a member added on the DC").await,
        change(&url, ChangeKind::Usn)
    );
    w.stop().await;
}

#[test]
fn labels_name_the_first_url_or_the_path() {
    let mut cfg = source_config("ldap://a.example:389");
    cfg.urls.push("ldap://b.example:389".to_owned());
    assert_eq!(source_label(&ldap(cfg)), "ldap://a.example:389");
    assert_eq!(
        source_label(&toml_source(Path::new("/etc/roster/groups"))),
        "/etc/roster/groups"
    );
    let _ = GROUPS_DN;
}
