//! The client's pure parts: reading captured gateway answers, checking settings.

use super::wire::*;
use super::*;

#[test]
fn reads_what_the_gateway_writes() {
    // Answers captured from etcd 3.4.23.
    let failure: TxnAnswer = serde_json::from_str(
        r#"{"header":{"revision":"4"},"responses":[{"response_range":{"header":{"revision":"4"},
        "kvs":[{"key":"L3Jvc3Rlci9sZWFkZXI=","create_revision":"4","mod_revision":"4",
        "version":"1","value":"aG9zdC1h","lease":"7587899381254375446"}],"count":"1"}}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!failure.succeeded);
    let kv = failure
        .responses
        .into_iter()
        .find_map(|r| r.response_range)
        .and_then(|r| r.kvs.into_iter().next())
        .map(|kv| kv.into_key_value("e", "/p", "/roster/leader"));
    let Some(Ok(kv)) = kv else {
        panic!("no key value: {kv:?}")
    };
    assert_eq!(kv.value, b"host-a");
    assert_eq!(kv.create_revision, 4);
    assert_eq!(kv.lease, LeaseId(7587899381254375446));

    let expired: StreamChunk = serde_json::from_str(
        r#"{"result":{"header":{"revision":"3"},"ID":"7587899381254375442"}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a: KeepAliveAnswer = serde_json::from_value(expired.result.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((a.id, a.ttl), (7587899381254375442, 0));

    let e: GatewayError = serde_json::from_str(
        r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.code, 5);
}

#[test]
fn settings_are_checked_before_anything_is_sent() {
    let check = |s: EtcdSettings| Etcd::new(&s).err().map(|e| e.to_string());
    assert!(check(EtcdSettings::new(vec![])).is_some());
    assert!(check(EtcdSettings::new(vec!["127.0.0.1:2379".into()])).is_some());
    assert!(check(EtcdSettings::new(vec!["http://h:1/v3".into()])).is_some());
    let leak = check(EtcdSettings::new(vec!["http://u:hunter2@h:1".into()]));
    assert!(
        leak.as_deref().is_some_and(|m| !m.contains("hunter2")),
        "{leak:?}"
    );
    let mut s = EtcdSettings::new(vec!["http://h:1/".into()]);
    assert!(check(s.clone()).is_none());
    s.username = Some("root".into());
    assert!(check(s.clone()).is_some());
    s.password = Some(Secret::new("hunter2"));
    let etcd = Etcd::new(&s).unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{etcd:?}").contains("hunter2"));
}

#[test]
fn lease_ids_print_as_etcdctl_does() {
    assert_eq!(
        LeaseId(0x694d_7a0c_2f35_4c0e).to_string(),
        "694d7a0c2f354c0e"
    );
}
