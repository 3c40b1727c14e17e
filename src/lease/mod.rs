//! Active/standby: the holder of an etcd lease on one key is the active daemon and writes; the
//! others are standby and plan only.
//!
//! [`holder`] is the state machine (trying for the key, keeping it, turning standby) and the
//! fence a writing run carries; it stands on any [`holder::Store`] with leases and
//! transactions. [`etcd`] is the small client of etcd's JSON gateway it uses in practice: the
//! `etcd-client` crate would need `protoc` to build, which `cargo build` on a fresh machine does
//! not have, and the gateway is etcd's documented API for clients without gRPC.

pub mod etcd;
pub mod holder;

use std::time::Duration;

pub use holder::{Holder, Lease, LeaseHandle, LeaseSettings, Role, Tenure};

impl holder::Store for etcd::Etcd {
    type Error = etcd::EtcdError;

    async fn grant(&self, ttl: Duration) -> Result<i64, Self::Error> {
        etcd::Etcd::grant(self, ttl).await.map(|id| id.0)
    }

    async fn keep_alive(&self, id: i64) -> Result<bool, Self::Error> {
        etcd::Etcd::keep_alive(self, etcd::LeaseId(id))
            .await
            .map(|ttl| ttl.is_some())
    }

    async fn revoke(&self, id: i64) -> Result<(), Self::Error> {
        etcd::Etcd::revoke(self, etcd::LeaseId(id)).await
    }

    async fn acquire(
        &self,
        key: &str,
        value: &[u8],
        id: i64,
    ) -> Result<holder::Claim, Self::Error> {
        Ok(
            match etcd::Etcd::acquire(self, key, value, etcd::LeaseId(id)).await? {
                etcd::Acquire::Acquired { create_revision } => {
                    holder::Claim::Created { create_revision }
                }
                etcd::Acquire::Held(kv) => holder::Claim::Held { value: kv.value },
            },
        )
    }

    async fn holds(&self, key: &str, id: i64, create_revision: i64) -> Result<bool, Self::Error> {
        etcd::Etcd::holds(self, key, etcd::LeaseId(id), create_revision).await
    }
}
