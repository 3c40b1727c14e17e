//! What an intent records of where its change came from, besides the config's settings hash
//! ([`Config::settings_hash`], as a saved plan records it): each source's revision (the git
//! commit of a TOML folder kept in git; an LDAP server and its `contextCSN` when the server lets
//! roster read it).
//!
//! The commit is read from the repository's files (`HEAD`, then the branch's ref, loose or
//! packed) rather than by running git: under systemd, roster runs as a user that does not own
//! the repository, which git refuses to look into; `git rev-parse HEAD` is only the fallback for
//! a repository whose refs roster cannot read (a reftable, say). Edits not yet committed are not
//! part of the commit: the revision says what the folder was last committed as.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, SourceConfig};
use crate::source::SourceRead;

/// Where the desired state came from, and at which revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceRevision {
    /// TOML files.
    Toml {
        /// The file or folder.
        path: String,
        /// The commit checked out in the git work tree it is in, if it is in one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// An LDAP directory.
    Ldap {
        /// The server that answered.
        server: String,
        /// Its `contextCSN` (OpenLDAP) or `highestCommittedUSN` (Active Directory), when
        /// readable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_csn: Option<String>,
    },
}

/// The revision of each source, in config order, from the config and what the load read.
pub fn of_sources(config: &Config, reads: &[SourceRead]) -> Vec<SourceRevision> {
    config
        .sources
        .iter()
        .zip(reads)
        .map(|(source, read)| match (source, read) {
            (SourceConfig::Ldap(_), SourceRead::Ldap(l)) => SourceRevision::Ldap {
                server: l.server.clone(),
                context_csn: l.context_csn.clone(),
            },
            (SourceConfig::Toml(t), _) => SourceRevision::Toml {
                path: t.path.display().to_string(),
                commit: git_commit(&t.path),
            },
            (SourceConfig::Ldap(l), _) => SourceRevision::Ldap {
                server: l.urls.join(", "),
                context_csn: None,
            },
        })
        .collect()
}

/// The commit checked out in the git work tree that holds `path`, if any.
pub fn git_commit(path: &Path) -> Option<String> {
    let start = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()?.to_path_buf()
    };
    let start = fs::canonicalize(&start).ok()?;
    let dot_git = start
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    read_head(&dot_git).or_else(|| run_git(&start))
}

/// Reads `HEAD` of the repository whose `.git` is `dot_git` (a folder, or a file naming the
/// folder, as in a linked work tree or a submodule).
fn read_head(dot_git: &Path) -> Option<String> {
    let git_dir = if dot_git.is_file() {
        let text = fs::read_to_string(dot_git).ok()?;
        let target = text.trim().strip_prefix("gitdir:")?.trim();
        let base = dot_git.parent()?;
        base.join(target)
    } else {
        dot_git.to_path_buf()
    };
    // A linked work tree keeps its own HEAD, and the branches in the common folder.
    let common = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => git_dir.join(c.trim()),
        Err(_) => git_dir.clone(),
    };
    let head = fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref:") {
        None => is_object_id(head).then(|| head.to_owned()),
        Some(name) => resolve_ref(&[git_dir.clone(), common], name.trim()),
    }
}

/// The commit a ref names: its loose file, else its line in `packed-refs`.
fn resolve_ref(dirs: &[PathBuf], name: &str) -> Option<String> {
    if name.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    for dir in dirs {
        if let Ok(text) = fs::read_to_string(dir.join(name)) {
            let id = text.trim();
            return is_object_id(id).then(|| id.to_owned());
        }
    }
    for dir in dirs {
        let Ok(packed) = fs::read_to_string(dir.join("packed-refs")) else {
            continue;
        };
        let found = packed.lines().find_map(|l| {
            let (id, r) = l.split_once(' ')?;
            (r == name && is_object_id(id)).then(|| id.to_owned())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// SHA-1 or SHA-256 object id in hex.
fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn run_git(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let id = String::from_utf8(out.stdout).ok()?;
    let id = id.trim();
    (out.status.success() && is_object_id(id)).then(|| id.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join(".git/refs/heads")).unwrap();
        fs::create_dir_all(d.path().join("groups/sub")).unwrap();
        fs::write(d.path().join("groups/sub/a.toml"), "").unwrap();
        d
    }

    #[test]
    fn a_branch_is_read_loose_or_packed() {
        let d = repo();
        fs::write(d.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(
            d.path().join(".git/packed-refs"),
            format!("# pack-refs with: peeled\n{B} refs/heads/other\n{A} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(git_commit(&d.path().join("groups")), Some(A.to_owned()));
        fs::write(d.path().join(".git/refs/heads/main"), format!("{B}\n")).unwrap();
        assert_eq!(
            git_commit(&d.path().join("groups/sub/a.toml")),
            Some(B.to_owned())
        );
    }

    #[test]
    fn a_detached_head_is_its_commit() {
        let d = repo();
        fs::write(d.path().join(".git/HEAD"), format!("{A}\n")).unwrap();
        assert_eq!(git_commit(&d.path().join("groups")), Some(A.to_owned()));
    }

    #[test]
    fn a_linked_work_tree_reads_its_head_and_the_common_refs() {
        let d = repo();
        let wt_git = d.path().join(".git/worktrees/wt");
        fs::create_dir_all(&wt_git).unwrap();
        fs::write(wt_git.join("HEAD"), "ref: refs/heads/feature\n").unwrap();
        fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        fs::write(d.path().join(".git/refs/heads/feature"), format!("{A}\n")).unwrap();
        let wt = d.path().join("wt");
        fs::create_dir_all(wt.join("groups")).unwrap();
        fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        assert_eq!(git_commit(&wt.join("groups")), Some(A.to_owned()));
    }

    #[test]
    fn a_folder_outside_git_has_no_commit() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(git_commit(d.path()), None);
    }
}
