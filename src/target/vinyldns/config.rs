//! The VinylDNS keys of a `[[target]]` table (`type = "vinyldns"`).
//!
//! VinylDNS authenticates every request with AWS Signature Version 4, made with a user's access
//! key and secret key (both from the portal's "Regenerate Credentials"). Both are secrets, each
//! given as `<key>_file` (relative to the config file), `<key>_env`, or written in the config
//! (warned about).
//!
//! ```toml
//! [[target]]
//! name = "dns"
//! type = "vinyldns"
//! url = "https://vinyldns.example.com"
//! access_key_file = "secrets/vinyldns-access"
//! secret_key_file = "secrets/vinyldns-secret"
//! # The server's `valid-email-config.number-of-dots`, when its operator changed it:
//! # email_dots = 2
//! # The account's user name, for a server whose group list ignores `abridged=true`:
//! # user = "roster-svc"
//! ```

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::check::{TargetKeys, check_url};
use crate::diag::toml::{Reported, Resolver};
use crate::secret::Secret;
use crate::secret::SecretKeys;

/// A checked VinylDNS target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VinylDnsConfig {
    /// The API's base URL, without a trailing slash.
    pub url: String,
    /// The access key that names the account (redacted in `Debug`).
    pub access_key: Secret,
    /// The secret key that signs requests (redacted in `Debug`).
    pub secret_key: Secret,
    /// The most dots the domain of a group's e-mail may hold: the server's
    /// `valid-email-config.number-of-dots` (2 unless the server's operator changed it), which the
    /// API does not show.
    pub email_dots: usize,
    /// The user name of the account the keys belong to, when given. roster learns its account
    /// from an abridged group list; a server that ignores `abridged=true`, or a list where the
    /// account is alone in every group, cannot tell it, and then this names it.
    pub user: Option<String>,
}

/// The server's default limit of dots after the `@` of a group's e-mail.
pub const DEFAULT_EMAIL_DOTS: usize = 2;

/// The VinylDNS keys of a `[[target]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VinylDnsKeys {
    /// The API's base URL, such as `https://vinyldns.example.com`.
    url: Spanned<String>,
    /// A file holding the access key.
    access_key_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the access key.
    access_key_env: Option<Spanned<String>>,
    /// The access key, written here (warned about: prefer the file or the variable).
    access_key: Option<Spanned<String>>,
    /// A file holding the secret key.
    secret_key_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the secret key.
    secret_key_env: Option<Spanned<String>>,
    /// The secret key, written here (warned about: prefer the file or the variable).
    secret_key: Option<Spanned<String>>,
    /// The server's limit of dots after the `@` of a group's e-mail (default 2).
    email_dots: Option<usize>,
    /// The user name of the account the keys belong to (for servers that cannot tell).
    user: Option<String>,
}

impl TargetKeys for VinylDnsKeys {
    type Config = VinylDnsConfig;

    fn resolve(
        self,
        r: &mut Resolver<'_>,
        table: Range<usize>,
    ) -> Result<VinylDnsConfig, Reported> {
        let url = check_url(&self.url, r);
        let access = SecretKeys {
            key: "access_key",
            literal: self.access_key,
            file: self.access_key_file,
            env: self.access_key_env,
        };
        let secret = SecretKeys {
            key: "secret_key",
            literal: self.secret_key,
            file: self.secret_key_file,
            env: self.secret_key_env,
        };
        // Resolve all three before failing, so that every problem is reported at once.
        let access_key = r.required_secret(&access, table.clone());
        let secret_key = r.required_secret(&secret, table);
        Ok(VinylDnsConfig {
            url: url?,
            access_key: access_key?,
            secret_key: secret_key?,
            email_dots: self.email_dots.unwrap_or(DEFAULT_EMAIL_DOTS),
            user: self.user,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use crate::config::{TargetKind, parse};

    fn config(keys: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "[[source]]\ntype = \"toml\"\npath = \"g\"\n[[target]]\nname = \"dns\"\n\
             type = \"vinyldns\"\nurl = \"https://vinyldns.example.com\"\n{keys}"
        );
        parse(&text, Path::new("roster.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn both_keys_from_the_environment() {
        let c = config("access_key_env = \"PATH\"\nsecret_key_env = \"PATH\"\n").unwrap();
        let TargetKind::VinylDns(v) = &c.targets[0].kind else {
            panic!("not vinyldns");
        };
        assert_eq!(v.url, "https://vinyldns.example.com");
        assert_eq!(v.access_key.expose(), std::env::var("PATH").unwrap());
        assert!(!format!("{v:?}").contains(v.secret_key.expose()));
    }

    #[test]
    fn the_dot_limit_and_the_user_name_are_optional() {
        let c = config("access_key_env = \"PATH\"\nsecret_key_env = \"PATH\"\n").unwrap();
        let TargetKind::VinylDns(v) = &c.targets[0].kind else {
            panic!("not vinyldns");
        };
        assert_eq!((v.email_dots, v.user.as_deref()), (2, None));
        let c = config(
            "access_key_env = \"PATH\"\nsecret_key_env = \"PATH\"\nemail_dots = 3\n\
             user = \"roster-svc\"\n",
        )
        .unwrap();
        let TargetKind::VinylDns(v) = &c.targets[0].kind else {
            panic!("not vinyldns");
        };
        assert_eq!((v.email_dots, v.user.as_deref()), (3, Some("roster-svc")));
    }

    #[test]
    fn a_missing_secret_key_is_reported_at_the_table() {
        assert_eq!(
            config("access_key_env = \"PATH\"\n").unwrap_err(),
            "roster.toml:4:1: no `secret_key`: set `secret_key_file`, `secret_key_env` or \
             `secret_key`"
        );
    }

    #[test]
    fn a_secret_given_two_ways_is_reported_at_the_second() {
        assert_eq!(
            config("access_key_env = \"PATH\"\naccess_key = \"AK\"\nsecret_key_env = \"PATH\"\n")
                .unwrap_err(),
            "roster.toml:9:14: `access_key` conflicts with `access_key_env`: give the secret one \
             way only"
        );
    }

    #[test]
    fn a_misspelt_key_is_reported_at_its_line() {
        let err = config("access_key_env = \"PATH\"\nsecret_kye = \"x\"\n").unwrap_err();
        assert!(
            err.starts_with(
                "roster.toml:9:1: unknown key `secret_kye` in [[target]] (did you mean \
                 `secret_key`?)"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unset_variable_is_reported_at_its_value() {
        assert_eq!(
            config(
                "access_key_env = \"ROSTER_TEST_SURELY_UNSET_VAR\"\nsecret_key_env = \"PATH\"\n"
            )
            .unwrap_err(),
            "roster.toml:8:18: environment variable `ROSTER_TEST_SURELY_UNSET_VAR` is not set"
        );
    }
}
