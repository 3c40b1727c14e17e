//! A real, throwaway Samba Active Directory domain controller for tests.
//!
//! [`Samba::start`] copies a cached, fully loaded *template* domain into a temporary directory and
//! runs `samba -i -M single` on it in the foreground: one process, whose PID [`Samba::pid`] gives
//! and which [`Drop`] kills (SIGKILL: the copy is thrown away). Samba's LDAP server binds the
//! privileged ports 389/636/3268/3269 (so the tests run as root, as CI does), one set per
//! address: every instance gets its own loopback address `127.x.y.z` (Linux routes all of
//! 127.0.0.0/8 to `lo`; Samba accepts such an address when it is written as `127.x.y.z/8` in
//! `interfaces`). The address is checked free by binding port 389 first, and a start that still
//! loses a race for it is retried on another address. Samba's stdin is a pipe this struct holds:
//! `samba -i` exits on EOF, so a test process that dies (even by SIGKILL) takes its servers along.
//!
//! # The template
//!
//! Provisioning a domain and loading the users take ~12 s together, so it is done once and kept
//! in `CARGO_TARGET_TMPDIR/samba-template-v<TEMPLATE_VERSION>` (`target/tmp/…`), shared by
//! test runs and test binaries. It is built under an exclusive `flock` on
//! `samba-template.lock` (parallel test binaries wait rather than build it twice) and copied
//! under a shared one. It is rebuilt when [`TEMPLATE_VERSION`] changes (bump it with the data) or
//! the installed Samba's version does. Building it:
//!
//! 1. `samba-tool domain provision --realm=ROSTER.TEST --domain=ROSTER --server-role=dc
//!    --dns-backend=NONE --use-rfc2307 …` (the default `tdb` store; `mdb` was no faster);
//! 2. the data below, loaded **offline** into `private/sam.ldb` through Samba's own Python bindings
//!    (`samba.samdb.SamDB` with the system session and ldb's `batch_mode`, in one transaction, as
//!    Samba's own `join.py` does; the password of [`BIND_DN`] set with `SamDB.setpassword`).
//!    Measured on this 2-core machine (load average 3–4 from other builds): 5,055 users and 9
//!    groups (9,510 `member` values) in 6.6 s. The alternatives were far slower: one `ldapadd -c`
//!    of the same LDIF against a running Samba took 4 min 57 s (~59 ms an entry, load ~10), and
//!    the offline load without `batch_mode` 33 s: ldb then opens a sub-transaction per entry and
//!    copies its growing index records at each commit (seen with `perf`), so each user costs more
//!    than the one before (the first 1,000 took 2.4 s, the fifth 9 s). Parallel `ldapadd`s cannot
//!    help: ldb has one writer;
//! 3. one start of `samba` on the template, which generates its TLS key and certificate (so the
//!    copies need not) and proves the data: a bind as [`BIND_DN`] and the 5,000 values of
//!    `size-5000`. Then a clean stop (stdin closed).
//!
//! Building the whole template took 13 s (provision 5.2 s, load 6.6 s, first start and check
//! 1.1 s). A copy is ~94 MB (`private/` and `state/`); [`Samba::start`] from the built template
//! (copy, spawn, until an LDAP search answers) took 0.6–2 s.
//!
//! # The data (deterministic)
//!
//! Base DN [`BASE_DN`] (`DC=roster,DC=test`), realm `ROSTER.TEST`, NetBIOS domain `ROSTER`.
//!
//! - [`PEOPLE_DN`] (`OU=People`): [`USERS`] (5,050) users [`user(i)`](user) for `i` in
//!   `1..=USERS`: `CN=User 00042`, `sAMAccountName: user00042`, `userPrincipalName:
//!   user00042@roster.test`, `mail: user00042@mail.roster.test`, `givenName: User`, `sn: 00042`,
//!   `userAccountControl: 512` (enabled) except the users in [`DISABLED_USERS`], which have `514`
//!   (disabled): 7 (in every group of 1,499 or more), 1,500 (the last value of a first range) and
//!   5,000 (the last member of `size-5000`).
//!   Plus the four [`INTL_USERS`], whose names are not ASCII (and one `CN` holds a comma, so its DN
//!   is escaped: `CN=Müller\, Anna`).
//! - [`GROUPS_DN`] (`OU=Groups`), all global security groups whose `sAMAccountName` is their `CN`:
//!   `size-0`, `size-1`, `size-1499`, `size-1500`, `size-1501` and `size-5000` ([`SIZES`]), whose
//!   members are users `1..=N`; `nested-child` (users 3 and 4) and `nested-parent` (the group
//!   `nested-child` and user 2); `intl` (user 1 and the four [`INTL_USERS`]). [`group`] and
//!   [`groups`] give every group's expected members.
//! - [`SERVICES_DN`] (`OU=Services`): roster's bind account [`BIND_DN`] / [`BIND_PW`]
//!   (`sAMAccountName: roster-svc`), an ordinary user whose password never expires.
//! - The domain's `maxPwdAge` is "never", so the cached template's passwords (including
//!   [`ADMIN_DN`]'s) keep working.
//!
//! # Other datasets
//!
//! [`Samba::start_dataset`] serves other data from a template of its own: a [`Dataset`] names
//! the data (its cache key), its version and the function that writes its LDIF (which starts
//! with [`base_ldif`]: the OUs and the bind account). Its template is built and checked as above
//! (the check counts the `member` values of one group) in `samba-<name>-v<version>`, under a lock
//! of its own (`samba-<name>.lock`), so building one dataset never holds up a test that copies
//! another. [`Samba::start`] is `start_dataset(&DEFAULT_DATASET)`, whose template is the
//! `samba-template-v<TEMPLATE_VERSION>` above.
//!
//! Large datasets take long to build and much disk. `benches/ad.rs`'s `biggroup` (100,000 users
//! and one group with all of them as `member`) took **588 s** to build on this 2-core machine
//! while other builds kept its load average at ~8 (provision 10.1 s, offline load 575.9 s of
//! which ~5.3 min was the loader's CPU time, first start and check 1.8 s; `perf` showed the
//! loader spending most of it in `memmove`, as ldb rewrites growing index records); at a load
//! average of ~3 it took 392 s (provision 3.3 s, offline load 385.7 s, first start and check
//! 2.5 s). Its template is ~825 MB, and each start copies it (1.7 s). Built once, it is reused
//! until its version or Samba's changes.
//!
//! Needs `samba`, `samba-tool` (with the `python3-samba` it runs on) and the OpenLDAP clients
//! (`ldapsearch`, `ldapmodify`); `scripts/test` installs them (Debian: `samba samba-ad-dc
//! krb5-user winbind ldap-utils`). A missing tool is a panic that says so, never a skipped test.
//!
//! Uses the sibling modules `ldif` and `slapd` (for locating tools; declare all three:
//! `mod ldif; mod samba; mod slapd;`).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::ldif::{attr, escape_dn_value};

/// Bump when the data, the provisioning or the template layout changes: the cached template is
/// rebuilt when this differs.
pub const TEMPLATE_VERSION: u32 = 1;

/// The Kerberos realm (and DNS domain, upper-cased).
pub const REALM: &str = "ROSTER.TEST";
/// The NetBIOS domain name.
pub const DOMAIN: &str = "ROSTER";
/// The domain's naming context.
pub const BASE_DN: &str = "DC=roster,DC=test";
/// The OU of the test users.
pub const PEOPLE_DN: &str = "OU=People,DC=roster,DC=test";
/// The OU of the test groups.
pub const GROUPS_DN: &str = "OU=Groups,DC=roster,DC=test";
/// The OU of roster's bind account.
pub const SERVICES_DN: &str = "OU=Services,DC=roster,DC=test";
/// roster's bind account: an ordinary, enabled user.
pub const BIND_DN: &str = "CN=roster,OU=Services,DC=roster,DC=test";
/// The `sAMAccountName` of [`BIND_DN`].
pub const BIND_SAM: &str = "roster-svc";
/// The `userPrincipalName` of [`BIND_DN`] (AD also accepts it as a simple-bind name).
pub const BIND_UPN: &str = "roster-svc@roster.test";
/// The password of [`BIND_DN`] (meets AD's default complexity rules).
pub const BIND_PW: &str = "Roster-Bind-Secret-1";
/// The domain administrator (made by provisioning): ignores access rules.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=roster,DC=test";
/// The password of [`ADMIN_DN`].
pub const ADMIN_PW: &str = "Roster-Admin-Secret-1";

/// The number of numbered users `CN=User 00001` … `CN=User 05050`.
pub const USERS: usize = 5050;
/// The numbered users that are disabled (`userAccountControl: 514`).
pub const DISABLED_USERS: [usize; 3] = [7, 1500, 5000];
/// The member counts of the `size-N` groups (members: users `1..=N`).
pub const SIZES: [usize; 6] = [0, 1, 1499, 1500, 1501, 5000];
/// The group whose members are the group [`NESTED_CHILD`] and user 2.
pub const NESTED_PARENT: &str = "nested-parent";
/// The group nested in [`NESTED_PARENT`]; its members are users 3 and 4.
pub const NESTED_CHILD: &str = "nested-child";
/// The group of user 1 and the [`INTL_USERS`].
pub const INTL_GROUP: &str = "intl";
/// Users with non-ASCII names: `(cn, sAMAccountName, givenName, sn)`. Their
/// `userPrincipalName` is `<sAMAccountName>@roster.test` and their `mail`
/// `<sAMAccountName>@mail.roster.test`, like the numbered users'.
pub const INTL_USERS: [(&str, &str, &str, &str); 4] = [
    ("Zoë Ångström", "zoe.angstrom", "Zoë", "Ångström"),
    ("Jürgen Groß", "jürgen.groß", "Jürgen", "Groß"),
    ("Müller, Anna", "anna.mueller", "Anna", "Müller"),
    ("李小龙", "li.xiaolong", "小龙", "李"),
];

/// `userAccountControl` of an enabled ordinary account.
pub const UAC_ENABLED: u32 = 512;
/// `userAccountControl` of a disabled ordinary account (512 | ACCOUNTDISABLE).
pub const UAC_DISABLED: u32 = 514;
/// `userAccountControl` of [`BIND_DN`] (512 | DONT_EXPIRE_PASSWORD).
pub const UAC_SERVICE: u32 = 66048;

/// One test user, as loaded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestUser {
    /// The DN, escaped as Samba returns it (`CN=Müller\, Anna,OU=People,DC=roster,DC=test`).
    pub dn: String,
    /// The `cn` (unescaped).
    pub cn: String,
    /// `sAMAccountName`.
    pub sam: String,
    /// `userPrincipalName`.
    pub upn: String,
    /// `mail`.
    pub mail: String,
    /// `false` when `userAccountControl` has ACCOUNTDISABLE (514).
    pub enabled: bool,
}

/// One test group and its expected members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestGroup {
    /// The `cn` and `sAMAccountName`.
    pub name: String,
    /// The DN.
    pub dn: String,
    /// The user members.
    pub users: Vec<TestUser>,
    /// The names of the group members (nested groups).
    pub groups: Vec<String>,
}

impl TestGroup {
    /// Every `member` value: the users' DNs and the nested groups' DNs.
    pub fn member_dns(&self) -> BTreeSet<String> {
        self.users
            .iter()
            .map(|u| u.dn.clone())
            .chain(self.groups.iter().map(|g| group_dn(g)))
            .collect()
    }

    /// The user members' `sAMAccountName`s.
    pub fn sams(&self) -> BTreeSet<String> {
        self.users.iter().map(|u| u.sam.clone()).collect()
    }

    /// The enabled user members' `sAMAccountName`s (what `exclude_disabled` keeps).
    pub fn enabled_sams(&self) -> BTreeSet<String> {
        self.users
            .iter()
            .filter(|u| u.enabled)
            .map(|u| u.sam.clone())
            .collect()
    }

    /// The user members' `userPrincipalName`s.
    pub fn upns(&self) -> BTreeSet<String> {
        self.users.iter().map(|u| u.upn.clone()).collect()
    }

    /// The user members' `mail` values.
    pub fn mails(&self) -> BTreeSet<String> {
        self.users.iter().map(|u| u.mail.clone()).collect()
    }
}

/// The numbered user `i` (`1..=USERS`).
pub fn user(i: usize) -> TestUser {
    let sam = format!("user{i:05}");
    TestUser {
        dn: format!("CN=User {i:05},{PEOPLE_DN}"),
        cn: format!("User {i:05}"),
        upn: format!("{sam}@roster.test"),
        mail: format!("{sam}@mail.roster.test"),
        enabled: !DISABLED_USERS.contains(&i),
        sam,
    }
}

/// The users of [`INTL_USERS`].
pub fn intl_users() -> Vec<TestUser> {
    INTL_USERS
        .iter()
        .map(|(cn, sam, _, _)| TestUser {
            dn: format!("CN={},{PEOPLE_DN}", escape_dn_value(cn)),
            cn: (*cn).to_owned(),
            sam: (*sam).to_owned(),
            upn: format!("{sam}@roster.test"),
            mail: format!("{sam}@mail.roster.test"),
            enabled: true,
        })
        .collect()
}

/// Every test user under [`PEOPLE_DN`]: the numbered ones, then the [`INTL_USERS`].
pub fn all_users() -> Vec<TestUser> {
    (1..=USERS).map(user).chain(intl_users()).collect()
}

/// `size-N`.
pub fn size_group_name(n: usize) -> String {
    format!("size-{n}")
}

/// The DN of the group `name` (under [`GROUPS_DN`]).
pub fn group_dn(name: &str) -> String {
    format!("CN={},{GROUPS_DN}", escape_dn_value(name))
}

/// Every test group with its expected members, in load order (a nested group before its
/// parent, since AD requires a `member` value to name an existing object).
pub fn groups() -> Vec<TestGroup> {
    let mut all: Vec<TestGroup> = SIZES
        .iter()
        .map(|&n| TestGroup {
            name: size_group_name(n),
            dn: group_dn(&size_group_name(n)),
            users: (1..=n).map(user).collect(),
            groups: Vec::new(),
        })
        .collect();
    all.push(TestGroup {
        name: NESTED_CHILD.to_owned(),
        dn: group_dn(NESTED_CHILD),
        users: vec![user(3), user(4)],
        groups: Vec::new(),
    });
    all.push(TestGroup {
        name: NESTED_PARENT.to_owned(),
        dn: group_dn(NESTED_PARENT),
        users: vec![user(2)],
        groups: vec![NESTED_CHILD.to_owned()],
    });
    all.push(TestGroup {
        name: INTL_GROUP.to_owned(),
        dn: group_dn(INTL_GROUP),
        users: std::iter::once(user(1)).chain(intl_users()).collect(),
        groups: Vec::new(),
    });
    all
}

/// The test group `name`; panics when there is none (a typo in a test).
pub fn group(name: &str) -> TestGroup {
    groups()
        .into_iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no test group {name:?} in tests/support/samba.rs"))
}

/// The LDIF loaded into the template (records without `changetype` are adds; the domain's
/// `maxPwdAge` is changed with a `modify` record).
pub fn data_ldif() -> String {
    let mut out = String::with_capacity(2_000_000);
    out.push_str(&base_ldif());
    for i in 1..=USERS {
        let u = user(i);
        let uac = if u.enabled { UAC_ENABLED } else { UAC_DISABLED };
        out.push_str(&format!(
            "dn: {}\nobjectClass: user\nsAMAccountName: {}\nuserPrincipalName: {}\nmail: {}\n\
             givenName: User\nsn: {i:05}\ndisplayName: {}\nuserAccountControl: {uac}\n\n",
            u.dn, u.sam, u.upn, u.mail, u.cn
        ));
    }
    for (u, (_, _, given, sn)) in intl_users().iter().zip(INTL_USERS) {
        out.push_str(&attr("dn", &u.dn));
        out.push_str("objectClass: user\n");
        out.push_str(&attr("sAMAccountName", &u.sam));
        out.push_str(&attr("userPrincipalName", &u.upn));
        out.push_str(&attr("mail", &u.mail));
        out.push_str(&attr("givenName", given));
        out.push_str(&attr("sn", sn));
        out.push_str(&attr("displayName", &u.cn));
        out.push_str(&format!("userAccountControl: {UAC_ENABLED}\n\n"));
    }
    for g in groups() {
        out.push_str(&attr("dn", &g.dn));
        out.push_str("objectClass: group\n");
        out.push_str(&attr("sAMAccountName", &g.name));
        out.push_str(&attr(
            "description",
            &format!("{} user(s), {} group(s)", g.users.len(), g.groups.len()),
        ));
        for dn in g
            .users
            .iter()
            .map(|u| u.dn.clone())
            .chain(g.groups.iter().map(|c| group_dn(c)))
        {
            out.push_str(&attr("member", &dn));
        }
        out.push('\n');
    }
    out
}

/// The LDIF every dataset starts with: the domain's `maxPwdAge` set to "never", the OUs
/// [`PEOPLE_DN`], [`GROUPS_DN`] and [`SERVICES_DN`], and roster's bind account [`BIND_DN`] (whose
/// password the loader sets to [`BIND_PW`]).
pub fn base_ldif() -> String {
    let mut out = String::new();
    // Passwords that never expire: the template is cached for as long as its version holds.
    out.push_str(&format!(
        "dn: {BASE_DN}\nchangetype: modify\nreplace: maxPwdAge\nmaxPwdAge: -9223372036854775808\n-\n\n"
    ));
    for (dn, ou) in [
        (PEOPLE_DN, "People"),
        (GROUPS_DN, "Groups"),
        (SERVICES_DN, "Services"),
    ] {
        out.push_str(&format!(
            "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
        ));
    }
    out.push_str(&format!(
        "dn: {BIND_DN}\nobjectClass: user\nsAMAccountName: {BIND_SAM}\n\
         userPrincipalName: {BIND_UPN}\ndescription: roster's bind account\n\
         userAccountControl: {UAC_SERVICE}\n\n"
    ));
    out
}

/// A set of test data that gets a cached template of its own (see the module doc, "Other
/// datasets"). [`DEFAULT_DATASET`] is the data above, which [`Samba::start`] serves.
#[derive(Clone, Copy, Debug)]
pub struct Dataset {
    /// The cache key: the template is `samba-<name>-v<version>` in the cache directory, built
    /// under `samba-<name>.lock`. Lowercase ASCII letters and digits only (so one dataset's
    /// name can never be a prefix of another's directory); `template` is [`DEFAULT_DATASET`]'s.
    pub name: &'static str,
    /// Bump when the data changes: a cached template of another version is rebuilt.
    pub version: u32,
    /// The LDIF loaded into `sam.ldb`: it should start with [`base_ldif`] (the OUs and the bind
    /// account); records without `changetype` are adds. AD requires every `member` value to
    /// name an object added before it.
    pub ldif: fn() -> String,
    /// The `cn` of a group under [`GROUPS_DN`] whose `member` values the first start counts,
    /// as [`BIND_DN`], to prove the load.
    pub check_group: &'static str,
    /// How many `member` values [`Dataset::check_group`] must have.
    pub check_members: usize,
}

/// The data of this module's doc: what [`Samba::start`] serves.
pub const DEFAULT_DATASET: Dataset = Dataset {
    name: "template",
    version: TEMPLATE_VERSION,
    ldif: data_ldif,
    check_group: "size-5000",
    check_members: 5000,
};

impl Dataset {
    /// The template directory's name: `samba-<name>-v<version>`.
    fn dir_name(&self) -> String {
        format!("samba-{}-v{}", self.name, self.version)
    }

    /// Panics on a name that is not a valid cache key.
    fn check_name(&self) {
        let ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        assert!(
            ok,
            "samba dataset name {:?}: use lowercase ASCII letters and digits only",
            self.name
        );
    }
}

/// A running Samba AD DC; killed when dropped.
pub struct Samba {
    /// The instance: `etc/smb.conf`, `private/`, `state/`, `log/samba.log`, ….
    dir: tempfile::TempDir,
    addr: Ipv4Addr,
    child: Child,
    /// Held open: `samba -i` exits when its stdin reaches EOF, i.e. when this process dies.
    stdin: Option<ChildStdin>,
}

impl Samba {
    /// Copies the template (building it first if needed) and starts Samba on a free loopback
    /// address. Panics with a clear message (and Samba's log) when anything fails; waits at
    /// most 60 s for LDAP to answer.
    pub fn start() -> Samba {
        Samba::start_dataset(&DEFAULT_DATASET)
    }

    /// [`Samba::start`] with the data of `dataset`: its own template, built (and cached) the
    /// first time, possibly for minutes (see [`Dataset`] and the module doc).
    pub fn start_dataset(dataset: &Dataset) -> Samba {
        let template = dataset_template(dataset);
        let dir = tempfile::Builder::new()
            .prefix("roster-samba-")
            .tempdir()
            .expect("create a temporary directory for samba");
        {
            let _shared = TemplateLock::shared(dataset);
            for sub in ["private", "state", "bind-dns"] {
                copy_tree(&template.join(sub), &dir.path().join(sub));
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = free_address();
            let mut samba = spawn(dir.path(), addr);
            match wait_ready(&mut samba.0, dir.path(), addr, Duration::from_secs(60)) {
                Ok(()) => {
                    return Samba {
                        dir,
                        addr,
                        child: samba.0,
                        stdin: samba.1,
                    };
                }
                Err(log) => {
                    let _ = samba.0.kill();
                    let _ = samba.0.wait();
                    if attempt < 5 && lost_address_race(&log) {
                        continue;
                    }
                    panic!(
                        "samba did not start on {addr} (dir {}):\n{log}",
                        dir.path().display()
                    );
                }
            }
        }
    }

    /// `ldap://127.x.y.z:389`.
    pub fn url(&self) -> String {
        format!("ldap://{}:389", self.addr)
    }

    /// `ldaps://127.x.y.z:636` (Samba's self-signed certificate for `DC1.roster.test`: tests
    /// must not verify it).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:636", self.addr)
    }

    /// The loopback address this instance listens on.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// `host:389`, for a TCP client such as the AD proxy.
    pub fn socket_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr, 389)
    }

    /// The domain's naming context ([`BASE_DN`]).
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// Samba's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file Samba's output goes to (`samba -i` logs to stdout).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log/samba.log")
    }

    /// Samba's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A command for an ldap-utils tool (`ldapsearch`, …) that ignores `ldap.conf`/`.ldaprc`
    /// (`LDAPNOINIT`), so the machine's client settings cannot change a test.
    pub fn tool(&self, name: &str) -> Command {
        super::slapd::ldap_client(tool(name))
    }

    /// Applies LDIF with `ldapmodify` as [`ADMIN_DN`]: records need a `changetype:` (`add`,
    /// `modify`, `delete`, `modrdn`). Panics on any error. Remember that AD checks that every
    /// `member` value names an existing object.
    pub fn ldapmodify(&self, ldif: &str) {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = self
            .dir
            .path()
            .join(format!("modify-{}.ldif", N.fetch_add(1, Ordering::Relaxed)));
        fs::write(&path, ldif).expect("write LDIF for ldapmodify");
        let out = self
            .tool("ldapmodify")
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PW,
                "-f",
            ])
            .arg(&path)
            .output()
            .expect("run ldapmodify");
        let _ = fs::remove_file(&path);
        if !out.status.success() {
            panic!(
                "ldapmodify against samba failed ({}):\n{}{}\n--- LDIF ---\n{ldif}\n--- samba log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }

    /// Kills Samba (SIGKILL) and reaps it. Safe to call twice.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `smb.conf` of an instance in `dir` listening on `addr`: only the LDAP service, every
/// path inside `dir` (so copies of one template never share a lock, pid or socket file), and
/// simple binds allowed over plain `ldap://`.
fn smb_conf(dir: &Path, addr: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "# Written by tests/support/samba.rs\n\
         [global]\n\
         \tnetbios name = DC1\n\
         \trealm = {REALM}\n\
         \tworkgroup = {DOMAIN}\n\
         \tserver role = active directory domain controller\n\
         \tserver services = ldap\n\
         \tinterfaces = {addr}/8\n\
         \tbind interfaces only = yes\n\
         \tldap server require strong auth = no\n\
         \tidmap_ldb:use rfc2307 = yes\n\
         \tprivate dir = {d}/private\n\
         \tstate directory = {d}/state\n\
         \tbinddns dir = {d}/bind-dns\n\
         \tcache directory = {d}/cache\n\
         \tlock directory = {d}/lock\n\
         \tpid directory = {d}/run\n\
         \tncalrpc dir = {d}/run/ncalrpc\n\
         \twinbindd socket directory = {d}/run/winbindd\n\
         \tntp signd socket directory = {d}/run/ntp_signd\n\
         \tlog file = {d}/log/samba.log\n\
         \tlog level = 1\n"
    )
}

/// Writes `etc/smb.conf` for `addr` and spawns `samba -i -M single` with stdin a pipe and
/// stdout/stderr appended to `log/samba.log`.
fn spawn(dir: &Path, addr: Ipv4Addr) -> (Child, Option<ChildStdin>) {
    for sub in ["etc", "cache", "lock", "run", "log"] {
        fs::create_dir_all(dir.join(sub)).expect("create samba directories");
    }
    let conf = dir.join("etc/smb.conf");
    fs::write(&conf, smb_conf(dir, addr)).expect("write smb.conf");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log/samba.log"))
        .expect("open samba.log");
    let mut child = Command::new(tool("samba"))
        .arg("-s")
        .arg(&conf)
        .args(["-i", "-M", "single"])
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("dup samba.log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run samba: {e}"));
    let stdin = child.stdin.take();
    (child, stdin)
}

/// Waits until an anonymous rootDSE search on `addr` answers; `Err(log)` when Samba exits or
/// `limit` passes.
fn wait_ready(
    child: &mut Child,
    dir: &Path,
    addr: Ipv4Addr,
    limit: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    let url = format!("ldap://{addr}:389");
    let log = || fs::read_to_string(dir.join("log/samba.log")).unwrap_or_default();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("samba exited ({status}):\n{}", log()));
        }
        // A TCP connect first: cheaper than an ldapsearch process while nothing listens.
        let listening = std::net::TcpStream::connect_timeout(
            &SocketAddrV4::new(addr, 389).into(),
            Duration::from_millis(200),
        )
        .is_ok();
        if listening {
            let ok = super::slapd::ldap_client(tool("ldapsearch"))
                .args(["-x", "-LLL", "-o", "nettimeout=5", "-H", &url])
                .args(["-b", "", "-s", "base", "dnsHostName"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
        }
        if start.elapsed() > limit {
            return Err(format!(
                "LDAP did not answer on {url} within {limit:?}:\n{}",
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a failed start looks like another process took the address first.
fn lost_address_race(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("failed to bind")
}

/// A loopback address whose port 389 is free right now. Addresses are spread by process id
/// (second and third octets) and by a per-process counter, so parallel test binaries rarely try
/// the same one; when two do, [`Samba::start`] retries.
fn free_address() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let addr = Ipv4Addr::new(
            127,
            100 + (pid % 100) as u8,
            ((pid / 100) % 250) as u8 + ((n / 250) % 5) as u8,
            (n % 250) as u8 + 2,
        );
        match TcpListener::bind(SocketAddrV4::new(addr, 389)) {
            Ok(_) => return addr,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => panic!(
                "binding {addr}:389 is not allowed: Samba's LDAP server needs the privileged \
                 port 389, so the Samba tests must run as root (CI does)"
            ),
            Err(_) => continue,
        }
    }
    panic!("no free loopback address for samba after 1000 tries")
}

/// Copies a directory tree (files, directories, symlinks); Samba's databases are plain files.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|e| panic!("read template {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("read template directory entry");
        let kind = entry.file_type().expect("template file type");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if kind.is_symlink() {
            let target = fs::read_link(&src).expect("read template symlink");
            std::os::unix::fs::symlink(target, &dst).expect("copy template symlink");
        } else if kind.is_file() {
            fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        }
        // Sockets and fifos (none in a stopped template) are not copied.
    }
}

/// The directory that holds the template and its lock: `CARGO_TARGET_TMPDIR` (integration
/// tests and benches), else a directory in the system temp dir.
fn cache_root() -> PathBuf {
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("roster-samba-cache"))
}

/// An `flock` on `cache_root()/samba-<dataset>.lock` (`samba-template.lock` for the default
/// data): exclusive while the dataset's template is built, shared while it is copied. Released
/// when dropped (and by the kernel if the process dies). One lock per dataset, so a long build of
/// one dataset does not hold up the tests that copy another.
struct TemplateLock(File);

impl TemplateLock {
    fn open(dataset: &Dataset) -> (File, String) {
        let root = cache_root();
        fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("create the samba cache dir {}: {e}", root.display()));
        let name = format!("samba-{}.lock", dataset.name);
        let file = File::create(root.join(&name)).unwrap_or_else(|e| panic!("open {name}: {e}"));
        (file, name)
    }

    fn exclusive(dataset: &Dataset) -> TemplateLock {
        let (file, name) = Self::open(dataset);
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("lock {name}: {e}"));
        TemplateLock(file)
    }

    fn shared(dataset: &Dataset) -> TemplateLock {
        let (file, name) = Self::open(dataset);
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)
            .unwrap_or_else(|e| panic!("lock {name}: {e}"));
        TemplateLock(file)
    }
}

/// The loaded template of the default data, built if missing or stale (once per process; other
/// processes wait on the lock).
pub fn template() -> PathBuf {
    dataset_template(&DEFAULT_DATASET)
}

/// The loaded template of `dataset`, built if missing or stale (once per process and dataset;
/// other processes wait on the dataset's lock).
pub fn dataset_template(dataset: &Dataset) -> PathBuf {
    static TEMPLATES: Mutex<Vec<(&'static str, u32, PathBuf)>> = Mutex::new(Vec::new());
    dataset.check_name();
    // Held while building: a second thread asking for the same dataset waits for it.
    let mut known = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, dir)) = known
        .iter()
        .find(|(n, v, _)| *n == dataset.name && *v == dataset.version)
    {
        return dir.clone();
    }
    let dir = build_or_reuse_template(dataset);
    known.push((dataset.name, dataset.version, dir.clone()));
    dir
}

/// What makes a template valid: its dataset, version and the Samba that built it.
fn template_stamp(dataset: &Dataset) -> String {
    let out = Command::new(tool("samba"))
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("cannot run samba -V: {e}"));
    format!(
        "{} v{}\n{}",
        dataset.name,
        dataset.version,
        String::from_utf8_lossy(&out.stdout)
    )
}

fn build_or_reuse_template(dataset: &Dataset) -> PathBuf {
    check_tools();
    let root = cache_root();
    let name = dataset.dir_name();
    let dir = root.join(&name);
    let stamp = template_stamp(dataset);
    let is_ready = || fs::read_to_string(dir.join("ready")).is_ok_and(|s| s == stamp);
    {
        let _shared = TemplateLock::shared(dataset);
        if is_ready() {
            return dir;
        }
    }
    let _lock = TemplateLock::exclusive(dataset);
    if is_ready() {
        return dir;
    }
    // Old versions and half-built attempts (a test process killed mid-build) of this dataset go.
    let prefix = format!("samba-{}-v", dataset.name);
    for entry in fs::read_dir(&root)
        .expect("read the samba cache dir")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let partial = root.join(format!("{name}.partial"));
    let started = Instant::now();
    build_template(dataset, &partial);
    fs::write(partial.join("ready"), &stamp).expect("write the template stamp");
    fs::rename(&partial, &dir).expect("publish the samba template");
    eprintln!(
        "samba.rs: built the Samba template {} in {:.1?}",
        dir.display(),
        started.elapsed()
    );
    dir
}

/// Provisions the domain in `dir`, loads `dataset` offline, then starts Samba once on it.
fn build_template(dataset: &Dataset, dir: &Path) {
    let t0 = Instant::now();
    let out = Command::new(tool("samba-tool"))
        .args(["domain", "provision"])
        .arg(format!("--realm={REALM}"))
        .arg(format!("--domain={DOMAIN}"))
        .args([
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            "--host-name=dc1",
        ])
        .arg(format!("--adminpass={ADMIN_PW}"))
        .arg(format!("--targetdir={}", dir.display()))
        .args([
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run samba-tool: {e}"));
    if !out.status.success() {
        panic!(
            "samba-tool domain provision failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let t1 = Instant::now();

    // Our own smb.conf (the provisioned one points logs and pids at system directories).
    for sub in ["etc", "cache", "lock", "run", "log"] {
        fs::create_dir_all(dir.join(sub)).expect("create template directories");
    }
    let conf = dir.join("etc/smb.conf");
    fs::write(&conf, smb_conf(dir, Ipv4Addr::LOCALHOST)).expect("write the template smb.conf");
    let ldif = dir.join("data.ldif");
    fs::write(&ldif, (dataset.ldif)()).expect("write data.ldif");
    let loader = dir.join("load.py");
    fs::write(&loader, LOADER_PY).expect("write load.py");
    let out = Command::new(python())
        .arg(&loader)
        .arg(&conf)
        .arg(&ldif)
        .arg(format!("{BIND_SAM}={BIND_PW}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 for the samba loader: {e}"));
    if !out.status.success() {
        panic!(
            "loading the test data into the samba template failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = fs::remove_file(&ldif);
    let t2 = Instant::now();

    // One start: Samba makes its TLS key and certificate (so copies need not), and the data is
    // checked through LDAP as roster will see it.
    let addr = free_address();
    let (mut child, stdin) = spawn(dir, addr);
    let ready = wait_ready(&mut child, dir, addr, Duration::from_secs(120));
    let check = ready.and_then(|()| verify_template(dataset, addr));
    // A clean stop: EOF on stdin makes `samba -i` shut down.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = check {
        panic!("the new samba template in {} is broken: {e}", dir.display());
    }
    // Run-time leftovers of that start are not part of the template.
    for sub in ["cache", "lock", "run", "log"] {
        let _ = fs::remove_dir_all(dir.join(sub));
    }
    eprintln!(
        "samba.rs: provision {:.1?}, offline load {:.1?}, first start and check {:.1?}",
        t1 - t0,
        t2 - t1,
        t2.elapsed()
    );
}

/// A bind as [`BIND_DN`] that reads the members of the dataset's check group (for the default
/// data, the 5,000 of `size-5000`).
fn verify_template(dataset: &Dataset, addr: Ipv4Addr) -> Result<(), String> {
    let out = super::slapd::ldap_client(tool("ldapsearch"))
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H"])
        .arg(format!("ldap://{addr}:389"))
        .args(["-D", BIND_DN, "-w", BIND_PW, "-s", "base", "-b"])
        .arg(group_dn(dataset.check_group))
        .arg("member")
        .output()
        .map_err(|e| format!("cannot run ldapsearch: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let members = text.lines().filter(|l| l.starts_with("member:")).count();
    let (want, name) = (dataset.check_members, dataset.check_group);
    if !out.status.success() || members != want {
        return Err(format!(
            "expected {want} members of {name} as {BIND_DN}, got {members} ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Loads LDIF into a stopped DC's `sam.ldb` in one transaction, then sets passwords. Arguments:
/// `smb.conf`, the LDIF file, then `sAMAccountName=password` pairs.
const LOADER_PY: &str = r#"
import sys
import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

conf, ldif_path = sys.argv[1], sys.argv[2]
lp = LoadParm()
lp.load(conf)
# batch_mode: no ldb sub-transaction per entry (as samba's own join.py does); any error aborts
# the whole load, which is what a test harness wants anyway.
db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp,
           options=["batch_mode:1"])
with open(ldif_path, encoding="utf-8") as f:
    ldif = f.read()
db.transaction_start()
try:
    for changetype, msg in db.parse_ldif(ldif):
        if changetype == ldb.CHANGETYPE_MODIFY:
            db.modify(msg)
        else:
            db.add(msg)
    for pair in sys.argv[3:]:
        name, password = pair.split("=", 1)
        db.setpassword("(sAMAccountName=%s)" % name, password,
                       force_change_at_next_login=False)
except BaseException:
    db.transaction_cancel()
    raise
db.transaction_commit()
"#;

/// The Python that runs `samba-tool` (its `#!` line), which has the `samba` bindings.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let script = fs::read_to_string(tool("samba-tool")).unwrap_or_default();
            script
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("#!"))
                .and_then(|l| l.split_whitespace().next())
                .map(PathBuf::from)
                .filter(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
        })
        .clone()
}

/// Panics with what to install when a tool the template needs is missing.
fn check_tools() {
    for name in ["samba", "samba-tool", "ldapsearch", "ldapmodify"] {
        tool(name);
    }
    let ok = Command::new(python())
        .args(["-c", "import samba.samdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        panic!(
            "{} cannot import samba.samdb: the Samba tests need Samba's Python bindings \
             (Debian: python3-samba, which samba-ad-dc pulls in). Run scripts/test, or \
             `apt-get install samba samba-ad-dc krb5-user winbind`",
            python().display()
        );
    }
}

/// The path of `name` (PATH, then the sbin directories, which are not always on a root PATH).
fn tool(name: &str) -> PathBuf {
    super::slapd::installed(
        name,
        "the Active Directory tests need a real Samba AD DC and the OpenLDAP clients. Run \
         scripts/test (it installs them), or `apt-get install samba samba-ad-dc krb5-user \
         winbind ldap-utils` (with a /usr/sbin/policy-rc.d that exits 101, so no system Samba \
         starts)",
    )
}
