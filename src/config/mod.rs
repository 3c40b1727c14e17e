//! Configuration: `roster.toml`, read into a checked, typed [`Config`].
//!
//! Loading is the pure "validate" phase: it reads the config file and the secret files it names,
//! checks every key, path, glob and secret, and reports *every* problem at once as a
//! `file:line:col: message` [`Diagnostic`], so that `roster validate` (and a reload) can refuse a
//! broken config with precise pointers before anything touches the network. Nothing here builds a
//! client or opens a socket.
//!
//! ```toml
//! [[source]]
//! type = "toml"
//! path = "groups"                # a file, or a folder of *.toml files; relative to this file
//!
//! [[source]]
//! type = "ldap"
//! url = "ldaps://ldap.example.org"  # or a list, tried in order
//! bind_dn = "cn=roster,ou=services,dc=example,dc=org"
//! bind_password_file = "secrets/ldap"
//! base_dn = "ou=groups,dc=example,dc=org"
//!
//! [[target]]
//! name = "cms"                   # used in plans, reports and --target
//! type = "contensis"
//! url = "https://cms.example.com"
//! client_id = "roster"
//! client_secret_file = "secrets/contensis"
//! groups = ["*"]                 # managed scope; default: the desired groups only
//! membership = "authoritative"   # or "additive"
//! prune = false
//! max_deletes = 100
//! max_group_shrink = "50%"       # refuse a plan that removes more than half of a group of 10+
//! concurrency = 8
//! timeout = "30s"
//! retries = 4
//! ```
//!
//! `[[source]]` and `[[target]]` tables are dispatched on `type` by hand (see `file.rs`) so that
//! errors keep their positions; they are read with the spanned-TOML reader of [`crate::diag`]. Adding a source or target type is one match arm in [`parse`].

pub mod daemon;
pub(crate) mod file;
pub mod notify;
pub mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

/// Config errors are diagnostics: the module is reachable from here too.
pub use crate::diag;
pub use crate::diag::{Diagnostic, Severity, TextFile, locate};
pub use crate::secret::Secret;
pub use daemon::DaemonConfig;
pub use notify::NotifyConfig;
pub use state::JournalConfig;

use crate::diag::check::{DEFAULT_TIMEOUT, TargetKeys, ca_file, duration};
use crate::diag::toml::{RawTable, Reported, Resolver, backticked};
use crate::model::Origin;
use crate::plan::{MembershipMode, Share};
use crate::retry::{Rate, RateLimit};
use crate::source::ldap::LdapSourceConfig;
use crate::source::ldap::config::LdapSourceFile;
use file::{RootFile, SourceFile, TargetFile, check_globs};

/// The source types `[[source]] type = "…"` accepts.
pub const SOURCE_TYPES: &[&str] = &["toml", "ldap"];

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where the desired state comes from, in file order; at least one.
    pub sources: Vec<SourceConfig>,
    /// The systems to reconcile, in file order; names are unique.
    pub targets: Vec<TargetConfig>,
    /// The `[daemon]` table: `roster run`'s schedule and listener.
    pub daemon: Option<DaemonConfig>,
    /// Where roster keeps its state (the audit journal): `state_dir` at the top level or in
    /// `[daemon]`, else `$STATE_DIRECTORY`, else `./.roster`.
    pub state_dir: PathBuf,
    /// The `[journal]` table: how the audit journal rotates.
    pub journal: JournalConfig,
    /// The `[[notify]]` tables: where runs' refusals, failures and applies are reported.
    pub notify: Vec<NotifyConfig>,
    /// Problems that do not prevent running (a secret written in the file, say).
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// The target of this name.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// A hash (SHA-256, hex) of every target's settings, for a saved plan to tell the config it
    /// was made with. Secrets are never part of it: their values are not in the settings (only
    /// where to read them), and their `Debug` is redacted.
    pub fn settings_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for t in &self.targets {
            h.update(format!("{t:?}").as_bytes());
            h.update([0]);
        }
        crate::model::hex(&h.finalize())
    }
}

/// One `[[source]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a handful per config: boxing would buy nothing
pub enum SourceConfig {
    /// `type = "toml"`: desired-state files.
    Toml(TomlSourceConfig),
    /// `type = "ldap"`: groups read from an LDAP directory.
    Ldap(LdapSourceConfig),
}

impl SourceConfig {
    /// The `type` value that selects this source.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Toml(_) => "toml",
            SourceConfig::Ldap(_) => "ldap",
        }
    }
}

/// A `[[source]]` of `type = "toml"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TomlSourceConfig {
    /// The desired-state file, or folder of `*.toml` files, resolved against the config file's
    /// folder.
    pub path: PathBuf,
    /// Where the config names it (the `path` value), for errors about the path itself.
    pub origin: Origin,
}

/// One `[[target]]`: the keys every target has, and its connector's.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// The target's name, unique in the config.
    pub name: String,
    /// Glob patterns of the managed groups; `None`: exactly the desired groups.
    pub groups: Option<Vec<String>>,
    /// Authoritative or additive membership.
    pub membership: MembershipMode,
    /// Whether managed groups absent from the desired state are deleted.
    pub prune: bool,
    /// Removals above this refuse a plan.
    pub max_deletes: usize,
    /// A plan that removes more than this share of a group's members (groups of at least
    /// [`crate::plan::SHRINK_MIN_MEMBERS`]) is refused.
    pub max_group_shrink: Share,
    /// Calls in flight at once.
    pub concurrency: NonZeroUsize,
    /// The time limit of one call.
    pub timeout: Duration,
    /// How many times a failed call is retried (when that is safe).
    pub retries: u32,
    /// Whether an empty desired state may be applied to a target with managed groups.
    pub allow_empty_source: bool,
    /// Extra CA certificates (PEM) to trust, resolved against the config file's folder.
    pub ca_file: Option<PathBuf>,
    /// The declared quota every API call keeps to (`rate_limit`, `burst`).
    pub rate_limit: Option<RateLimit>,
    /// The connector and its settings.
    pub kind: TargetKind,
}

/// Generates, from the registry's list, the connector configs and their dispatch.
macro_rules! target_kinds {
    ($($variant:ident($field:ident, $title:literal): target::$tm:ident::{$keys:ident, $config:ident, $conn:ident}, sim::$sm:ident::{$seed:ident, $sim:ident};)*) => {
        /// The target types `[[target]] type = "…"` accepts.
        pub const TARGET_TYPES: &[&str] = &[$(stringify!($field)),*];

        /// A target's connector and its own settings.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum TargetKind {
            $(
                #[doc = concat!("`type = \"", stringify!($field), "\"`: ", $title, ".")]
                $variant(crate::target::$tm::$config),
            )*
        }

        impl TargetKind {
            /// The `type` value that selects this connector.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(TargetKind::$variant(_) => stringify!($field),)*
                }
            }

            /// The base URL of the target's API, for pointing a config at a simulator.
            pub fn url_mut(&mut self) -> &mut String {
                match self {
                    $(TargetKind::$variant(c) => &mut c.url,)*
                }
            }
        }

        /// Reads the connector keys of a `[[target]]` table of type `type_name`, or `None` for a
        /// type roster does not know.
        fn connector_of(
            type_name: &str,
            table: RawTable<'_>,
            r: &mut Resolver<'_>,
        ) -> Option<(Result<TargetFile, Reported>, Result<TargetKind, Reported>)> {
            match type_name {
                $(stringify!($field) => Some(connector::<crate::target::$tm::$keys>(table, r, TargetKind::$variant)),)*
                _ => None,
            }
        }
    };
}

crate::registry::targets!(target_kinds);

/// Everything wrong with a config: errors, and the warnings found along the way, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        diag::Lines(&self.0).fmt(f)
    }
}

/// Where roster looks for its config when none is given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["roster.toml", "/etc/roster/roster.toml"];

/// The config path to use when none is given: the first of [`DEFAULT_PATHS`] that exists;
/// `None` when none does.
pub fn default_path() -> Option<PathBuf> {
    DEFAULT_PATHS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Reads and checks the config at `path`, with the secret files it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic::error(
            path,
            0,
            0,
            format!("cannot read config: {e}"),
        )])
    })?;
    parse(&text, path)
}

/// Checks config `text` as if read from `path`: relative paths are resolved against
/// `path.parent()`, and the secret files they name are read.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let file = TextFile::new(path, text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => return Err(ConfigErrors(vec![file.toml_error(&e)])),
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let mut r = Resolver::new(file, base);
    let root = RootFile::split(root.into_inner(), &mut r);

    if !root.has_source_key {
        r.error(
            0..0,
            "no [[source]]: add one, such as [[source]] with type = \"toml\" and path = \"groups\"",
        );
    }
    if !root.has_target_key {
        r.warn(0..0, "no [[target]]: there is nothing to reconcile");
    }

    let sources: Vec<_> = root
        .sources
        .into_iter()
        .filter_map(|t| source(t, &mut r).ok())
        .collect();

    let mut targets = Vec::new();
    let mut names: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for table in root.targets {
        let Ok((name, target)) = target(table, &mut r) else {
            continue;
        };
        if let Some(first) = names.get(name.get_ref()) {
            let (line, col) = locate(text, first.start);
            r.error(
                name.span(),
                format!(
                    "duplicate target name `{}`; the first is at {}:{line}:{col}",
                    name.get_ref(),
                    path.display()
                ),
            );
            continue;
        }
        names.insert(name.get_ref().clone(), name.span());
        targets.push(target);
    }

    let mut daemon_state_dir = None;
    let daemon = root.daemon.and_then(|mut table| {
        let lease = daemon::take_lease(&mut table, &mut r);
        let daemon = table
            .read::<daemon::DaemonFile>("[daemon]", &mut r)
            .and_then(|mut d| {
                daemon_state_dir = d.state_dir.take();
                d.resolve(&mut r)
            });
        match (daemon, lease) {
            (Ok(d), Ok(lease)) => Some(DaemonConfig { lease, ..d }),
            _ => None,
        }
    });
    let state_dir = state::state_dir(root.state_dir, daemon_state_dir, &mut r);
    let journal = match root.journal {
        Some(table) => table
            .read::<state::JournalFile>("[journal]", &mut r)
            .and_then(|j| j.resolve(&mut r)),
        None => Ok(JournalConfig::default()),
    };
    let notify = notify::read_all(root.notify, &mut r);

    let failed = r.has_errors();
    let diagnostics = r.into_diagnostics();
    let (Ok(state_dir), Ok(journal), false) = (state_dir, journal, failed) else {
        return Err(ConfigErrors(diagnostics));
    };
    Ok(Config {
        path: path.to_path_buf(),
        sources,
        targets,
        daemon,
        state_dir,
        journal,
        notify,
        warnings: diagnostics,
    })
}

/// One `[[source]]` table: dispatch on `type`.
fn source(table: RawTable<'_>, r: &mut Resolver<'_>) -> Result<SourceConfig, Reported> {
    let kind = table.kind("source", SOURCE_TYPES, r)?;
    match kind.get_ref().as_str() {
        "toml" => {
            let (_, keys, _) = table.split::<SourceFile, file::TomlSourceFile>("[[source]]", r);
            let keys = keys?;
            Ok(SourceConfig::Toml(TomlSourceConfig {
                path: r.path(keys.path.get_ref()),
                origin: r.file().origin(keys.path.span()),
            }))
        }
        "ldap" => {
            let (_, keys, clean) = table.split::<SourceFile, LdapSourceFile>("[[source]]", r);
            let origin = r.file().origin(kind.span());
            Ok(SourceConfig::Ldap(keys?.resolve(origin, clean, r)?))
        }
        other => Err(unknown_type(&kind, other, "source", SOURCE_TYPES, r)),
    }
}

/// One `[[target]]` table: dispatch on `type`, then the common keys. Returns the spanned name
/// for the uniqueness check.
fn target(
    table: RawTable<'_>,
    r: &mut Resolver<'_>,
) -> Result<(Spanned<String>, TargetConfig), Reported> {
    let kind = table.kind("target", TARGET_TYPES, r)?;
    let span = table.span.clone();
    let type_name = kind.get_ref().clone();
    let Some((common, kind)) = connector_of(&type_name, table, r) else {
        return Err(unknown_type(&kind, &type_name, "target", TARGET_TYPES, r));
    };
    let common = common?;
    let name = common.name.clone();
    let config = common_keys(common, kind, span, r)?;
    Ok((name, config))
}

/// Reads a `[[target]]` table whose connector keys are `K`, and wraps the connector's config in
/// its [`TargetKind`] variant.
fn connector<K: TargetKeys>(
    table: RawTable<'_>,
    r: &mut Resolver<'_>,
    variant: fn(K::Config) -> TargetKind,
) -> (Result<TargetFile, Reported>, Result<TargetKind, Reported>) {
    let span = table.span.clone();
    let (common, keys, clean) = table.split::<TargetFile, K>("[[target]]", r);
    let kind = match keys {
        Ok(k) if clean => k.resolve(r, span).map(variant),
        Ok(_) | Err(_) => Err(Reported),
    };
    (common, kind)
}

fn unknown_type(
    kind: &Spanned<String>,
    name: &str,
    what: &str,
    known: &[&str],
    r: &mut Resolver<'_>,
) -> Reported {
    r.error(
        kind.span(),
        format!(
            "unknown {what} type `{name}`; known types: {}",
            backticked(known)
        ),
    )
}

/// Checks the keys every target has and assembles the [`TargetConfig`].
fn common_keys(
    t: TargetFile,
    kind: Result<TargetKind, Reported>,
    table: Range<usize>,
    r: &mut Resolver<'_>,
) -> Result<TargetConfig, Reported> {
    let mut ok = true;
    if t.name.get_ref().trim().is_empty() {
        r.error(t.name.span(), "target name is empty");
        ok = false;
    }
    if let Some(groups) = &t.groups {
        ok &= check_globs(groups, r);
        if groups.is_empty() {
            r.warn(
                table,
                "`groups` is empty: roster will manage no group on this target",
            );
        }
    }
    let timeout = duration(t.timeout.as_ref(), "timeout", DEFAULT_TIMEOUT, r);
    let ca_file = t.ca_file.as_ref().map(|f| ca_file(f, r)).transpose();
    if t.prune && t.membership == MembershipMode::Additive {
        r.warn(
            t.name.span(),
            "`prune = true` has no effect with `membership = \"additive\"`, which never removes \
             anything, groups included",
        );
    }
    let rate_limit = rate_limit(t.rate_limit.as_ref(), t.burst.as_ref(), r);
    let (kind, timeout, ca_file, rate_limit) = (kind?, timeout?, ca_file?, rate_limit?);
    if !ok {
        return Err(Reported);
    }
    Ok(TargetConfig {
        name: t.name.into_inner(),
        groups: t
            .groups
            .map(|g| g.into_iter().map(Spanned::into_inner).collect()),
        membership: t.membership,
        prune: t.prune,
        max_deletes: t.max_deletes,
        max_group_shrink: t.max_group_shrink,
        concurrency: t.concurrency,
        timeout,
        retries: t.retries,
        allow_empty_source: t.allow_empty_source,
        ca_file,
        rate_limit,
        kind,
    })
}

/// A target's `rate_limit` and `burst`: a rate such as `"20/s"`; `burst` only with a rate, at
/// least 1 (default 1).
fn rate_limit(
    rate: Option<&Spanned<String>>,
    burst: Option<&Spanned<u32>>,
    r: &mut Resolver<'_>,
) -> Result<Option<RateLimit>, Reported> {
    let Some(rate) = rate else {
        return match burst {
            Some(b) => Err(r.error(b.span(), "`burst` needs a `rate_limit`")),
            None => Ok(None),
        };
    };
    let parsed: Result<Rate, String> = rate.get_ref().parse();
    let rate_value = parsed.map_err(|e| r.error(rate.span(), e));
    let burst_value = match burst {
        Some(b) if *b.get_ref() == 0 => Err(r.error(b.span(), "`burst` must be at least 1")),
        Some(b) => Ok(*b.get_ref()),
        None => Ok(1),
    };
    Ok(Some(RateLimit {
        rate: rate_value?,
        burst: burst_value?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENSIS: &str =
        "url = \"https://cms.example.com\"\nclient_id = \"r\"\nclient_secret_env = \"PATH\"\n";
    const VINYLDNS: &str = "url = \"https://vinyldns.example.com\"\naccess_key_env = \"PATH\"\n\
                            secret_key_env = \"PATH\"\n";
    const CRAFTER: &str = "url = \"https://studio.example.com/studio\"\ntoken_env = \"PATH\"\n";
    const UIPATH: &str = "url = \"https://cloud.uipath.com/org\"\n\
                          partition_global_id = \"3fa85f64-5717-4562-b3fc-2c963f66afa6\"\n\
                          client_id = \"r\"\nclient_secret_env = \"PATH\"\n";

    /// Every listed target type has a match arm (so the "known types" message does not lie), and
    /// the four first targets parse with their usual keys.
    #[test]
    fn every_listed_target_type_is_dispatched() {
        for t in TARGET_TYPES {
            let keys = match *t {
                "contensis" => CONTENSIS,
                "vinyldns" => VINYLDNS,
                "crafter" => CRAFTER,
                "uipath" => UIPATH,
                // A target added later is dispatched when its table reaches its own keys' checks
                // rather than the unknown-type error.
                other => {
                    let text = format!(
                        "[[source]]\ntype = \"toml\"\npath = \"g\"\n[[target]]\nname = \"t\"\ntype = \"{other}\"\n"
                    );
                    if let Err(e) = parse(&text, Path::new("roster.toml")) {
                        assert!(
                            !e.to_string().contains("unknown target type"),
                            "{other}: {e}"
                        );
                    }
                    continue;
                }
            };
            let text = format!(
                "[[source]]\ntype = \"toml\"\npath = \"g\"\n[[target]]\nname = \"t\"\ntype = \"{t}\"\n{keys}"
            );
            let config = parse(&text, Path::new("roster.toml"));
            let config = match config {
                Ok(c) => c,
                Err(e) => panic!("{t}: {e}"),
            };
            assert_eq!(config.targets[0].kind.type_name(), *t);
        }
        for s in SOURCE_TYPES {
            let keys = match *s {
                "toml" => "path = \"g\"\n",
                "ldap" => "url = \"ldap://localhost\"\nbase_dn = \"dc=example\"\n",
                other => panic!("no test keys for source type {other}"),
            };
            let text = format!("[[source]]\ntype = \"{s}\"\n{keys}");
            let config = match parse(&text, Path::new("r.toml")) {
                Ok(c) => c,
                Err(e) => panic!("{s}: {e}"),
            };
            assert_eq!(config.sources[0].type_name(), *s);
        }
    }

    #[test]
    fn a_config_without_anything_says_what_is_missing() {
        let err = parse("", Path::new("r.toml")).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "r.toml:1:1: no [[source]]: add one, such as [[source]] with type = \"toml\" and \
                 path = \"groups\"\nr.toml:1:1: warning: no [[target]]: there is nothing to \
                 reconcile"
            )
        );
    }

    #[test]
    fn a_single_bracket_table_is_explained() {
        let err = parse("[source]\ntype = \"toml\"\n", Path::new("r.toml"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "r.toml:1:1: `source` must be a list of tables: write [[source]] sections, not [source]\n\
                 r.toml:1:1: warning: no [[target]]: there is nothing to reconcile"
            )
        );
    }
}
