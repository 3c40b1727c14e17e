//! The gateway's JSON, as etcd 3.4 writes it: the answers [`super::Etcd`] reads, and the
//! conversions of its int64 strings and base64 bytes. Kept apart from the calls so that what etcd
//! sends is in one place, checked against captured answers in `tests.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{EtcdError, KeyValue, LeaseId, bad_answer};

pub(super) fn decode<T: DeserializeOwned>(
    endpoint: &str,
    path: &'static str,
    v: Value,
) -> Result<T, EtcdError> {
    serde_json::from_value(v).map_err(|e| bad_answer(endpoint.to_owned(), path, &e.to_string()))
}

/// An int64 as the gateway writes it (a string), or as a number should a proxy rewrite it.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Bytes as the gateway writes them (base64).
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    BASE64.decode(s).map_err(serde::de::Error::custom)
}

/// `{"error": "...", "message": "...", "code": N}`, the gateway's answer to a failed unary call.
#[derive(Deserialize)]
pub(super) struct GatewayError {
    #[serde(default)]
    pub(super) error: String,
    #[serde(default)]
    pub(super) message: String,
    pub(super) code: i32,
}

/// One message of a streaming call.
#[derive(Deserialize)]
pub(super) struct StreamChunk {
    #[serde(default)]
    pub(super) result: Option<Value>,
    #[serde(default)]
    pub(super) error: Option<StreamError>,
}

/// A streaming call's error: the gateway's `runtime.StreamError`.
#[derive(Deserialize)]
pub(super) struct StreamError {
    #[serde(default, alias = "grpcCode")]
    pub(super) grpc_code: i32,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Deserialize)]
pub(super) struct GrantAnswer {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    pub(super) id: i64,
    #[serde(default)]
    pub(super) error: String,
}

#[derive(Deserialize)]
pub(super) struct KeepAliveAnswer {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    pub(super) id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    pub(super) ttl: i64,
}

#[derive(Deserialize)]
pub(super) struct AuthAnswer {
    #[serde(default)]
    pub(super) token: String,
}

#[derive(Deserialize)]
pub(super) struct TxnAnswer {
    #[serde(default)]
    pub(super) succeeded: bool,
    #[serde(default)]
    pub(super) responses: Vec<ResponseOp>,
}

#[derive(Deserialize)]
pub(super) struct ResponseOp {
    #[serde(default, alias = "responseRange")]
    pub(super) response_range: Option<RangeAnswer>,
}

#[derive(Deserialize)]
pub(super) struct RangeAnswer {
    #[serde(default)]
    pub(super) kvs: Vec<WireKeyValue>,
}

/// `mvccpb.KeyValue` in JSON.
#[derive(Deserialize)]
pub(super) struct WireKeyValue {
    #[serde(default, deserialize_with = "bytes")]
    pub(super) key: Vec<u8>,
    #[serde(default, deserialize_with = "bytes")]
    pub(super) value: Vec<u8>,
    #[serde(default, alias = "createRevision", deserialize_with = "int64")]
    pub(super) create_revision: i64,
    #[serde(default, alias = "modRevision", deserialize_with = "int64")]
    pub(super) mod_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    pub(super) lease: i64,
}

impl WireKeyValue {
    /// The key value, checked to be `key` (etcd answered for the key asked about).
    pub(super) fn into_key_value(
        self,
        endpoint: &str,
        path: &'static str,
        key: &str,
    ) -> Result<KeyValue, EtcdError> {
        if self.key != key.as_bytes() {
            return Err(bad_answer(
                endpoint.to_owned(),
                path,
                &format!(
                    "a key {:?} instead of {key:?}",
                    String::from_utf8_lossy(&self.key)
                ),
            ));
        }
        Ok(KeyValue {
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            lease: LeaseId(self.lease),
        })
    }
}
