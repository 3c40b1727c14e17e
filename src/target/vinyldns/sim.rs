//! The VinylDNS simulator (work in progress: the skeleton every simulator starts from).

use std::sync::{Arc, Mutex};

use axum::Router;
use serde::Deserialize;

use crate::sim::faults::Faults;

/// The `[vinyldns]` table of a seed file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VinylDnsSeed {}

impl VinylDnsSeed {
    /// Every problem with the seed (duplicate names, unknown users), or nothing.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        Ok(())
    }
}

/// A running VinylDNS simulator's state; clones share it.
#[derive(Clone, Debug, Default)]
pub struct VinylDnsSim {
    calls: Arc<Mutex<Vec<String>>>,
}

impl VinylDnsSim {
    /// A simulator holding what `seed` describes.
    pub fn new(_seed: VinylDnsSeed) -> Self {
        Self::default()
    }

    /// The HTTP API, ready to serve.
    pub fn router(&self) -> Router {
        Router::new()
    }

    /// The path the API lives under (appended to `http://host:port` to make the target's `url`).
    pub fn base_path(&self) -> String {
        String::new()
    }

    /// Every API request received, as `"METHOD /path?query"`, in arrival order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, _f: Faults) {}
}
