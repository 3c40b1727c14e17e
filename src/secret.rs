//! Secrets: credentials that must never reach a log, a plan or an error message.
//!
//! A [`Secret`] can only be read through [`Secret::expose`]; its `Debug` and `Display` print
//! `[redacted]`, so formatting a whole [`Config`](crate::config::Config) is safe. A secret is given in the
//! config in one of three ways, for a key such as `client_secret`:
//!
//! - `client_secret_file = "path"`: read from a file (relative to the config file), the form that
//!   suits systemd's `LoadCredential=`; a trailing newline is dropped. roster warns when the file
//!   can be read by its group or by others.
//! - `client_secret_env = "VAR"`: read from an environment variable.
//! - `client_secret = "…"`: written in the config itself; allowed, with a warning, because the
//!   config file is usually readable by more people than a secret should be.
//!
//! `SecretKeys` is those three keys as the config file gave them; the config loader resolves it
//! to a `Secret`, turning every problem into a diagnostic at the key's value.

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// A credential. Formatting it prints `[redacted]`; [`Secret::expose`] is the only way to the
/// value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret with this value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it (an authentication request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from a file, dropping trailing line breaks (`echo secret > file` adds
    /// one). Returns the secret and, on Unix, whether the file is readable by its group or by
    /// others (as the permission bits that allow it, `mode & 0o077`).
    pub fn from_file(path: &Path) -> io::Result<(Self, Option<u32>)> {
        let text = fs::read_to_string(path)?;
        let value = text.trim_end_matches(['\n', '\r']).to_owned();
        Ok((Self(value), loose_permissions(path)))
    }

    /// Reads a secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, std::env::VarError> {
        std::env::var(var).map(Self)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(unix)]
fn loose_permissions(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_permissions(_path: &Path) -> Option<u32> {
    None
}

/// The three keys that can give one secret, as a config table spelled them: `<key>`,
/// `<key>_file` and `<key>_env`. At most one may be set.
#[derive(Clone, Debug)]
pub(crate) struct SecretKeys {
    /// The base key, such as `client_secret`.
    pub key: &'static str,
    /// `<key> = "…"`: the secret written in the config.
    pub literal: Option<Spanned<String>>,
    /// `<key>_file = "path"`.
    pub file: Option<Spanned<PathBuf>>,
    /// `<key>_env = "VAR"`.
    pub env: Option<Spanned<String>>,
}

impl SecretKeys {
    /// The span of the first of the three keys' values that is set, if any.
    pub fn span(&self) -> Option<Range<usize>> {
        self.given().first().map(|(_, span)| span.clone())
    }

    /// The name of the first key that is set (`client_secret_file`, …), for messages.
    pub fn given_key(&self) -> Option<String> {
        self.given().first().map(|(name, _)| name.clone())
    }

    /// The keys that are set, with their spans, in the order file, env, literal.
    pub fn given(&self) -> Vec<(String, Range<usize>)> {
        let mut out = Vec::new();
        if let Some(f) = &self.file {
            out.push((format!("{}_file", self.key), f.span()));
        }
        if let Some(e) = &self.env {
            out.push((format!("{}_env", self.key), e.span()));
        }
        if let Some(l) = &self.literal {
            out.push((self.key.to_owned(), l.span()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_secret_drops_trailing_newlines_only() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s");
        fs::write(&path, " a b \r\n\n")?;
        let (s, _) = Secret::from_file(&path)?;
        assert_eq!(s.expose(), " a b ");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn loose_file_permissions_are_reported() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s");
        fs::write(&path, "x")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
        assert_eq!(Secret::from_file(&path)?.1, Some(0o640));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        assert_eq!(Secret::from_file(&path)?.1, None);
        Ok(())
    }
}
