//! The Crafter Studio keys of a `[[target]]` table (`type = "crafter"`).
//!
//! Studio has two group APIs that share nothing but the web context: API 2 with an access token
//! (Studio 4.0.0 and later, global groups) and API 1 (Studio 3.0, groups per site, a session
//! from a login). `api` picks one, and each takes only its own keys, so that a token left over
//! from a 4.x setup is never silently ignored by a 3.0 target (or a `site_id` by a 4.x one).
//! Studio 3.1 fits neither: its API 2 has no access tokens (a login session with the XSRF pair
//! only) and it retired API 1's group scripts (`301`).
//!
//! ```toml
//! [[target]]
//! name = "studio"
//! type = "crafter"
//! url = "https://studio.example.com/studio"
//! api = "v2"                            # the default
//! token_file = "secrets/crafter-token"
//!
//! [[target]]
//! name = "studio30"
//! type = "crafter"
//! url = "https://studio30.example.com/studio"
//! api = "v1"
//! username = "roster"
//! password_file = "secrets/crafter-password"
//! site_id = "mysite"
//! ```

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{TargetKeys, check_url};
use crate::diag::toml::{Reported, Resolver};
use crate::secret::{Secret, SecretKeys};

/// A checked Crafter Studio target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrafterConfig {
    /// Studio's base URL including its web context (usually `/studio`), without a trailing slash.
    pub url: String,
    /// Which group API roster speaks, with its credentials.
    pub api: CrafterApi,
}

/// The group API of a Studio version, with the credentials it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrafterApi {
    /// API 2 (Studio 4.0.0 and later): global groups, `Authorization: Bearer <token>`.
    V2 {
        /// The access token (made in Studio's Token Management).
        token: Secret,
    },
    /// API 1 (Studio 3.0): groups belong to one site; a session from `login.json`.
    V1 {
        /// The user roster logs in as.
        username: String,
        /// That user's password.
        password: Secret,
        /// The site whose groups roster manages.
        site_id: String,
    },
}

/// The Crafter Studio keys of a `[[target]]` table.
///
/// With `api = "v2"` (the default) give the access token as `token_file`, `token_env` or `token`;
/// with `api = "v1"` give `username`, the password as `password_file`, `password_env` or
/// `password`, and `site_id`. Keys of the other API are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CrafterKeys {
    /// Studio's base URL with its web context, such as `https://studio.example.com/studio`.
    url: Spanned<String>,
    /// `"v2"` (Studio 4.0.0 and later, the default) or `"v1"` (Studio 3.0).
    api: Option<Spanned<String>>,
    /// A file holding the access token (v2).
    token_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the access token (v2).
    token_env: Option<Spanned<String>>,
    /// The access token, written here (warned about: prefer the file or the variable) (v2).
    token: Option<Spanned<String>>,
    /// The user roster logs in as (v1).
    username: Option<Spanned<String>>,
    /// A file holding the user's password (v1).
    password_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the user's password (v1).
    password_env: Option<Spanned<String>>,
    /// The user's password, written here (warned about) (v1).
    password: Option<Spanned<String>>,
    /// The site whose groups roster manages (v1: Studio 3.0 groups belong to one site).
    site_id: Option<Spanned<String>>,
}

impl TargetKeys for CrafterKeys {
    type Config = CrafterConfig;

    fn resolve(self, r: &mut Resolver<'_>, table: Range<usize>) -> Result<CrafterConfig, Reported> {
        let url = check_url(&self.url, r);
        let v1 = match &self.api {
            None => Ok(false),
            Some(a) if a.get_ref() == "v2" => Ok(false),
            Some(a) if a.get_ref() == "v1" => Ok(true),
            Some(a) => Err(r.error(
                a.span(),
                format!(
                    "unknown api `{}`: use \"v2\" (Studio 4.0.0 and later) or \"v1\" \
                     (Studio 3.0)",
                    a.get_ref()
                ),
            )),
        };
        let token = SecretKeys {
            key: "token",
            literal: self.token,
            file: self.token_file,
            env: self.token_env,
        };
        let password = SecretKeys {
            key: "password",
            literal: self.password,
            file: self.password_file,
            env: self.password_env,
        };
        let api = match v1 {
            Err(e) => Err(e),
            Ok(false) => {
                // Every key of the other API is reported, not just the first.
                let mut wrong = Vec::new();
                if let Some(u) = &self.username {
                    wrong.push(("username".to_owned(), u.span()));
                }
                wrong.extend(password.given());
                if let Some(s) = &self.site_id {
                    wrong.push(("site_id".to_owned(), s.span()));
                }
                for (key, span) in &wrong {
                    r.error(
                        span.clone(),
                        format!(
                            "`{key}` is for api = \"v1\" (Studio 3.0); api \"v2\" takes a token: \
                             set `token_file`, `token_env` or `token`"
                        ),
                    );
                }
                let token = r.required_secret(&token, table.clone());
                if wrong.is_empty() {
                    token.map(|token| CrafterApi::V2 { token })
                } else {
                    Err(Reported)
                }
            }
            Ok(true) => {
                let wrong = token.given();
                for (key, span) in &wrong {
                    r.error(
                        span.clone(),
                        format!(
                            "`{key}` is for api = \"v2\"; api \"v1\" (Studio 3.0) logs in with \
                             `username` and a password"
                        ),
                    );
                }
                let username = required(self.username, "username", table.clone(), r);
                let password = r.required_secret(&password, table.clone());
                let site_id = required(self.site_id, "site_id", table, r);
                match (username, password, site_id) {
                    (Ok(username), Ok(password), Ok(site_id)) if wrong.is_empty() => {
                        Ok(CrafterApi::V1 {
                            username,
                            password,
                            site_id,
                        })
                    }
                    _ => Err(Reported),
                }
            }
        };
        Ok(CrafterConfig {
            url: url?,
            api: api?,
        })
    }
}

/// A key API 1 needs: given and not blank.
fn required(
    value: Option<Spanned<String>>,
    key: &str,
    table: Range<usize>,
    r: &mut Resolver<'_>,
) -> Result<String, Reported> {
    match value {
        None => Err(r.error(
            table,
            format!("missing key `{key}`: api = \"v1\" needs `username`, a password and `site_id`"),
        )),
        Some(v) if v.get_ref().trim().is_empty() => {
            Err(r.error(v.span(), format!("`{key}` is empty")))
        }
        Some(v) => Ok(v.into_inner()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use crate::config::{TargetKind, parse};

    use super::*;

    fn load(keys: &str) -> Result<CrafterConfig, String> {
        let text = format!(
            "[[source]]\ntype = \"toml\"\npath = \"g\"\n[[target]]\nname = \"studio\"\n\
             type = \"crafter\"\n{keys}"
        );
        match parse(&text, Path::new("roster.toml")) {
            Ok(c) => match &c.targets[0].kind {
                TargetKind::Crafter(c) => Ok(c.clone()),
                other => panic!("not a crafter target: {other:?}"),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn v2_is_the_default_and_takes_a_token() {
        let c =
            load("url = \"https://studio.example.com/studio/\"\ntoken_env = \"PATH\"\n").unwrap();
        assert_eq!(c.url, "https://studio.example.com/studio");
        assert!(matches!(c.api, CrafterApi::V2 { .. }));
        assert!(!format!("{c:?}").contains(&std::env::var("PATH").unwrap()));
    }

    #[test]
    fn v1_takes_username_password_and_site() {
        let c = load(
            "url = \"https://s.example.com/studio\"\napi = \"v1\"\nusername = \"admin\"\n\
             password_env = \"PATH\"\nsite_id = \"mysite\"\n",
        )
        .unwrap();
        let CrafterApi::V1 {
            username, site_id, ..
        } = c.api
        else {
            panic!("not v1");
        };
        assert_eq!((username.as_str(), site_id.as_str()), ("admin", "mysite"));
    }

    #[test]
    fn mixing_the_two_forms_is_an_error_at_each_key() {
        let err = load(
            "url = \"https://s.example.com/studio\"\ntoken_env = \"PATH\"\nsite_id = \"mysite\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "roster.toml:9:11: `site_id` is for api = \"v1\" (Studio 3.0); api \"v2\" takes a \
             token: set `token_file`, `token_env` or `token`"
        );
        let err = load(
            "url = \"https://s.example.com/studio\"\napi = \"v1\"\nusername = \"a\"\n\
             password_env = \"PATH\"\nsite_id = \"s\"\ntoken_env = \"PATH\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "roster.toml:12:13: `token_env` is for api = \"v2\"; api \"v1\" (Studio 3.0) logs in \
             with `username` and a password"
        );
    }

    #[test]
    fn missing_keys_and_bad_values_are_errors_with_positions() {
        let err = load("url = \"https://s.example.com/studio\"\n").unwrap_err();
        assert_eq!(
            err,
            "roster.toml:4:1: no `token`: set `token_file`, `token_env` or `token`"
        );
        let err = load("url = \"https://s.example.com/studio\"\napi = \"v1\"\nusername = \"a\"\n")
            .unwrap_err();
        assert_eq!(
            err,
            "roster.toml:4:1: no `password`: set `password_file`, `password_env` or \
             `password`\nroster.toml:4:1: missing key `site_id`: api = \"v1\" needs \
             `username`, a password and `site_id`"
        );
        let err =
            load("url = \"https://s.example.com/studio\"\napi = \"v3\"\ntoken_env = \"PATH\"\n")
                .unwrap_err();
        assert_eq!(
            err,
            "roster.toml:8:7: unknown api `v3`: use \"v2\" (Studio 4.0.0 and later) or \"v1\" \
             (Studio 3.0)"
        );
        let err =
            load("url = \"https://s.example.com/studio\"\ntoken_env = \"PATH\"\nsit_id = \"x\"\n")
                .unwrap_err();
        assert!(
            err.starts_with("roster.toml:9:1: unknown key `sit_id`"),
            "{err}"
        );
    }
}
