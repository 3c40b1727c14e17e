//! The registry: every target type roster knows, one line each.
//!
//! A line names the type's enum variant, its `type` value in `roster.toml` (the field name also
//! used for its simulator's seed table and handle), a title for docs, the connector's config keys,
//! config and connector, and the simulator's seed and handle. Each layer that must list the
//! target types generates what it needs from this one list, so that none of them spells the list
//! out again:
//!
//! - [`crate::config`]: the `TargetKind` enum of connector configs, `TARGET_TYPES` and the
//!   dispatch of a `[[target]]` table on its `type`;
//! - [`crate::run`]: `AnyTarget`, the built connectors, and their dispatch;
//! - [`crate::sim`]: the seed file's tables, `SimKind` and the `RunningSim` handles.
//!
//! [`targets!`] hands the list to a macro of the caller's; the caller's macro matches it with the
//! pattern below. Adding a target type is a folder under `src/target/`, one under `src/sim/`, and
//! one line here (see `ARCHITECTURE.md`).

/// Calls `$then! { ... }` with the list of target types, one per line in the form
/// `Variant(field, "Title"): target::module::{Keys, Config, Connector}, sim::module::{Seed, Sim};`.
macro_rules! targets {
    ($then:ident) => {
        $then! {
            Contensis(contensis, "Contensis"): target::contensis::{ContensisKeys, ContensisConfig, ContensisTarget}, sim::contensis::{ContensisSeed, ContensisSim};
            VinylDns(vinyldns, "VinylDNS"): target::vinyldns::{VinylDnsKeys, VinylDnsConfig, VinylDnsTarget}, sim::vinyldns::{VinylDnsSeed, VinylDnsSim};
            Crafter(crafter, "Crafter Studio"): target::crafter::{CrafterKeys, CrafterConfig, CrafterTarget}, sim::crafter::{CrafterSeed, CrafterSim};
            UiPath(uipath, "UiPath Identity"): target::uipath::{UiPathKeys, UiPathConfig, UiPathTarget}, sim::uipath::{UiPathSeed, UiPathSim};
        }
    };
}

pub(crate) use targets;
