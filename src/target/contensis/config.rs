//! The Contensis keys of a `[[target]]` table (`type = "contensis"`).
//!
//! `ContensisKeys` is the table as serde reads it; its doc comments are the user documentation
//! of each key. [`ContensisConfig`] is the checked result the connector is built from: a URL known
//! to be `http(s)://…` without a trailing slash, and exactly one way to authenticate, with its
//! secret already read.
//!
//! ```toml
//! [[target]]
//! name = "cms"
//! type = "contensis"
//! url = "https://cms.example.com"
//! client_id = "roster"
//! client_secret_file = "secrets/contensis"
//! ```

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{TargetKeys, check_url};
use crate::diag::toml::{Reported, Resolver};
use crate::secret::{Secret, SecretKeys};

/// The scope requested with the token when the config sets none: the list the Contensis
/// JavaScript management SDK asks for with client credentials.
pub const DEFAULT_SCOPE: &str = "Security_Administrator ContentType_Read ContentType_Write \
ContentType_Delete Entry_Read Entry_Write Entry_Delete Project_Read Project_Write Project_Delete \
Workflow_Administrator";

/// A checked Contensis target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContensisConfig {
    /// The instance's base URL, `http://` or `https://`, without a trailing slash.
    pub url: String,
    /// How roster authenticates.
    pub auth: ContensisAuth,
    /// The OAuth scope requested with the token (space-separated).
    pub scope: String,
}

/// How roster obtains a token from Contensis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContensisAuth {
    /// The `client_credentials` grant, with an API key's client id and secret.
    ClientCredentials {
        /// The API key's client id.
        client_id: String,
        /// The API key's shared secret.
        client_secret: Secret,
    },
    /// The `contensis_classic` grant, with a user's name and password.
    Password {
        /// The user's name.
        username: String,
        /// The user's password.
        password: Secret,
    },
}

/// The Contensis keys of a `[[target]]` table.
///
/// Authenticate either with an API key (`client_id` and a client secret) or as a user (`username`
/// and a password); exactly one of the two. Each secret is given as `<key>_file` (a file, relative
/// to the config file), `<key>_env` (an environment variable) or `<key>` (in the config itself,
/// which roster warns about).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContensisKeys {
    /// The instance's base URL, such as `https://cms.example.com`.
    url: Spanned<String>,
    /// The API key's client id (client credentials grant).
    client_id: Option<Spanned<String>>,
    /// A file holding the API key's shared secret.
    client_secret_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the API key's shared secret.
    client_secret_env: Option<Spanned<String>>,
    /// The API key's shared secret, written here (warned about: prefer the file or the variable).
    client_secret: Option<Spanned<String>>,
    /// A user's name (`contensis_classic` grant), instead of an API key.
    username: Option<Spanned<String>>,
    /// A file holding the user's password.
    password_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the user's password.
    password_env: Option<Spanned<String>>,
    /// The user's password, written here (warned about: prefer the file or the variable).
    password: Option<Spanned<String>>,
    /// The OAuth scope to request, space-separated. Default: the management SDK's list
    /// (`Security_Administrator ContentType_Read …`).
    scope: Option<Spanned<String>>,
}

impl TargetKeys for ContensisKeys {
    type Config = ContensisConfig;

    fn resolve(
        self,
        r: &mut Resolver<'_>,
        table: Range<usize>,
    ) -> Result<ContensisConfig, Reported> {
        let url = check_url(&self.url, r);
        let client_secret = SecretKeys {
            key: "client_secret",
            literal: self.client_secret,
            file: self.client_secret_file,
            env: self.client_secret_env,
        };
        let password = SecretKeys {
            key: "password",
            literal: self.password,
            file: self.password_file,
            env: self.password_env,
        };
        let auth = auth(
            self.client_id,
            client_secret,
            self.username,
            password,
            table,
            r,
        );
        let scope = match self.scope {
            None => Ok(DEFAULT_SCOPE.to_owned()),
            Some(s) if s.get_ref().trim().is_empty() => Err(r.error(
                s.span(),
                "`scope` is empty; leave it out to use the default",
            )),
            Some(s) => Ok(s.into_inner()),
        };
        Ok(ContensisConfig {
            url: url?,
            auth: auth?,
            scope: scope?,
        })
    }
}

/// Exactly one of client credentials and user credentials, each complete.
fn auth(
    client_id: Option<Spanned<String>>,
    client_secret: SecretKeys,
    username: Option<Spanned<String>>,
    password: SecretKeys,
    table: Range<usize>,
    r: &mut Resolver<'_>,
) -> Result<ContensisAuth, Reported> {
    // Resolve both secrets first, so that every problem with them is reported.
    let secret = r.secret(&client_secret);
    let pass = r.secret(&password);
    let client_given = client_id.is_some() || client_secret.span().is_some();
    let user_given = username.is_some() || password.span().is_some();
    if client_given && user_given {
        let span = username
            .as_ref()
            .map(Spanned::span)
            .or_else(|| password.span());
        return Err(r.error(
            span.unwrap_or(table),
            "give either `client_id` with a client secret or `username` with a password, not both",
        ));
    }
    if client_given {
        let id = required_name(client_id, "client_id", &client_secret, table, r);
        let secret = needs_secret(secret?, &client_secret, "client_id", &id, r);
        Ok(ContensisAuth::ClientCredentials {
            client_id: id?.into_inner(),
            client_secret: secret?,
        })
    } else if user_given {
        let name = required_name(username, "username", &password, table, r);
        let pass = needs_secret(pass?, &password, "username", &name, r);
        Ok(ContensisAuth::Password {
            username: name?.into_inner(),
            password: pass?,
        })
    } else {
        Err(r.error(
            table,
            "no credentials: set `client_id` and `client_secret_file` (or `username` and \
             `password_file`)",
        ))
    }
}

/// The `client_id` or `username`, which must be given (when its secret is) and not empty.
fn required_name(
    name: Option<Spanned<String>>,
    key: &str,
    secret: &SecretKeys,
    table: Range<usize>,
    r: &mut Resolver<'_>,
) -> Result<Spanned<String>, Reported> {
    match name {
        Some(n) if n.get_ref().trim().is_empty() => {
            Err(r.error(n.span(), format!("`{key}` is empty")))
        }
        Some(n) => Ok(n),
        None => {
            let given = secret.given_key().unwrap_or_else(|| secret.key.to_owned());
            Err(r.error(
                secret.span().unwrap_or(table),
                format!("`{given}` needs `{key}`"),
            ))
        }
    }
}

/// The secret that goes with a `client_id` or `username`, which must be given.
fn needs_secret(
    secret: Option<Secret>,
    keys: &SecretKeys,
    name_key: &str,
    name: &Result<Spanned<String>, Reported>,
    r: &mut Resolver<'_>,
) -> Result<Secret, Reported> {
    match (secret, name) {
        (Some(s), _) => Ok(s),
        (None, Ok(n)) => {
            let k = keys.key;
            Err(r.error(
                n.span(),
                format!("`{name_key}` needs a secret: set `{k}_file`, `{k}_env` or `{k}`"),
            ))
        }
        // No name either: that is already reported.
        (None, Err(e)) => Err(*e),
    }
}
