//! The Crafter Studio keys of a `[[target]]` table (`type = "crafter"`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::file::{Reported, Resolver, TargetKeys, check_url};

/// A checked Crafter Studio target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrafterConfig {
    /// The API's base URL, without a trailing slash.
    pub url: String,
}

/// The Crafter Studio keys of a `[[target]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CrafterKeys {
    /// The API's base URL.
    url: Spanned<String>,
}

impl TargetKeys for CrafterKeys {
    type Config = CrafterConfig;

    fn resolve(
        self,
        r: &mut Resolver<'_>,
        _table: Range<usize>,
    ) -> Result<CrafterConfig, Reported> {
        Ok(CrafterConfig {
            url: check_url(&self.url, r)?,
        })
    }
}
