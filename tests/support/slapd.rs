//! A real, throwaway OpenLDAP `slapd` for tests (a Rust port of `slapd-test.sh`).
//!
//! [`Slapd::start`] builds a private instance in a temporary directory: a test CA and a server
//! certificate (for StartTLS and LDAPS), a `cn=config` with one `mdb` database for
//! `dc=example,dc=org`, the data of [`SlapdOptions::ldif`] loaded offline with `slapadd -q`, then
//! `slapd` in the foreground on two free loopback ports. Every instance has its own directory and
//! ports, so tests may run in parallel. Dropping the [`Slapd`] kills the server (SIGKILL: the
//! data is thrown away anyway) and removes the directory.
//!
//! Needs `slapd`, `slapadd`, `ldap-utils` and `openssl` (`scripts/test` installs them); a missing
//! tool is a panic that says so, never a skipped test.
//!
//! Uses the sibling module `ldif` (declare both: `mod ldif; mod slapd;`).

#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The suffix of the test database.
pub const BASE_DN: &str = super::ldif::BASE_DN;
/// roster's bind account (an ordinary user, so size limits apply to it).
pub const BIND_DN: &str = super::ldif::BIND_DN;
/// The password of [`BIND_DN`].
pub const BIND_PW: &str = super::ldif::BIND_PW;
/// The database's root DN: ignores access rules and size limits.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
/// The password of [`ADMIN_DN`] and of [`CONFIG_ADMIN_DN`].
pub const ADMIN_PW: &str = "admin-secret";
/// The root DN of `cn=config`, for live configuration changes.
pub const CONFIG_ADMIN_DN: &str = "cn=admin,cn=config";
/// The DN of the `mdb` database in `cn=config` (where `olcLimits` lives).
pub const DATABASE_CONFIG_DN: &str = "olcDatabase={1}mdb,cn=config";

/// How a [`Slapd`] is set up.
#[derive(Clone, Debug)]
pub struct SlapdOptions {
    /// The data, loaded with `slapadd -q` before the server starts (fast: no overlays run).
    /// With [`memberof`](Self::memberof) it is instead added through the protocol (`ldapadd`)
    /// once the server runs, because only then does the overlay fill `memberOf`.
    /// Default: [`ldif::base()`](super::ldif::base) (base entry, OUs, bind account).
    pub ldif: String,
    /// `true` (default): `olcLimits: users size.soft=N size.hard=N size.prtotal=unlimited`, so a
    /// paged search by a bound user reads everything. `false`: no `size.prtotal`, so a paged
    /// search also stops after N entries with result code 4 (sizeLimitExceeded) — a ready-made
    /// partial read.
    pub prtotal_unlimited: bool,
    /// N above: the size limit (frontend `olcSizeLimit` and the `users` limits). Default 500;
    /// 0 means unlimited.
    pub size_limit: u32,
    /// Configure the `memberof` overlay (`groupOfNames`/`member` → `memberOf`). Default false.
    pub memberof: bool,
    /// More schemas to load after core, cosine, inetorgperson and nis: a name in the system
    /// schema directory (`"misc"`, `"dyngroup"`) or a path to an `.ldif` schema.
    pub extra_schemas: Vec<String>,
    /// Configure the `syncprov` overlay on the database (`moduleload syncprov`, `overlay
    /// syncprov`, `index entryCSN,entryUUID eq`): the server then offers RFC 4533 persistent
    /// searches, lists the Sync Request control in its rootDSE and keeps `contextCSN` current.
    /// Default false.
    pub syncprov: bool,
    /// Make this server a read-only syncrepl consumer (`refreshAndPersist`, as the root DN) of
    /// the provider at this URL, which needs [`syncprov`](Self::syncprov). Its data then comes
    /// from the provider: leave [`ldif`](Self::ldif) empty. A consumer without `syncprov` keeps
    /// `contextCSN` current yet offers no persistent search. Default none.
    pub consumer_of: Option<String>,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        SlapdOptions {
            ldif: super::ldif::base(),
            prtotal_unlimited: true,
            size_limit: 500,
            memberof: false,
            extra_schemas: Vec::new(),
            syncprov: false,
            consumer_of: None,
        }
    }
}

impl SlapdOptions {
    /// The defaults with this data.
    pub fn with_ldif(ldif: impl Into<String>) -> Self {
        SlapdOptions {
            ldif: ldif.into(),
            ..SlapdOptions::default()
        }
    }

    /// The `olcLimits` value these options configure.
    pub fn olc_limits(&self) -> String {
        let n = limit_value(self.size_limit);
        if self.prtotal_unlimited {
            format!("users size.soft={n} size.hard={n} size.prtotal=unlimited")
        } else {
            format!("users size.soft={n} size.hard={n}")
        }
    }
}

fn limit_value(n: u32) -> String {
    if n == 0 {
        "unlimited".to_owned()
    } else {
        n.to_string()
    }
}

/// A running `slapd`; killed when dropped.
pub struct Slapd {
    /// The plain LDAP port (also StartTLS) on 127.0.0.1.
    pub port: u16,
    /// The LDAPS port on 127.0.0.1.
    pub ldaps_port: u16,
    /// Everything of this instance: `slapd.d/`, `data/`, `tls/`, `slapd.log`.
    pub dir: tempfile::TempDir,
    /// The CA that signed the server certificate (PEM): trust it to connect with TLS.
    pub ca_file: PathBuf,
    child: Child,
}

impl Slapd {
    /// Builds and starts an instance. Panics with a clear message (and slapd's log) when
    /// anything fails; waits at most 10 s for the server to answer.
    pub fn start(opts: SlapdOptions) -> Slapd {
        // Fail early and clearly when a tool is missing.
        for name in ["slapd", "slapadd", "ldapsearch", "ldapmodify", "openssl"] {
            tool(name);
        }
        let dir = tempfile::Builder::new()
            .prefix("roster-slapd-")
            .tempdir()
            .expect("create a temporary directory for slapd");
        let root = dir.path().to_path_buf();
        for sub in ["slapd.d", "data", "tls"] {
            fs::create_dir(root.join(sub)).expect("create slapd directories");
        }
        let tls = write_tls_files(&root.join("tls"));

        let config = config_ldif(&root, &tls, &opts);
        let config_path = root.join("config.ldif");
        fs::write(&config_path, config).expect("write config.ldif");
        run_checked(
            Command::new(tool("slapadd"))
                .arg("-n0")
                .arg("-F")
                .arg(root.join("slapd.d"))
                .arg("-l")
                .arg(&config_path),
            "slapadd -n0 (loading cn=config)",
        );

        let data_path = root.join("data.ldif");
        fs::write(&data_path, &opts.ldif).expect("write data.ldif");
        if !opts.memberof && !opts.ldif.trim().is_empty() {
            run_checked(
                Command::new(tool("slapadd"))
                    .arg("-q")
                    .arg("-F")
                    .arg(root.join("slapd.d"))
                    .arg("-b")
                    .arg(BASE_DN)
                    .arg("-l")
                    .arg(&data_path),
                "slapadd -q (loading the test data)",
            );
        }

        // Free ports are picked by binding port 0 and letting go, so another process can take
        // one before slapd binds it: start again with new ports when that happens.
        let mut attempt = 0;
        let (port, ldaps_port, child) = loop {
            attempt += 1;
            let (port, ldaps_port) = free_ports();
            match spawn_and_wait(&root, port, ldaps_port) {
                Ok(child) => break (port, ldaps_port, child),
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "slapd did not start (ports {port}/{ldaps_port}, dir {}):\n{log}",
                    root.display()
                ),
            }
        };

        let slapd = Slapd {
            port,
            ldaps_port,
            ca_file: tls.ca_crt,
            dir,
            child,
        };
        if opts.memberof && !opts.ldif.trim().is_empty() {
            slapd.ldapadd(&opts.ldif);
        }
        slapd
    }

    /// Starts an instance with the default options and this data.
    pub fn with_ldif(ldif: impl Into<String>) -> Slapd {
        Slapd::start(SlapdOptions::with_ldif(ldif))
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://localhost:LDAPS_PORT` (`localhost`, so the certificate's name matches).
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.ldaps_port)
    }

    /// `ldap://localhost:PORT`, for StartTLS (`localhost`, so the certificate's name matches).
    pub fn starttls_url(&self) -> String {
        format!("ldap://localhost:{}", self.port)
    }

    /// slapd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file slapd's output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// slapd's output so far: its version banner and any errors (it runs with `-d none`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A command for an ldap-utils tool (`ldapsearch`, …) that ignores `ldap.conf`/`.ldaprc`
    /// (`LDAPNOINIT`), so the machine's client settings cannot change a test. `LDAPNOINIT` also
    /// makes libldap ignore `LDAPTLS_*` variables: use [`tls_tool`](Self::tls_tool) for TLS.
    pub fn tool(&self, name: &str) -> Command {
        ldap_client(tool(name))
    }

    /// A command for an ldap-utils tool that trusts only `ca` and requires a valid server
    /// certificate (`LDAPTLS_CACERT`, `LDAPTLS_REQCERT=demand`; these variables override
    /// `ldap.conf`). Add `-ZZ -H` [`starttls_url`](Self::starttls_url) or `-H`
    /// [`ldaps_url`](Self::ldaps_url).
    pub fn tls_tool(&self, name: &str, ca: &Path) -> Command {
        let mut cmd = Command::new(tool(name));
        cmd.env_remove("LDAPNOINIT")
            .env("LDAPTLS_CACERT", ca)
            .env("LDAPTLS_REQCERT", "demand");
        cmd
    }

    /// Applies LDIF with `ldapmodify` as the root DN ([`ADMIN_DN`]): records need a
    /// `changetype:` (`add`, `modify`, `delete`, `modrdn`). Panics on any error.
    pub fn ldapmodify(&self, ldif: &str) {
        self.modify(ldif, false, ADMIN_DN, "ldapmodify");
    }

    /// Adds entries (plain LDIF, no `changetype:` needed) through the protocol as the root DN,
    /// so overlays such as memberof see them. Panics on any error.
    pub fn ldapadd(&self, ldif: &str) {
        self.modify(ldif, true, ADMIN_DN, "ldapadd");
    }

    /// Replaces `olcLimits` of the database live, through `cn=config` (one limit per line,
    /// e.g. `users size.soft=500 size.hard=500`; empty removes all limits). Takes effect for
    /// the next operation.
    pub fn set_limits(&self, olc_limits: &str) {
        let mut ldif =
            format!("dn: {DATABASE_CONFIG_DN}\nchangetype: modify\nreplace: olcLimits\n");
        for line in olc_limits.lines().map(str::trim).filter(|l| !l.is_empty()) {
            ldif.push_str(&super::ldif::attr("olcLimits", line));
        }
        ldif.push_str("-\n");
        self.modify(
            &ldif,
            false,
            CONFIG_ADMIN_DN,
            "set_limits (ldapmodify on cn=config)",
        );
    }

    /// Starts slapd again on the same ports and data, after [`stop`](Self::stop) (or a crash):
    /// for tests of clients that must reconnect. Panics when it does not answer within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let root = self.dir.path().to_path_buf();
        // The listening sockets of the killed process are gone at once (SO_REUSEADDR), but
        // retry briefly in case the kernel still holds them.
        let mut attempt = 0;
        self.child = loop {
            attempt += 1;
            match spawn_and_wait(&root, self.port, self.ldaps_port) {
                Ok(child) => break child,
                Err(log) if attempt < 20 && log.contains("Address already in use") => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(log) => panic!("slapd did not restart (port {}):\n{log}", self.port),
            }
        };
    }

    /// Kills slapd (SIGKILL) and reaps it. Safe to call twice.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn modify(&self, ldif: &str, add: bool, bind_dn: &str, what: &str) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = self
            .dir
            .path()
            .join(format!("modify-{}.ldif", N.fetch_add(1, Ordering::Relaxed)));
        fs::write(&path, ldif).expect("write LDIF for ldapmodify");
        let mut cmd = self.tool("ldapmodify");
        cmd.args(["-x", "-H", &self.url(), "-D", bind_dn, "-w", ADMIN_PW, "-f"])
            .arg(&path);
        if add {
            cmd.arg("-a");
        }
        let out = cmd.output().expect("run ldapmodify");
        let _ = fs::remove_file(&path);
        if !out.status.success() {
            panic!(
                "{what} failed ({}):\n{}{}\n--- LDIF ---\n{ldif}\n--- slapd log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a second, unrelated CA certificate into `dir` and returns its path: a CA that did
/// not sign the server certificate (with the same subject name as the real one, so only the
/// signature tells them apart), for tests that TLS fails closed.
pub fn other_ca(dir: &Path) -> PathBuf {
    static OTHER: OnceLock<Vec<String>> = OnceLock::new();
    let pem = OTHER.get_or_init(|| cached_files("other-ca", &["ca.crt"], make_ca));
    let path = dir.join("other-ca.crt");
    fs::write(&path, &pem[0]).expect("write the other CA");
    path
}

/// The TLS files of one instance.
struct TlsPaths {
    ca_crt: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
}

/// Writes `ca.crt`, `ca.key`, `server.crt`, `server.key` into `dir`: the same for every instance
/// (see [`cached_files`]).
fn write_tls_files(dir: &Path) -> TlsPaths {
    const FILES: [&str; 4] = ["ca.crt", "ca.key", "server.crt", "server.key"];
    static PEM: OnceLock<Vec<String>> = OnceLock::new();
    let pem = PEM.get_or_init(|| {
        let host = hostname().unwrap_or_default();
        cached_files(&format!("server-{host}"), &FILES, generate_tls)
    });
    let mut paths = FILES.iter().zip(pem).map(|(name, text)| {
        let path = dir.join(name);
        fs::write(&path, text).expect("write TLS file");
        #[cfg(unix)]
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod key");
        }
        path
    });
    let mut next = || paths.next().expect("four TLS files");
    let ca_crt = next();
    let _ca_key = next();
    TlsPaths {
        ca_crt,
        server_crt: next(),
        server_key: next(),
    }
}

/// The contents of `files` made by `generate(dir)`. Generating RSA keys takes 0.1–1.5 s (far
/// more than starting slapd), so the result is kept in memory for the process and, for
/// integration tests and benches, in `CARGO_TARGET_TMPDIR/roster-slapd-tls/NAME` for later runs
/// (regenerated after 7 days; the certificates are valid for 30).
fn cached_files(name: &str, files: &[&str], generate: fn(&Path)) -> Vec<String> {
    let read_all = |dir: &Path| -> Option<Vec<String>> {
        files
            .iter()
            .map(|f| {
                fs::read_to_string(dir.join(f))
                    .ok()
                    .filter(|t| !t.is_empty())
            })
            .collect()
    };
    let Some(base) =
        option_env!("CARGO_TARGET_TMPDIR").map(|d| Path::new(d).join("roster-slapd-tls"))
    else {
        let tmp = tempfile::tempdir().expect("temporary directory for openssl");
        generate(tmp.path());
        return read_all(tmp.path()).expect("read generated TLS files");
    };
    let target = base.join(name);
    let fresh = |dir: &Path| {
        fs::metadata(dir.join("done"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(7 * 24 * 3600))
    };
    if fresh(&target) {
        if let Some(texts) = read_all(&target) {
            return texts;
        }
    }
    fs::create_dir_all(&base).expect("create the TLS cache directory");
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&base)
        .expect("temporary directory for openssl");
    generate(tmp.path());
    fs::write(tmp.path().join("done"), "").expect("write TLS cache marker");
    let texts = read_all(tmp.path()).expect("read generated TLS files");
    // Publish atomically; when another process got there first, or a stale copy is in the way,
    // replace it once and otherwise keep ours in memory only.
    let tmp = tmp.keep();
    if fs::rename(&tmp, &target).is_err() {
        let _ = fs::remove_dir_all(&target);
        if fs::rename(&tmp, &target).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    texts
}

/// `openssl req -x509`: a self-signed CA (`ca.key`, `ca.crt`) in `dir`.
fn make_ca(dir: &Path) {
    run_checked(
        Command::new(tool("openssl"))
            .current_dir(dir)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args([
                "-subj",
                "/CN=roster test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl req (test CA)",
    );
}

/// A CA plus a leaf signed by it, in `dir`. rustls rejects a self-signed `CA:TRUE` certificate
/// used as the server's (`CaUsedAsEndEntity`), hence two levels. The leaf names `localhost`,
/// this machine's hostname (libldap checks `localhost` against it) and 127.0.0.1.
fn generate_tls(dir: &Path) {
    make_ca(dir);
    run_checked(
        Command::new(tool("openssl"))
            .current_dir(dir)
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .args(["-keyout", "server.key", "-out", "server.csr"]),
        "openssl req (server key)",
    );
    let mut san = "subjectAltName=DNS:localhost".to_owned();
    if let Some(host) = hostname().filter(|h| h != "localhost") {
        san.push_str(&format!(",DNS:{host}"));
    }
    san.push_str(",IP:127.0.0.1");
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n{san}\n"
    );
    fs::write(dir.join("ext.cnf"), ext).expect("write ext.cnf");
    run_checked(
        Command::new(tool("openssl"))
            .current_dir(dir)
            .args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ])
            .args(["-CAcreateserial", "-days", "30", "-extfile", "ext.cnf"])
            .args(["-out", "server.crt"]),
        "openssl x509 (server certificate)",
    );
}

/// This machine's hostname when it is a plain DNS name.
fn hostname() -> Option<String> {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| {
            Command::new("hostname")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })?;
    let host = raw.trim();
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    plain.then(|| host.to_owned())
}

/// The first of `dirs` that exists with one of `files` in it.
fn first_dir_with(dirs: &[&str], files: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .map(PathBuf::from)
        .find(|d| files.iter().any(|f| d.join(f).exists()))
}

/// Where slapd's loadable modules are (`None`: built into slapd).
fn module_dir() -> Option<PathBuf> {
    first_dir_with(
        &[
            "/usr/lib/ldap",
            "/usr/lib64/openldap",
            "/usr/lib/openldap",
            "/usr/libexec/openldap",
            "/usr/local/libexec/openldap",
        ],
        &["back_mdb.la", "back_mdb.so"],
    )
}

/// Where the system's LDIF schemas are.
fn schema_dir() -> PathBuf {
    first_dir_with(
        &[
            "/etc/ldap/schema",
            "/etc/openldap/schema",
            "/usr/local/etc/openldap/schema",
        ],
        &["core.ldif"],
    )
    .unwrap_or_else(|| {
        panic!("OpenLDAP's schema files (core.ldif) are missing: run scripts/test to install slapd")
    })
}

/// The `cn=config` LDIF of an instance rooted at `root`.
fn config_ldif(root: &Path, tls: &TlsPaths, opts: &SlapdOptions) -> String {
    let r = root.display();
    let size = limit_value(opts.size_limit);
    let mut out = format!(
        "dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {r}/slapd.pid\n\
         olcArgsFile: {r}/slapd.args\nolcLogLevel: none\nolcTLSCACertificateFile: {}\n\
         olcTLSCertificateFile: {}\nolcTLSCertificateKeyFile: {}\nolcTLSProtocolMin: 3.3\n\n",
        tls.ca_crt.display(),
        tls.server_crt.display(),
        tls.server_key.display()
    );
    if let Some(modules) = module_dir() {
        out.push_str(&format!(
            "dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
             olcModulePath: {}\nolcModuleLoad: back_mdb\n",
            modules.display()
        ));
        if opts.memberof {
            out.push_str("olcModuleLoad: memberof\n");
        }
        if opts.syncprov {
            out.push_str("olcModuleLoad: syncprov\n");
        }
        out.push('\n');
    }
    out.push_str("dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n");
    let schemas = schema_dir();
    let mut includes: Vec<PathBuf> = ["core", "cosine", "inetorgperson", "nis"]
        .iter()
        .map(|s| schemas.join(format!("{s}.ldif")))
        .collect();
    for extra in &opts.extra_schemas {
        includes.push(if extra.contains('/') {
            PathBuf::from(extra)
        } else {
            schemas.join(format!("{extra}.ldif"))
        });
    }
    for inc in includes {
        out.push_str(&format!("include: file://{}\n", inc.display()));
    }
    out.push_str(&format!(
        "\ndn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
         objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\nolcSizeLimit: {size}\n\n\
         dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
         olcDatabase: {{0}}config\nolcRootDN: {CONFIG_ADMIN_DN}\nolcRootPW: {ADMIN_PW}\n\n\
         dn: {DATABASE_CONFIG_DN}\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n\
         olcDatabase: {{1}}mdb\nolcSuffix: {BASE_DN}\nolcDbDirectory: {r}/data\n\
         olcDbMaxSize: 1073741824\nolcDbNoSync: TRUE\nolcRootDN: {ADMIN_DN}\nolcRootPW: {ADMIN_PW}\n\
         olcDbIndex: objectClass eq\nolcDbIndex: cn,uid eq\nolcDbIndex: member,uniqueMember eq\n\
         olcDbIndex: memberUid eq\nolcLimits: {}\n\
         olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none\n\
         olcAccess: {{1}}to * by users read by * none\n",
        opts.olc_limits()
    ));
    if opts.syncprov || opts.consumer_of.is_some() {
        // What syncprov and syncrepl look entries up by.
        out.push_str("olcDbIndex: entryCSN,entryUUID eq\n");
    }
    if let Some(provider) = &opts.consumer_of {
        out.push_str(&format!(
            "olcSyncrepl: rid=001 provider={provider} bindmethod=simple binddn=\"{ADMIN_DN}\" \
             credentials={ADMIN_PW} searchbase=\"{BASE_DN}\" type=refreshAndPersist \
             retry=\"1 +\" timeout=1\n"
        ));
    }
    if opts.memberof {
        // Maintained by ldapadd/ldapmodify only: slapadd does not run overlays.
        out.push_str(&format!(
            "\ndn: olcOverlay={{0}}memberof,{DATABASE_CONFIG_DN}\nobjectClass: olcOverlayConfig\n\
             objectClass: olcMemberOf\nolcOverlay: {{0}}memberof\nolcMemberOfRefInt: TRUE\n\
             olcMemberOfGroupOC: groupOfNames\nolcMemberOfMemberAD: member\n\
             olcMemberOfMemberOfAD: memberOf\n"
        ));
    }
    if opts.syncprov {
        let n = usize::from(opts.memberof);
        out.push_str(&format!(
            "\ndn: olcOverlay={{{n}}}syncprov,{DATABASE_CONFIG_DN}\nobjectClass: olcOverlayConfig\n\
             objectClass: olcSyncProvConfig\nolcOverlay: {{{n}}}syncprov\n"
        ));
    }
    out
}

/// Two distinct free TCP ports on 127.0.0.1 (both held until both are chosen).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// Starts slapd on these ports and waits until it answers a search. On failure the process is
/// gone and the error is its log.
fn spawn_and_wait(root: &Path, port: u16, ldaps_port: u16) -> Result<Child, String> {
    let (slapd, ldapsearch) = (tool("slapd"), tool("ldapsearch"));
    let log_path = root.join("slapd.log");
    let log = fs::File::create(&log_path).expect("create slapd.log");
    // -d: stay in the foreground (no fork), so the child is slapd itself. `none` rather than
    // the recipe's `0`: `-d 0` prints nothing at all, `none` prints only errors (such as
    // "bind(6) failed errno=98 (Address already in use)"), never per-operation logs.
    let mut child = Command::new(&slapd)
        .arg("-F")
        .arg(root.join("slapd.d"))
        .arg("-h")
        .arg(format!(
            "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"
        ))
        .args(["-d", "none"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run slapd ({}): {e}", slapd.display()));
    let read_log = || fs::read_to_string(&log_path).unwrap_or_default();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // slapd writes its pid file only after its listeners are bound and its databases opened:
    // proof that whatever answers on the port is this slapd, not another process.
    let pid_file = root.join("slapd.pid");
    let pid = child.id().to_string();
    let wrote_pid = || fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("poll slapd") {
            return Err(format!(
                "slapd exited with {status}; its log:\n{}",
                read_log()
            ));
        }
        if wrote_pid() && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // nettimeout bounds only the connect: a listener that never answers (another
            // process on the port) must not hang the test, so the search has a deadline too.
            let answered = finishes_ok_within(
                Command::new(&ldapsearch)
                    .env("LDAPNOINIT", "1")
                    .args(["-x", "-o", "nettimeout=2", "-H"])
                    .arg(format!("ldap://127.0.0.1:{port}"))
                    .args(["-s", "base", "-b", "", "namingContexts"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
                Duration::from_secs(2),
            );
            if answered {
                return Ok(child);
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "slapd did not answer on port {port} within 10 s; its log:\n{}",
                read_log()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` and reports whether it succeeded within `limit` (it is killed otherwise).
fn finishes_ok_within(cmd: &mut Command, limit: Duration) -> bool {
    let mut child = cmd.spawn().expect("run ldapsearch");
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().expect("poll ldapsearch") {
            Some(status) => return status.success(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// The path of an OpenLDAP/openssl tool: from `PATH`, else the sbin directories (not on a
/// non-root user's `PATH` on Debian). Panics when missing.
fn tool(name: &str) -> PathBuf {
    installed(
        name,
        "the LDAP tests need a real OpenLDAP server. Run scripts/test (it installs slapd, \
         ldap-utils and openssl), or `apt-get install slapd ldap-utils openssl`",
    )
}

/// Where the installed tool `name` is: on `PATH`, or in the `sbin` directories a non-root `PATH`
/// lacks. A missing tool is a panic that says why it is needed and how to install it (`why`),
/// never a skipped test. Shared by the test servers (`slapd` here, Samba in `samba.rs`).
pub fn installed(name: &str, why: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: {why}"))
}

/// A command for the ldap-utils tool at `path` (`ldapsearch`, …) that ignores
/// `ldap.conf`/`.ldaprc` (`LDAPNOINIT`), so the machine's client settings cannot change a test.
pub fn ldap_client(path: PathBuf) -> Command {
    let mut cmd = Command::new(path);
    cmd.env("LDAPNOINIT", "1");
    cmd
}

/// Runs `cmd`; panics with its output when it fails.
fn run_checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// An LDAP source config for `url` that binds as roster's account and reads the generated
/// directory's groups, mapping member DNs to `uid`s: what the LDAP tests and the bench start from.
pub fn source_config(url: &str) -> roster::source::ldap::LdapSourceConfig {
    use roster::source::ldap::{LdapScope, LdapSourceConfig, MemberKind};
    LdapSourceConfig {
        urls: vec![url.to_owned()],
        starttls: false,
        ca_file: None,
        bind_dn: Some(BIND_DN.to_owned()),
        bind_password: Some(roster::secret::Secret::new(BIND_PW)),
        base_dn: super::ldif::GROUPS_DN.to_owned(),
        scope: LdapScope::Sub,
        directory: roster::source::ldap::Directory::Auto,
        group_filter: Some("(objectClass=groupOfNames)".to_owned()),
        name_attr: "cn".to_owned(),
        description_attr: "description".to_owned(),
        member_attr: "member".to_owned(),
        member_kind: MemberKind::Dn,
        user_base_dn: Some(super::ldif::PEOPLE_DN.to_owned()),
        user_filter: Some("(objectClass=inetOrgPerson)".to_owned()),
        user_key_attr: Some("uid".to_owned()),
        range_size: 1000,
        exclude_disabled: false,
        attributes: Vec::new(),
        nested: true,
        page_size: 100,
        timeout: Duration::from_secs(10),
        origin: roster::model::Origin::Ldap {
            dn: "test".to_owned(),
        },
    }
}
