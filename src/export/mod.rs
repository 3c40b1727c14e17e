//! `roster export`: one target's groups written as desired-state TOML, in the format people write,
//! so that a team can start its files from what a target already holds.
//!
//! The target is read through its connector's `observe`, as a plan reads it: the whole state or an
//! error, never part of it, so a failed read exports nothing. The groups read are chosen
//! ([`select`]) and written ([`render`]) by pure functions; what is written is then read back with
//! the TOML source ([`crate::source::toml::parse`]) and compared with the groups chosen, so that
//! an export never writes a file roster would read differently.
//!
//! Which groups: those in the target's managed scope (its `groups` patterns, or without them the
//! groups of the desired state, which is then loaded), or with `--all` every group but the
//! target's system groups. A group an exported group names as a child is written too, since a
//! child must be a desired group: whole when roster manages it (the read is widened to take it in),
//! by name only when it is a system or external group, which roster never changes. Members the
//! desired state cannot name (robots, applications, directory groups, roster's own account) are
//! written as comments beside their group.

mod render;
#[cfg(test)]
mod tests;

pub use render::{Rendered, render};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::config::{Config, TargetConfig};
use crate::model::{Desired, Group, GroupKind, GroupName, Observed, Unmanaged};
use crate::plan::{Scope, fold};
use crate::run::{AnyTarget, policy};
use crate::source::{self, SourceError};
use crate::target::ObserveError;

/// What `roster export` is asked for.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// The target to read, by its name in the config.
    pub target: String,
    /// Every group but the target's system groups, instead of the managed scope.
    pub all: bool,
}

/// An export that failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--target` named a target the config does not have.
    #[error("no target named \"{0}\" in the config (targets: {1})")]
    UnknownTarget(String, String),
    /// The connector could not be built (an unreadable CA file, say); nothing was sent.
    #[error("target \"{target}\": cannot set up the connector: {message}")]
    Setup {
        /// The target's name.
        target: String,
        /// Why.
        message: String,
    },
    /// The desired state, which defines the managed scope of a target without `groups`
    /// patterns, could not be loaded.
    #[error(
        "the target has no `groups` patterns, so its managed scope is the desired groups, and \
         loading them failed (or pass --all):\n{0}"
    )]
    Source(SourceError),
    /// The target could not be read completely (boxed: a read error is large, and the other
    /// errors are not).
    #[error("{0}; nothing was exported")]
    Observe(Box<ObserveError>),
    /// What would be written does not read back as the groups read (a cycle of child groups,
    /// say, which the desired state cannot hold).
    #[error("the groups of \"{target}\" cannot be written as desired state: {message}")]
    Unwritable {
        /// The target's name.
        target: String,
        /// What does not read back, and why.
        message: String,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<ObserveError> for ExportError {
    fn from(e: ObserveError) -> Self {
        ExportError::Observe(Box::new(e))
    }
}

/// One target's groups as desired-state TOML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The target's name.
    pub target: String,
    /// The file name the export is written under in `--out DIR`: see [`file_name`].
    pub file_name: String,
    /// The TOML text.
    pub text: String,
    /// How many `[[group]]` tables it holds.
    pub groups: usize,
}

impl Export {
    /// Writes the export to `dir/<file_name>` (making `dir` if need be) and returns the path.
    /// The text goes to a hidden file first, renamed over the old export once whole, so that an
    /// export that fails half-way leaves the old file as it was (and the TOML source skips
    /// hidden files).
    pub fn write_to(&self, dir: &Path) -> Result<PathBuf, ExportError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExportError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(&self.file_name);
        let partial = dir.join(format!(".{}.partial", self.file_name));
        std::fs::write(&partial, &self.text).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            io(&path)(e)
        })?;
        Ok(path)
    }
}

/// The file an export of target `target` is written to: `<target>.toml`, with every character
/// a file name should not hold replaced by `_`, and no leading dot (the TOML source skips hidden
/// files).
pub fn file_name(target: &str) -> String {
    let mut name: String = target
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') || name.is_empty() {
        name.insert(0, '_');
    }
    name + ".toml"
}

/// Reads the target named in `opts` and returns its groups as desired-state TOML.
pub async fn export(config: &Config, opts: &ExportOptions) -> Result<Export, ExportError> {
    let Some(cfg) = config.target(&opts.target) else {
        let all: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        return Err(ExportError::UnknownTarget(
            opts.target.clone(),
            all.join(", "),
        ));
    };
    let target = AnyTarget::build(cfg).map_err(|e| ExportError::Setup {
        target: cfg.name.clone(),
        message: e.to_string(),
    })?;
    let ci = target.capabilities().case_insensitive_names;
    let scope = scope(config, cfg, opts.all, ci).await?;
    let selection = read(&target, &scope, opts.all, ci).await?;
    let header = Header {
        target: cfg.name.clone(),
        type_name: cfg.kind.type_name().to_owned(),
        all: opts.all,
    };
    let rendered = render(&header, &selection).map_err(|e| ExportError::Unwritable {
        target: cfg.name.clone(),
        message: e.to_string(),
    })?;
    check(&cfg.name, &rendered)?;
    Ok(Export {
        target: cfg.name.clone(),
        file_name: file_name(&cfg.name),
        groups: rendered.expected.len(),
        text: rendered.text,
    })
}

/// The groups to export: every group with `--all`; the target's `groups` patterns; or, without
/// them, the desired groups, as a plan scopes the target.
async fn scope(
    config: &Config,
    cfg: &TargetConfig,
    all: bool,
    ci: bool,
) -> Result<Scope, ExportError> {
    if all {
        // "*" with `literal_separator(false)` matches every name, slashes included.
        return Scope::new(Some(&["*".to_owned()]), &Desired::default(), ci).map_err(|e| {
            ExportError::Setup {
                target: cfg.name.clone(),
                message: e.to_string(),
            }
        });
    }
    let desired = if cfg.groups.is_some() {
        Desired::default()
    } else {
        source::load_desired(&config.sources)
            .await
            .map_err(ExportError::Source)?
    };
    Ok(policy(cfg, &desired, ci, None, None).scope)
}

/// Observes the target and selects the groups to write. When an exported group names as a
/// child a group outside `scope`, the read is made again with that group in it, until every
/// child is read: a child must be a desired group, and writing a managed group by name only
/// would empty it, should it ever come into the scope.
async fn read(
    target: &AnyTarget,
    scope: &Scope,
    all: bool,
    ci: bool,
) -> Result<Selection, ExportError> {
    let mut read_scope = scope.clone();
    let mut widened: BTreeSet<String> = BTreeSet::new();
    loop {
        let observed = target.observe(&read_scope, &BTreeSet::new()).await?;
        let selection = select(&observed, scope, all, ci);
        let others: HashMap<String, &GroupName> = observed
            .others
            .iter()
            .map(|n| (fold(n.as_str(), ci), n))
            .collect();
        // Each round adds names not added before, from a finite list: the loop ends.
        let wanted: Vec<&GroupName> = selection
            .missing
            .iter()
            .filter_map(|c| others.get(&fold(c.as_str(), ci)).copied())
            .filter(|n| widened.insert(fold(n.as_str(), ci)))
            .collect();
        if wanted.is_empty() {
            return Ok(selection);
        }
        tracing::info!(
            groups = wanted.len(),
            "exported groups name children outside the scope; reading again with them in it"
        );
        read_scope = read_scope.including(wanted);
    }
}

/// Proves that `rendered` reads back, through the TOML source, as exactly the groups it was
/// made from.
fn check(target: &str, rendered: &Rendered) -> Result<(), ExportError> {
    let unwritable = |message: String| ExportError::Unwritable {
        target: target.to_owned(),
        message,
    };
    let path = Path::new("<export>");
    let back = source::toml::parse(path, &rendered.text).map_err(|e| unwritable(e.to_string()))?;
    if back.groups == rendered.expected {
        return Ok(());
    }
    let differs = rendered
        .expected
        .keys()
        .chain(back.groups.keys())
        .find(|n| back.groups.get(*n) != rendered.expected.get(*n))
        .map_or_else(String::new, |n| format!(" (group \"{n}\")"));
    Err(unwritable(format!(
        "the file does not read back as the groups read{differs}"
    )))
}

/// The first lines of an export: which target, and which of its groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The target's name.
    pub target: String,
    /// Its `type`.
    pub type_name: String,
    /// Whether every group but the system groups was asked for (`--all`).
    pub all: bool,
}

/// Why a group is in an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A group in the export's scope that roster manages: written whole.
    Selected,
    /// A managed group outside the scope that an exported group names as a child: written
    /// whole, so that the reference holds and the group is what the target holds, should it
    /// ever come into the scope.
    Child {
        /// The exported group that names it first (in name order).
        parent: GroupName,
    },
    /// A system or external group that an exported group names as a child: written by name
    /// only, which the reference needs; roster never changes such a group.
    Reference {
        /// Which kind it is.
        kind: GroupKind,
        /// The exported group that names it first (in name order).
        parent: GroupName,
    },
}

/// One group of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The group as the target holds it.
    pub group: Group,
    /// Why it is exported.
    pub role: Role,
    /// Its members that the desired state cannot name.
    pub unmanaged: BTreeSet<Unmanaged>,
}

/// The groups an export writes, and those of its scope it leaves out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The groups to write, by name.
    pub entries: BTreeMap<GroupName, Entry>,
    /// Groups of the export's scope that roster never changes and no exported group names as a
    /// child, with their kind: they are named in a comment, not written.
    pub left_out: Vec<(GroupName, GroupKind)>,
    /// Child names that exported groups hold but that name no group read: written as comments
    /// (and the read is widened to take them in when the target lists them).
    pub missing: BTreeSet<GroupName>,
    /// The entry each child name an exported group holds stands for, by the name folded as the
    /// target compares names.
    resolved: BTreeMap<String, GroupName>,
    /// Whether the target compares names without regard to case.
    ci: bool,
}

impl Selection {
    /// The entry a child name of an exported group stands for, if it is exported.
    pub fn child(&self, name: &GroupName) -> Option<&GroupName> {
        self.resolved.get(&fold(name.as_str(), self.ci))
    }
}

/// Chooses the groups of `observed` to write: the managed groups in `scope` (or every group with
/// `all`), then, breadth first in name order, the groups they name as children. Pure.
pub fn select(observed: &Observed, scope: &Scope, all: bool, ci: bool) -> Selection {
    let by_key: HashMap<String, &GroupName> = observed
        .groups
        .keys()
        .map(|n| (fold(n.as_str(), ci), n))
        .collect();
    let lookup = |name: &GroupName| {
        observed
            .groups
            .get_key_value(name)
            .map(|(k, _)| k)
            .or_else(|| by_key.get(&fold(name.as_str(), ci)).copied())
    };
    let wanted = |name: &GroupName| all || scope.contains(name);
    let mut sel = Selection {
        ci,
        ..Selection::default()
    };
    let mut queue: VecDeque<GroupName> = VecDeque::new();
    let entry = |name: &GroupName, role: Role| Entry {
        group: observed.groups[name].group.clone(),
        role,
        unmanaged: observed.unmanaged.get(name).cloned().unwrap_or_default(),
    };
    for (name, og) in &observed.groups {
        if og.kind == GroupKind::Managed && wanted(name) {
            sel.entries
                .insert(name.clone(), entry(name, Role::Selected));
            queue.push_back(name.clone());
        }
    }
    while let Some(parent) = queue.pop_front() {
        for child in &observed.groups[&parent].group.children {
            let Some(found) = lookup(child) else {
                sel.missing.insert(child.clone());
                continue;
            };
            sel.resolved.insert(fold(child.as_str(), ci), found.clone());
            if sel.entries.contains_key(found) {
                continue;
            }
            let kind = observed.groups[found].kind;
            let role = match kind {
                GroupKind::Managed => {
                    queue.push_back(found.clone());
                    Role::Child {
                        parent: parent.clone(),
                    }
                }
                GroupKind::System | GroupKind::External => Role::Reference {
                    kind,
                    parent: parent.clone(),
                },
            };
            sel.entries.insert(found.clone(), entry(found, role));
        }
    }
    sel.left_out = observed
        .groups
        .iter()
        .filter(|(name, og)| {
            og.kind != GroupKind::Managed && wanted(name) && !sel.entries.contains_key(*name)
        })
        .map(|(name, og)| (name.clone(), og.kind))
        .collect();
    sel
}
