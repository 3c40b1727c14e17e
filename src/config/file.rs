//! The shapes of `roster.toml` as serde reads them, and the hand-written dispatch on `type`.
//!
//! Why by hand: with serde's `tag = "type"` (or `untagged`, or `flatten`) serde buffers the whole
//! table before it knows the variant, and the toml crate can then only point at the table header
//! (`[[target]]`) instead of the misspelt key (toml-rs/toml #535, #748, #593). So the document is
//! parsed into spanned toml values ([`DeTable`]), `type` is read from each `[[source]]` and
//! `[[target]]` table, and the table is split into the keys every component of that kind has and
//! the keys of its type. Each part is then deserialized into a `deny_unknown_fields` struct through
//! its own [`Spanned<DeValue>`] deserializer, so every error keeps the position of the key or value
//! it is about.
//!
//! The document is split by [`RootFile::split`]; each table is then read with the spanned-TOML
//! reader of [`crate::diag::toml`], whose `Resolver` collects the diagnostics of one file,
//! resolves relative paths against the config file's folder and reads secrets. The keys of each
//! type live beside what uses them: a connector's in `target/<name>/config.rs` (a struct
//! implementing `TargetKeys`), the LDAP source's in `source/ldap/config.rs`.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::toml::{RawTable, Resolver, unknown_key};
use crate::plan::{MembershipMode, Share};

/// The keys every `[[target]]` table has, whatever its `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetFile {
    /// The target's name, used in plans, reports, metrics and `--target`. Must be unique.
    pub name: Spanned<String>,
    /// The connector: `contensis`, `vinyldns`, `crafter` or `uipath`. (Read by hand before this
    /// struct, to choose the connector's keys; listed here so that it is a known key.)
    #[serde(rename = "type")]
    pub _kind: serde::de::IgnoredAny,
    /// The managed scope: glob patterns over group names (`*`, `?`, `[abc]`, `{a,b}`). roster
    /// creates, changes and (with `prune`) deletes only groups whose names match. Default: exactly
    /// the groups of the desired state, so nothing else on the target is ever touched.
    pub groups: Option<Vec<Spanned<String>>>,
    /// `authoritative` (default): members and children not in the desired state are removed.
    /// `additive`: roster only adds.
    #[serde(default)]
    pub membership: MembershipMode,
    /// Whether managed groups that the desired state no longer names are deleted. Default
    /// `false`.
    #[serde(default)]
    pub prune: bool,
    /// A plan whose removals (members, children and groups) exceed this is refused, unless
    /// raised for one run with `--max-deletes`. Default 100.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
    /// A plan that removes more than this share of one group's user members is refused: `"0%"`
    /// to `"100%"`, up to two decimals. It applies to groups of at least 10 members on the
    /// target, counts the members the plan adds against those it removes, and ignores child
    /// groups and groups deleted whole (`max_deletes` limits those). `"100%"` turns it off;
    /// `--max-group-shrink` replaces it for one run. Default `"50%"`.
    #[serde(default = "default_max_group_shrink")]
    pub max_group_shrink: Share,
    /// How many API calls may be in flight at once on this target. Default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: NonZeroUsize,
    /// How long one API call may take, as a duration such as `"30s"` or `"2m"`. Default 30s.
    pub timeout: Option<Spanned<String>>,
    /// How many times a failed call is retried, when retrying is safe. Default 4.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Allow applying an empty desired state to a target whose scope holds groups (which would
    /// empty or, with `prune`, delete them). Default `false`.
    #[serde(default)]
    pub allow_empty_source: bool,
    /// A PEM file of CA certificates to trust, in addition to the system's, relative to the
    /// config file.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// The API's quota for roster, as calls per second, minute or hour (`"20/s"`, `"1200/m"`):
    /// every API call (reads too) waits its turn, so that roster never goes over it. Default:
    /// no pacing beyond `concurrency`.
    pub rate_limit: Option<Spanned<String>>,
    /// How many calls may start at once under `rate_limit` after a quiet spell. Default 1.
    pub burst: Option<Spanned<u32>>,
}

/// The default of [`TargetFile::max_deletes`].
pub(crate) const DEFAULT_MAX_DELETES: usize = 100;
/// The default of [`TargetFile::concurrency`].
pub(crate) const DEFAULT_CONCURRENCY: usize = 8;
/// The default of [`TargetFile::retries`].
pub(crate) const DEFAULT_RETRIES: u32 = 4;

fn default_max_deletes() -> usize {
    DEFAULT_MAX_DELETES
}

fn default_max_group_shrink() -> Share {
    Share::DEFAULT
}

fn default_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_CONCURRENCY).unwrap_or(NonZeroUsize::MIN)
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// The keys every `[[source]]` table has, whatever its `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceFile {
    /// The kind of source: `toml` or `ldap`. (Read by hand before this struct, to choose the
    /// source's keys; listed here so that it is a known key.)
    #[serde(rename = "type")]
    pub _kind: serde::de::IgnoredAny,
}

/// The keys of a `[[source]]` table of `type = "toml"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TomlSourceFile {
    /// A desired-state file, or a folder whose `*.toml` files are read in name order; relative to
    /// the config file.
    pub path: Spanned<PathBuf>,
}

/// The top level of `roster.toml`, split by hand so that every key is checked.
#[derive(Default)]
pub(crate) struct RootFile<'i> {
    /// The `[[source]]` tables, in file order.
    pub sources: Vec<RawTable<'i>>,
    /// The `[[target]]` tables, in file order.
    pub targets: Vec<RawTable<'i>>,
    /// The `[[notify]]` tables, in file order.
    pub notify: Vec<RawTable<'i>>,
    /// Whether the document has a `source` key at all (even a malformed one).
    pub has_source_key: bool,
    /// Whether the document has a `target` key at all (even a malformed one).
    pub has_target_key: bool,
    /// The `[daemon]` table, if any.
    pub daemon: Option<RawTable<'i>>,
    /// The `[journal]` table, if any.
    pub journal: Option<RawTable<'i>>,
    /// The top-level `state_dir`, if given (a string; anything else is reported).
    pub state_dir: Option<Spanned<String>>,
}

/// The top-level keys of `roster.toml`.
const ROOT_KEYS: &[&str] = &[
    "source",
    "target",
    "daemon",
    "journal",
    "state_dir",
    "notify",
];

impl<'i> RootFile<'i> {
    /// Splits the parsed document into its `[[source]]`, `[[target]]` and `[[notify]]` tables and
    /// its other top-level keys, recording an error for an unknown key and for a `source`,
    /// `target` or `notify` that is not an array of tables.
    pub fn split(root: DeTable<'i>, r: &mut Resolver<'_>) -> Self {
        let mut out = Self::default();
        for (key, value) in root {
            let name = key.get_ref().as_ref();
            let list = match name {
                "source" => {
                    out.has_source_key = true;
                    &mut out.sources
                }
                "target" => {
                    out.has_target_key = true;
                    &mut out.targets
                }
                "notify" => &mut out.notify,
                "daemon" | "journal" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Table(table) if name == "daemon" => {
                            out.daemon = Some(RawTable { span, table });
                        }
                        DeValue::Table(table) => out.journal = Some(RawTable { span, table }),
                        _ => {
                            r.error(
                                span,
                                format!("`{name}` must be a table: write a [{name}] section"),
                            );
                        }
                    }
                    continue;
                }
                "state_dir" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::String(s) => {
                            out.state_dir = Some(Spanned::new(span, s.into_owned()));
                        }
                        _ => {
                            r.error(span, "`state_dir` must be a string: the path of a folder");
                        }
                    }
                    continue;
                }
                _ => {
                    r.error(key.span(), unknown_key(name, "at the top level", ROOT_KEYS));
                    continue;
                }
            };
            let span = value.span();
            let sections = format!("`{name}` must be a list of tables: write [[{name}]] sections");
            match value.into_inner() {
                DeValue::Array(items) => {
                    for item in items {
                        let span = item.span();
                        match item.into_inner() {
                            DeValue::Table(table) => list.push(RawTable { span, table }),
                            _ => {
                                r.error(span, sections.clone());
                            }
                        }
                    }
                }
                DeValue::Table(_) => {
                    r.error(span, format!("{sections}, not [{name}]"));
                }
                _ => {
                    r.error(span, sections);
                }
            }
        }
        out
    }
}

/// Glob patterns as [`crate::plan::Scope`] builds them; checked here so that a bad one is an
/// error at its position in the config, not a failure at run time.
pub(crate) fn check_globs(patterns: &[Spanned<String>], r: &mut Resolver<'_>) -> bool {
    let mut ok = true;
    let mut seen = BTreeSet::new();
    for p in patterns {
        if let Err(e) = globset::GlobBuilder::new(p.get_ref())
            .literal_separator(false)
            .build()
        {
            r.error(
                p.span(),
                format!("invalid glob `{}`: {}", p.get_ref(), e.kind()),
            );
            ok = false;
        } else if !seen.insert(p.get_ref().as_str()) {
            r.warn(p.span(), format!("glob `{}` is listed twice", p.get_ref()));
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::toml::keys_of;

    #[test]
    fn keys_come_from_the_struct() {
        assert_eq!(keys_of::<SourceFile>(), ["type"]);
        assert_eq!(keys_of::<TomlSourceFile>(), ["path"]);
        let target = keys_of::<TargetFile>();
        assert_eq!(target[0], "name");
        assert!(target.contains(&"type") && target.contains(&"ca_file"));
    }
}
