//! roster keeps the groups of application APIs true to the groups an organisation keeps in LDAP or
//! in TOML files.
//!
//! The data flows one way (see `ARCHITECTURE.md`):
//!
//! ```text
//! roster.toml → config → source → Desired ─┐
//!                target::observe → Observed ┴→ plan (pure) → guard → target::compile → exec → report
//! ```
//!
//! - [`config`]: the typed `roster.toml`, with `file:line:col` errors and secrets.
//! - [`diag`]: `file:line:col` diagnostics, and the spanned-TOML reader that the config and the
//!   desired-state files are read with.
//! - [`source`]: reads the desired state (TOML files, LDAP).
//! - [`model`]: groups, desired and observed state, target capabilities.
//! - [`plan`]: the pure planner, the safety guard, and plan rendering.
//! - [`target`]: the connector seam and the connectors (Contensis, VinylDNS, Crafter Studio,
//!   UiPath Identity), each with its simulator.
//! - [`exec`]: order, concurrency and retries of calls; knows no API.
//! - [`journal`]: the audit journal of every write, in the state folder, and its checks.
//! - [`retry`]: backoff and `Retry-After`, below both the executor and the connectors' reads.
//! - [`reconcile`], [`run`]: one target, then all targets, for one run.
//! - [`export`]: one target's groups written as desired-state TOML.
//! - [`report`]: what people read and the exit codes.
//! - [`sim`]: `roster sim`, serving the simulators from a seed file.
//! - [`daemon`]: `roster run`, reconciling on a schedule under systemd, with health and metrics.
//! - [`lease`]: the etcd lease that makes one of two daemons the active one.
//! - [`instance`]: which roster process this is, sent in every request's `User-Agent`.
//! - [`memory`]: how the process takes memory from the kernel (small pages only).

pub mod cli;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod exec;
pub mod export;
pub mod instance;
pub mod journal;
pub mod lease;
pub mod memory;
pub mod model;
pub mod plan;
pub mod reconcile;
mod registry;
pub mod report;
pub mod retry;
pub mod run;
pub mod secret;
pub mod sim;
pub mod source;
pub mod target;
pub mod telemetry;
