//! Frames built byte by byte the way Java (and the Go client) writes them.

use bytes::{Bytes, BytesMut};
use ferry_remoting::{
    FrameCodec, LanguageCode, RemotingCommand, RemotingError, RequestCode, ResponseCode,
    SerializeType,
};
use tokio_util::codec::{Decoder, Encoder};

/// `int32 totalLen | int32 (type << 24 | headerLen) | header | body`
fn frame(serialize_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let total = 4 + header.len() + body.len();
    let mut out = Vec::new();
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(((serialize_type as u32) << 24) | header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

fn decode_all(bytes: &[u8]) -> Vec<RemotingCommand> {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(cmd) = codec.decode(&mut buf).unwrap() {
        out.push(cmd);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

const JAVA_ROUTE_REQUEST: &str = r#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":479}"#;

#[test]
fn java_json_request_frame() {
    let bytes = frame(0, JAVA_ROUTE_REQUEST.as_bytes(), b"");
    // Length prefix and header-length field as Java writes them.
    assert_eq!(
        &bytes[..4],
        &(4 + JAVA_ROUTE_REQUEST.len() as u32).to_be_bytes()
    );
    assert_eq!(bytes[4], 0, "serialize type JSON in the high byte");

    let cmds = decode_all(&bytes);
    let cmd = &cmds[0];
    assert_eq!(cmd.code, RequestCode::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.version, 479);
    assert_eq!(cmd.opaque, 3);
    assert!(!cmd.is_response());
    assert!(!cmd.is_oneway());
    assert_eq!(cmd.ext("topic"), Some("TopicTest"));
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert!(cmd.body.is_empty());

    // Ferry's encoder writes exactly what Java writes.
    let ours = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
        .with_opaque(3)
        .with_ext_field("topic", "TopicTest");
    assert_eq!(ours.to_frame().unwrap(), Bytes::from(bytes));
}

#[test]
fn go_client_json_frame_without_serialize_type() {
    // rocketmq-client-go v2: struct field order, "remark":"", no serializeTypeCurrentRPC.
    let header = br#"{"code":105,"language":"GO","version":317,"opaque":1,"flag":0,"remark":"","extFields":{"topic":"T","acceptStandardJsonOnly":false}}"#;
    let cmd = &decode_all(&frame(0, header, b""))[0];
    assert_eq!(cmd.language, LanguageCode::Go);
    assert_eq!(cmd.version, 317);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext("acceptStandardJsonOnly"), Some("false"));
    assert_eq!(
        ferry_remoting::RouteDialect::for_command(cmd),
        ferry_remoting::RouteDialect::Fastjson
    );
}

#[test]
fn java_json_response_frame_with_body() {
    let header = br#"{"code":0,"flag":1,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    let body = br#"{"topicList":["A"]}"#;
    let cmd = &decode_all(&frame(0, header, body))[0];
    assert!(cmd.is_response());
    assert_eq!(cmd.code, ResponseCode::SUCCESS);
    assert_eq!(&cmd.body[..], body);
}

/// RocketMQSerializable.rocketMQProtocolEncode, by hand.
fn binary_header(
    code: i16,
    lang: u8,
    version: i16,
    opaque: i32,
    flag: i32,
    remark: &str,
    ext: &[(&str, &str)],
) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&code.to_be_bytes());
    h.push(lang);
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&opaque.to_be_bytes());
    h.extend_from_slice(&flag.to_be_bytes());
    h.extend_from_slice(&(remark.len() as i32).to_be_bytes());
    h.extend_from_slice(remark.as_bytes());
    let mut map = Vec::new();
    for (k, v) in ext {
        map.extend_from_slice(&(k.len() as i16).to_be_bytes());
        map.extend_from_slice(k.as_bytes());
        map.extend_from_slice(&(v.len() as i32).to_be_bytes());
        map.extend_from_slice(v.as_bytes());
    }
    h.extend_from_slice(&(map.len() as i32).to_be_bytes());
    h.extend_from_slice(&map);
    h
}

#[test]
fn java_binary_request_frame() {
    // HashMap order (not sorted), as Java may emit it.
    let header = binary_header(
        105,
        0,
        479,
        42,
        0,
        "",
        &[
            ("topic", "TopicTest"),
            ("acceptStandardJsonOnly", "true"),
            ("empty", ""),
        ],
    );
    let bytes = frame(1, &header, b"body!");
    assert_eq!(bytes[4], 1, "serialize type ROCKETMQ in the high byte");
    let cmd = &decode_all(&bytes)[0];
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.version, 479);
    assert_eq!(cmd.opaque, 42);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext("topic"), Some("TopicTest"));
    assert_eq!(cmd.ext("acceptStandardJsonOnly"), Some("true"));
    // Java reads a zero-length value as null; we keep it as "".
    assert_eq!(cmd.ext("empty"), Some(""));
    assert_eq!(&cmd.body[..], b"body!");
}

#[test]
fn java_binary_response_frame_signed_fields() {
    let remark = "No topic route info in name server for the topic: T";
    let header = binary_header(17, 0, 479, 7, 1, remark, &[]);
    let cmd = &decode_all(&frame(1, &header, b""))[0];
    assert_eq!(cmd.code, ResponseCode::TOPIC_NOT_EXIST);
    assert!(cmd.is_response());
    assert_eq!(cmd.remark.as_deref(), Some(remark));
    assert!(cmd.ext_fields.is_empty());

    // Java `short`: 0xFFFF is -1, 0x8000 is -32768.
    let header = binary_header(-1, 12, i16::MIN, -5, 3, "é", &[("k", "v")]);
    let cmd = &decode_all(&frame(1, &header, b""))[0];
    assert_eq!(cmd.code, -1);
    assert_eq!(cmd.version, -32768);
    assert_eq!(cmd.opaque, -5);
    assert!(cmd.is_oneway() && cmd.is_response());
    assert_eq!(cmd.language, LanguageCode::Rust);
    assert_eq!(cmd.remark.as_deref(), Some("é"));
}

#[test]
fn our_binary_encoding_matches_java_layout() {
    let cmd = RemotingCommand::request(RequestCode::GET_KV_CONFIG)
        .with_opaque(9)
        .with_ext_field("key", "T")
        .with_ext_field("namespace", "ORDER_TOPIC_CONFIG")
        .with_serialize_type(SerializeType::RocketMq)
        .with_body(&b"xy"[..]);
    let header = binary_header(
        101,
        0,
        479,
        9,
        0,
        "",
        &[("key", "T"), ("namespace", "ORDER_TOPIC_CONFIG")],
    );
    assert_eq!(
        cmd.to_frame().unwrap(),
        Bytes::from(frame(1, &header, b"xy"))
    );
}

#[test]
fn frames_split_across_reads_and_batched() {
    let a = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO).with_opaque(1);
    let b = RemotingCommand::response(ResponseCode::SYSTEM_ERROR, Some("disable".into()))
        .with_opaque(2)
        .with_serialize_type(SerializeType::RocketMq)
        .with_body(vec![7u8; 300]);
    let mut stream = BytesMut::new();
    let mut codec = FrameCodec::new();
    codec.encode(&a, &mut stream).unwrap();
    codec.encode(b.clone(), &mut stream).unwrap();

    // All at once.
    let cmds = decode_all(&stream);
    assert_eq!(cmds, [a.clone(), b.clone()]);

    // One byte at a time.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in stream.iter() {
        buf.extend_from_slice(&[*byte]);
        while let Some(cmd) = codec.decode(&mut buf).unwrap() {
            got.push(cmd);
        }
    }
    assert_eq!(got, [a, b]);
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
}

#[test]
fn malformed_frames() {
    let json = br#"{"code":1}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header longer than frame", {
            let mut f = frame(0, json, b"");
            f[7] = 200;
            f
        }),
        ("unknown serialize type", frame(2, json, b"")),
        ("JSON header not JSON", frame(0, b"{oops", b"")),
        ("binary header truncated", frame(1, &[0, 105, 0], b"")),
        ("binary remark overruns", {
            let mut h = binary_header(105, 0, 1, 1, 0, "", &[]);
            h[13..17].copy_from_slice(&100i32.to_be_bytes());
            frame(1, &h, b"")
        }),
        ("binary negative remark length", {
            let mut h = binary_header(105, 0, 1, 1, 0, "", &[]);
            h[13..17].copy_from_slice(&(-1i32).to_be_bytes());
            frame(1, &h, b"")
        }),
        ("binary ext overruns", {
            let mut h = binary_header(105, 0, 1, 1, 0, "", &[("k", "v")]);
            let n = h.len();
            h[n - 1 - 4..n - 1].copy_from_slice(&50i32.to_be_bytes()); // value length
            frame(1, &h, b"")
        }),
    ];
    for (what, bytes) in cases {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..]);
        match codec.decode(&mut buf) {
            Err(RemotingError::Malformed { reason }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn encoder_enforces_limit() {
    let mut codec = FrameCodec::with_max_frame_length(1024);
    let big = RemotingCommand::request(RequestCode::REGISTER_BROKER).with_body(vec![0u8; 2000]);
    let mut dst = BytesMut::new();
    assert!(matches!(
        codec.encode(&big, &mut dst),
        Err(RemotingError::FrameTooLarge { max: 1024, .. })
    ));
    assert!(dst.is_empty());
}

#[test]
fn decoder_accepts_exactly_16_mib_frames() {
    let mut codec = FrameCodec::new();
    let header = br#"{"code":0,"flag":1}"#;
    let body_len = 16 * 1024 * 1024 - 8 - header.len();
    let mut bytes = frame(0, header, &[]);
    bytes.resize(bytes.len() + body_len, b'x');
    let total = (4 + header.len() + body_len) as u32;
    bytes[..4].copy_from_slice(&total.to_be_bytes());
    assert_eq!(bytes.len(), 16 * 1024 * 1024);
    let mut buf = BytesMut::from(&bytes[..]);
    let cmd = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(cmd.body.len(), body_len);
    // One more byte is over Netty's limit.
    let mut over = BytesMut::from(&(total + 1).to_be_bytes()[..]);
    assert!(matches!(
        codec.decode(&mut over),
        Err(RemotingError::FrameTooLarge { len, .. }) if len == 16 * 1024 * 1024 + 1
    ));
}
