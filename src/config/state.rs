//! Where roster keeps its state, and how its audit journal rotates: the `state_dir` key (at the
//! top level of `roster.toml`, or in `[daemon]`) and the `[journal]` table.
//!
//! ```toml
//! state_dir = "/var/lib/roster"  # default: $STATE_DIRECTORY (systemd's StateDirectory=), else ./.roster
//!
//! [journal]
//! max_file_size = "16MiB"        # a journal file that would grow past this starts the next one
//! max_files = 8                  # files kept, the one being written included; older ones go
//! ```
//!
//! `state_dir` may be written at the top level or in `[daemon]`, not both: one config has one
//! journal, whichever command writes it (`roster apply` and `roster run` alike). A relative path
//! is relative to the config file, as every path in it is; the default `./.roster` is relative to
//! the folder roster runs in.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diag::toml::{Reported, Resolver};

/// The default of [`JournalConfig::max_file_size`]: 16 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The default of [`JournalConfig::max_files`].
pub const DEFAULT_MAX_FILES: usize = 8;

/// The smallest `max_file_size`: a file must hold a few lines, or it rotates at every one.
pub const MIN_FILE_SIZE: u64 = 4 * 1024;

/// The state folder when the config names none: systemd's, else `.roster` in the current folder.
pub const LOCAL_STATE_DIR: &str = ".roster";

/// How the audit journal rotates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// A file that a line would take past this many bytes is closed, and the next one started.
    pub max_file_size: u64,
    /// How many files are kept, the one being written included.
    pub max_files: NonZeroUsize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_files: NonZeroUsize::new(DEFAULT_MAX_FILES).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// The `[journal]` keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JournalFile {
    /// The size at which a journal file is closed and the next one started: bytes with a unit,
    /// such as `"16MiB"`, `"500KB"` or `"1GiB"`. Default `"16MiB"`; at least `"4KiB"`.
    max_file_size: Option<Spanned<String>>,
    /// How many journal files are kept, the one being written included. Default 8.
    max_files: Option<Spanned<i64>>,
}

impl JournalFile {
    /// Checks the keys, recording every problem in `r`.
    pub(crate) fn resolve(self, r: &mut Resolver<'_>) -> Result<JournalConfig, Reported> {
        let size = match &self.max_file_size {
            None => Ok(DEFAULT_MAX_FILE_SIZE),
            Some(s) => match parse_size(s.get_ref()) {
                Ok(n) if n >= MIN_FILE_SIZE => Ok(n),
                Ok(_) => Err(r.error(
                    s.span(),
                    format!(
                        "`max_file_size` must be at least 4KiB, not `{}`",
                        s.get_ref()
                    ),
                )),
                Err(e) => Err(r.error(s.span(), e)),
            },
        };
        let files = match &self.max_files {
            None => Ok(DEFAULT_MAX_FILES),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(r.error(
                    n.span(),
                    format!(
                        "`max_files` must be 1 or more (the file being written counts), not {}",
                        n.get_ref()
                    ),
                )),
            },
        };
        Ok(JournalConfig {
            max_file_size: size?,
            max_files: NonZeroUsize::new(files?).unwrap_or(NonZeroUsize::MIN),
        })
    }
}

/// Reads a size: a whole number of bytes with an optional unit (`B`, `KB`, `KiB`, `MB`, `MiB`,
/// `GB`, `GiB`; any case, a space allowed before it).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let bad = || {
        format!(
            "invalid size `{text}`: write a whole number with a unit, such as \"16MiB\" or \"500KB\""
        )
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

/// The state folder: the one the config names (at most once), resolved against the config
/// file's folder, else [`default_state_dir`]. A path that exists and is not a folder is an error
/// at its value.
pub(crate) fn state_dir(
    top: Option<Spanned<String>>,
    daemon: Option<Spanned<String>>,
    r: &mut Resolver<'_>,
) -> Result<PathBuf, Reported> {
    let given = match (top, daemon) {
        (Some(top), Some(daemon)) => {
            let (line, col) = crate::diag::locate(r.file().text, top.span().start);
            return Err(r.error(
                daemon.span(),
                format!(
                    "`state_dir` is set twice, here and at the top level ({line}:{col}); keep one: \
                     roster keeps one journal per config"
                ),
            ));
        }
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => return Ok(default_state_dir(std::env::var_os("STATE_DIRECTORY"))),
    };
    if given.get_ref().trim().is_empty() {
        return Err(r.error(given.span(), "`state_dir` is empty"));
    }
    let path = r.path(Path::new(given.get_ref()));
    if path.exists() && !path.is_dir() {
        return Err(r.error(
            given.span(),
            format!("`state_dir` {} exists and is not a folder", path.display()),
        ));
    }
    Ok(path)
}

/// The state folder when the config names none: the first of systemd's `$STATE_DIRECTORY`
/// (a colon-separated list when a unit names several), else `.roster` in the current folder.
pub fn default_state_dir(state_directory: Option<std::ffi::OsString>) -> PathBuf {
    state_directory
        .and_then(|v| {
            let v = v.to_string_lossy().into_owned();
            v.split(':').find(|p| !p.is_empty()).map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(LOCAL_STATE_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("500 KB"), Ok(500_000));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "12 parsecs",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_is_systemds_folder_else_a_local_one() {
        assert_eq!(
            default_state_dir(Some("/var/lib/roster:/var/lib/other".into())),
            PathBuf::from("/var/lib/roster")
        );
        assert_eq!(default_state_dir(None), PathBuf::from(".roster"));
        assert_eq!(default_state_dir(Some("".into())), PathBuf::from(".roster"));
    }
}
