//! The VinylDNS keys of a `[[target]]` table (`type = "vinyldns"`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::file::{Reported, Resolver, TargetKeys, check_url};

/// A checked VinylDNS target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VinylDnsConfig {
    /// The API's base URL, without a trailing slash.
    pub url: String,
}

/// The VinylDNS keys of a `[[target]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VinylDnsKeys {
    /// The API's base URL.
    url: Spanned<String>,
}

impl TargetKeys for VinylDnsKeys {
    type Config = VinylDnsConfig;

    fn resolve(
        self,
        r: &mut Resolver<'_>,
        _table: Range<usize>,
    ) -> Result<VinylDnsConfig, Reported> {
        Ok(VinylDnsConfig {
            url: check_url(&self.url, r)?,
        })
    }
}
