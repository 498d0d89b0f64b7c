//! ACL 1.0 signing against golden values computed independently with Python:
//! `base64.b64encode(hmac.new(key, content, hashlib.sha1).digest())`.

use std::collections::BTreeMap;

use ferry_remoting::acl::{self, Credentials};
use ferry_remoting::{RemotingCommand, RemotingError, RequestCode};

#[test]
fn java_signer_test_vector() {
    // Apache RocketMQ AclSignerTest: calSignature("RocketMQ", "12345678").
    assert_eq!(
        acl::calc_signature(b"RocketMQ", "12345678").unwrap(),
        "IUc8rrO/0gDch8CjObLQsW2rsiA="
    );
}

#[test]
fn signs_request_like_acl_client_rpc_hook() {
    let mut cmd = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
        .with_ext_field("topic", "TopicTest");
    Credentials::new("rocketmq2", "12345678")
        .sign(&mut cmd)
        .unwrap();
    assert_eq!(cmd.ext("AccessKey"), Some("rocketmq2"));
    // content = "rocketmq2" (AccessKey) + "TopicTest" (topic), sorted by key.
    assert_eq!(cmd.ext("Signature"), Some("GeeGoP9mRvDhoVp4PD5omX0prgE="));
    assert!(acl::verify_request(&cmd, "12345678").unwrap());
    assert!(!acl::verify_request(&cmd, "wrong").unwrap());
    // The secret key itself is never put on the wire.
    assert!(cmd.ext_fields.values().all(|v| v != "12345678"));
    assert!(!cmd.ext_fields.contains_key("SecretKey"));
}

#[test]
fn security_token_and_body_are_signed() {
    let mut cmd = RemotingCommand::request(RequestCode::GET_CONSUME_STATS)
        .with_ext_field("topic", "T")
        .with_ext_field("consumerGroup", "G")
        .with_body(&br#"{"a":1}"#[..]);
    let creds = Credentials::new("ak", "sk-secret").with_security_token("tok");
    acl::sign_request(&mut cmd, &creds).unwrap();
    assert_eq!(cmd.ext("SecurityToken"), Some("tok"));
    // AccessKey, SecurityToken, consumerGroup, topic  ->  "ak" "tok" "G" "T" + body.
    assert_eq!(
        acl::signature_content(&cmd.ext_fields, &cmd.body),
        br#"aktokGT{"a":1}"#
    );
    assert_eq!(cmd.ext("Signature"), Some("L1OgOzupChTfxfA3QotTdU/lSvQ="));
    // Re-signing ignores the old Signature field.
    let first = cmd.ext("Signature").unwrap().to_string();
    creds.sign(&mut cmd).unwrap();
    assert_eq!(cmd.ext("Signature"), Some(first.as_str()));
    // Any change after signing breaks it.
    cmd.body = bytes::Bytes::from_static(b"{}");
    assert!(!acl::verify_request(&cmd, "sk-secret").unwrap());
}

#[test]
fn key_order_is_java_utf16_order() {
    // U+10000 (surrogates D800 DC00) sorts before U+E000 in Java's TreeMap,
    // after it in UTF-8 byte order.
    let mut fields = BTreeMap::new();
    fields.insert("\u{e000}".to_string(), "A".to_string());
    fields.insert("\u{10000}".to_string(), "B".to_string());
    fields.insert("AccessKey".to_string(), "ak".to_string());
    fields.insert("Signature".to_string(), "ignored".to_string());
    let content = acl::signature_content(&fields, b"");
    assert_eq!(content, b"akBA");
    assert_eq!(
        acl::calc_signature(&content, "sk").unwrap(),
        "1BAxmDAzf6GqYpNVH9ODHRupPNI="
    );
}

#[test]
fn secret_never_leaks() {
    let secret = "S3cr3t-do-not-log";
    let creds = Credentials::new("ak", secret).with_security_token("token-also-hidden");
    let debug = format!("{creds:?}");
    let pretty = format!("{creds:#?}");
    let display = format!("{creds}");
    for s in [&debug, &pretty, &display] {
        assert!(!s.contains(secret), "{s}");
        assert!(!s.contains("token-also-hidden"), "{s}");
        assert!(s.contains("ak"), "{s}");
    }
    assert!(debug.contains(r#"secret_key: "***""#), "{debug}");

    // Errors do not carry the secret either.
    let empty_ak = Credentials::new("", secret);
    let mut cmd = RemotingCommand::request(RequestCode::GET_KV_CONFIG);
    let err = empty_ak.sign(&mut cmd).unwrap_err();
    assert!(matches!(err, RemotingError::Auth { .. }));
    assert!(!format!("{err} {err:?}").contains(secret));

    let empty_sk = Credentials::new("ak", "");
    let err = empty_sk.sign(&mut cmd).unwrap_err();
    assert!(matches!(err, RemotingError::Auth { .. }), "{err}");

    // A signed command's Debug shows the signature, not the key.
    let mut cmd = RemotingCommand::request(RequestCode::GET_KV_CONFIG);
    creds.sign(&mut cmd).unwrap();
    assert!(!format!("{cmd:?}").contains(secret));
}
