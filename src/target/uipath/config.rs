//! The UiPath Identity keys of a `[[target]]` table (`type = "uipath"`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::file::{Reported, Resolver, TargetKeys, check_url};

/// A checked UiPath Identity target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiPathConfig {
    /// The API's base URL, without a trailing slash.
    pub url: String,
}

/// The UiPath Identity keys of a `[[target]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UiPathKeys {
    /// The API's base URL.
    url: Spanned<String>,
}

impl TargetKeys for UiPathKeys {
    type Config = UiPathConfig;

    fn resolve(self, r: &mut Resolver<'_>, _table: Range<usize>) -> Result<UiPathConfig, Reported> {
        Ok(UiPathConfig {
            url: check_url(&self.url, r)?,
        })
    }
}
