//! The UiPath Identity keys of a `[[target]]` table (`type = "uipath"`).
//!
//! `UiPathKeys` is the table as serde reads it; its doc comments are the user documentation of
//! each key. [`UiPathConfig`] is the checked result the connector is built from: a URL known to
//! be `http(s)://…` without a trailing slash, a partition id known to be a UUID, and the client
//! secret already read.
//!
//! ```toml
//! [[target]]
//! name = "robots"
//! type = "uipath"
//! url = "https://cloud.uipath.com/myorg"          # the part before /identity
//! partition_global_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
//! client_id = "…"
//! client_secret_file = "secrets/uipath"
//! ```

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{TargetKeys, check_url};
use crate::diag::toml::{Reported, Resolver};
use crate::secret::Secret;
use crate::secret::SecretKeys;

/// The identity service's path segment on Automation Cloud (`…/{org}/identity_/…`).
pub const DEFAULT_IDENTITY_PATH: &str = "identity_";

/// The scope requested with the token when the config sets none: reading groups and their
/// members (`PM.Group.Read`), creating, updating and deleting groups (`PM.Group.Write`), and
/// looking up the users' directory ids (`PM.Directory`: `BulkResolveByName`, `BulkResolve` and
/// the directory search), as UiPath's Platform Management API guide lists them. `PM.Group`
/// stands for both group scopes.
pub const DEFAULT_SCOPE: &str = "PM.Group.Read PM.Group.Write PM.Directory";

/// Which field of a UiPath directory user the desired state's user keys name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKeyField {
    /// The user name (`name` of a DirectoryUser; `identityName` in directory search results).
    #[default]
    Username,
    /// The e-mail address (`email`).
    Email,
}

/// A checked UiPath Identity target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiPathConfig {
    /// Everything before the identity service's path (`https://cloud.uipath.com/myorg`), without
    /// a trailing slash.
    pub url: String,
    /// The identity service's path segment: `identity_` on Automation Cloud, `identity` on
    /// Automation Suite.
    pub identity_path: String,
    /// The organization's partition id (a UUID, lower case).
    pub partition_global_id: String,
    /// The external application's client id.
    pub client_id: String,
    /// The external application's secret.
    pub client_secret: Secret,
    /// The OAuth scope requested with the token (space-separated).
    pub scope: String,
    /// Which user field the desired user keys match.
    pub user_key: UserKeyField,
}

/// The UiPath Identity keys of a `[[target]]` table.
///
/// roster authenticates as a confidential external application with application scopes
/// (client credentials). The client secret is given as `client_secret_file` (a file, relative
/// to the config file), `client_secret_env` (an environment variable) or `client_secret` (in the
/// config itself, which roster warns about).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UiPathKeys {
    /// Everything before `/identity`: `https://cloud.uipath.com/{organizationName}` on
    /// Automation Cloud, `https://{yourDomain}` or `https://{yourDomain}/{organizationName}` on
    /// Automation Suite.
    url: Spanned<String>,
    /// The identity service's path segment after `url`. Default `identity_` (Automation Cloud);
    /// Automation Suite installs also answer on `identity`.
    identity_path: Option<Spanned<String>>,
    /// The organization's id (`partitionGlobalId`), a UUID.
    partition_global_id: Spanned<String>,
    /// The external application's id.
    client_id: Spanned<String>,
    /// A file holding the external application's secret.
    client_secret_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the external application's secret.
    client_secret_env: Option<Spanned<String>>,
    /// The external application's secret, written here (warned about: prefer the file or the
    /// variable).
    client_secret: Option<Spanned<String>>,
    /// The OAuth scope to request, space-separated. Default
    /// `PM.Group.Read PM.Group.Write PM.Directory`.
    scope: Option<Spanned<String>>,
    /// Which user field the desired state's user keys are: `username` (default) or `email`.
    user_key: Option<Spanned<UserKeyField>>,
}

impl TargetKeys for UiPathKeys {
    type Config = UiPathConfig;

    fn resolve(self, r: &mut Resolver<'_>, table: Range<usize>) -> Result<UiPathConfig, Reported> {
        let url = check_url(&self.url, r);
        let identity_path = match self.identity_path {
            None => Ok(DEFAULT_IDENTITY_PATH.to_owned()),
            Some(p) => check_identity_path(&p, r),
        };
        let partition = check_partition(&self.partition_global_id, r);
        let client_id = if self.client_id.get_ref().trim().is_empty() {
            Err(r.error(self.client_id.span(), "`client_id` is empty"))
        } else {
            Ok(self.client_id.get_ref().trim().to_owned())
        };
        let secret = r.required_secret(
            &SecretKeys {
                key: "client_secret",
                literal: self.client_secret,
                file: self.client_secret_file,
                env: self.client_secret_env,
            },
            table,
        );
        let scope = match self.scope {
            None => Ok(DEFAULT_SCOPE.to_owned()),
            Some(s) if s.get_ref().trim().is_empty() => Err(r.error(
                s.span(),
                "`scope` is empty; leave it out to use the default",
            )),
            Some(s) => Ok(s.get_ref().split_whitespace().collect::<Vec<_>>().join(" ")),
        };
        Ok(UiPathConfig {
            url: url?,
            identity_path: identity_path?,
            partition_global_id: partition?,
            client_id: client_id?,
            client_secret: secret?,
            scope: scope?,
            user_key: self.user_key.map(Spanned::into_inner).unwrap_or_default(),
        })
    }
}

/// One or more plain path segments, without surrounding slashes.
fn check_identity_path(p: &Spanned<String>, r: &mut Resolver<'_>) -> Result<String, Reported> {
    let trimmed = p.get_ref().trim().trim_matches('/');
    let plain = |seg: &str| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    if trimmed.split('/').all(plain) {
        Ok(trimmed.to_owned())
    } else {
        Err(r.error(
            p.span(),
            format!(
                "invalid identity_path `{}`: give path segments such as `identity_` or `identity`",
                p.get_ref()
            ),
        ))
    }
}

/// The partition id must be a UUID; it is sent in paths and bodies in its lower-case form.
fn check_partition(p: &Spanned<String>, r: &mut Resolver<'_>) -> Result<String, Reported> {
    match uuid::Uuid::parse_str(p.get_ref().trim()) {
        Ok(id) => Ok(id.hyphenated().to_string()),
        Err(_) => Err(r.error(
            p.span(),
            format!(
                "partition_global_id `{}` is not a UUID (such as \
                 3fa85f64-5717-4562-b3fc-2c963f66afa6); find it in the organization's URL or \
                 its Admin settings",
                p.get_ref()
            ),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use crate::config::{TargetKind, parse};

    use super::*;

    const HEAD: &str = "[[source]]\ntype = \"toml\"\npath = \"g\"\n[[target]]\nname = \"robots\"\n\
                        type = \"uipath\"\n";

    fn errors(keys: &str) -> String {
        match parse(&format!("{HEAD}{keys}"), Path::new("roster.toml")) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn config(keys: &str) -> UiPathConfig {
        let c = parse(&format!("{HEAD}{keys}"), Path::new("roster.toml")).unwrap();
        match &c.targets[0].kind {
            TargetKind::UiPath(u) => u.clone(),
            other => panic!("not uipath: {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_in_and_the_secret_is_redacted() {
        let c = config(
            "url = \"https://cloud.uipath.com/org/\"\n\
             partition_global_id = \"3FA85F64-5717-4562-B3FC-2C963F66AFA6\"\n\
             client_id = \"app\"\nclient_secret_env = \"PATH\"\n",
        );
        assert_eq!(c.url, "https://cloud.uipath.com/org");
        assert_eq!(c.identity_path, "identity_");
        assert_eq!(
            c.partition_global_id,
            "3fa85f64-5717-4562-b3fc-2c963f66afa6"
        );
        assert_eq!(c.scope, DEFAULT_SCOPE);
        assert_eq!(c.user_key, UserKeyField::Username);
        let path = std::env::var("PATH").unwrap();
        assert!(!format!("{c:?}").contains(&path));
    }

    #[test]
    fn options_are_read() {
        let c = config(
            "url = \"https://as.example.com\"\nidentity_path = \"/identity/\"\n\
             partition_global_id = \"3fa85f64-5717-4562-b3fc-2c963f66afa6\"\n\
             client_id = \"app\"\nclient_secret_env = \"PATH\"\nscope = \"PM.Group  PM.Directory\"\n\
             user_key = \"email\"\n",
        );
        assert_eq!(c.identity_path, "identity");
        assert_eq!(c.scope, "PM.Group PM.Directory");
        assert_eq!(c.user_key, UserKeyField::Email);
    }

    #[test]
    fn each_problem_is_reported_at_its_key() {
        let text = errors(
            "url = \"cloud.uipath.com/org\"\nidentity_path = \"a b\"\n\
             partition_global_id = \"org-7\"\nclient_id = \"\"\nscope = \" \"\n",
        );
        assert_eq!(
            text,
            "roster.toml:4:1: no `client_secret`: set `client_secret_file`, `client_secret_env` or `client_secret`\n\
             roster.toml:7:7: invalid url `cloud.uipath.com/org`: it must start with https:// or http://\n\
             roster.toml:8:17: invalid identity_path `a b`: give path segments such as `identity_` or `identity`\n\
             roster.toml:9:23: partition_global_id `org-7` is not a UUID (such as \
             3fa85f64-5717-4562-b3fc-2c963f66afa6); find it in the organization's URL or its Admin settings\n\
             roster.toml:10:13: `client_id` is empty\n\
             roster.toml:11:9: `scope` is empty; leave it out to use the default"
        );
    }

    #[test]
    fn a_wrong_user_key_and_an_unknown_key_point_at_themselves() {
        let text = errors(
            "url = \"https://cloud.uipath.com/org\"\n\
             partition_global_id = \"3fa85f64-5717-4562-b3fc-2c963f66afa6\"\n\
             client_id = \"app\"\nclient_secret_env = \"PATH\"\nuser_key = \"upn\"\n",
        );
        assert!(
            text.starts_with(
                "roster.toml:11:12: unknown value `upn`, expected `username` or `email`"
            ),
            "{text}"
        );
        let text = errors(
            "url = \"https://cloud.uipath.com/org\"\n\
             partition_global_id = \"3fa85f64-5717-4562-b3fc-2c963f66afa6\"\n\
             client_id = \"app\"\nclient_secret_env = \"PATH\"\norganisation = \"x\"\n",
        );
        assert!(
            text.starts_with("roster.toml:11:1: unknown key `organisation`"),
            "{text}"
        );
    }
}
