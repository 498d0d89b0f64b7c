//! Property tests: round trips in both header encodings, and robustness of the
//! decoder and the fastjson parser on arbitrary input.

use std::collections::BTreeMap;

use bytes::BytesMut;
use ferry_remoting::fastjson;
use ferry_remoting::{
    BrokerData, FrameCodec, LanguageCode, QueueData, RemotingCommand, RouteDialect, SerializeType,
    TopicRouteData, encode_route,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn arb_command(binary: bool) -> impl Strategy<Value = RemotingCommand> {
    let code = if binary {
        (i16::MIN as i32..=i16::MAX as i32).boxed()
    } else {
        any::<i32>().boxed()
    };
    let version = code.clone();
    // JSON carries language by name; unknown bytes only exist in binary headers.
    let language = if binary {
        any::<u8>().prop_map(LanguageCode::from_code).boxed()
    } else {
        (0u8..14).prop_map(LanguageCode::from_code).boxed()
    };
    (
        code,
        language,
        version,
        any::<i32>(),
        any::<i32>(),
        proptest::option::of("(?s).{1,40}"),
        btree_map("(?s).{0,12}", "(?s).{0,40}", 0..8),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(
            move |(code, language, version, opaque, flag, remark, ext_fields, body)| {
                RemotingCommand {
                    code,
                    language,
                    version,
                    opaque,
                    flag,
                    remark,
                    ext_fields,
                    serialize_type: if binary {
                        SerializeType::RocketMq
                    } else {
                        SerializeType::Json
                    },
                    body: body.into(),
                }
            },
        )
}

fn roundtrip(cmd: &RemotingCommand) -> RemotingCommand {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec.encode(cmd, &mut buf).unwrap();
    let out = codec.decode(&mut buf).unwrap().expect("a whole frame");
    assert!(buf.is_empty());
    out
}

/// Feeds `bytes` in `chunk`-sized pieces; checks the decoder never grows the
/// buffer and every call ends in a frame, `Ok(None)` or an error.
fn feed(bytes: &[u8], chunk: usize, max: usize) {
    let mut codec = FrameCodec::with_max_frame_length(max);
    let mut buf = BytesMut::with_capacity(bytes.len());
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let cap = buf.capacity();
            let len = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    assert!(buf.len() < len);
                    assert!(cmd.body.len() + 8 <= max);
                }
                Ok(None) => {
                    assert_eq!(buf.capacity(), cap, "decoder reserved memory");
                    break;
                }
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        "(?s).{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            btree_map("(?s).{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_route() -> impl Strategy<Value = TopicRouteData> {
    let name = "[a-z\\-é]{1,10}";
    let queue =
        (name, 0..64i32, 0..64i32, 0..8i32, 0..4i32).prop_map(|(n, r, w, p, f)| QueueData {
            broker_name: n,
            read_queue_nums: r,
            write_queue_nums: w,
            perm: p,
            topic_sys_flag: f,
        });
    let broker = (
        name,
        "[A-Za-z]{1,8}",
        btree_map(0i64..4, "[0-9.:]{3,21}", 0..3),
        proptest::option::of("[a-z]{1,5}"),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(n, c, addrs, zone, acting)| BrokerData {
            cluster: c,
            broker_name: n,
            broker_addrs: addrs,
            zone_name: zone,
            enable_acting_master: acting,
        });
    (
        proptest::option::of("[a-z\\-]{1,6}:[0-9];[a-z]{1,4}:[0-9]"),
        vec(queue, 0..5),
        vec(broker, 0..5),
        btree_map("[0-9.:]{3,12}", vec("[0-9.:]{3,12}", 0..3), 0..2),
    )
        .prop_map(|(conf, q, b, fst)| TopicRouteData {
            order_topic_conf: conf,
            queue_datas: q,
            broker_datas: b,
            filter_server_table: fst,
            topic_queue_mapping_by_broker: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_header_roundtrip(cmd in arb_command(false)) {
        prop_assert_eq!(roundtrip(&cmd), cmd);
    }

    #[test]
    fn binary_header_roundtrip(cmd in arb_command(true)) {
        prop_assert_eq!(roundtrip(&cmd), cmd);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        feed(&bytes, chunk, 1024);
    }

    #[test]
    fn arbitrary_bytes_with_plausible_prefix(len in 4u32..600, ty in any::<u8>(), hlen in 0u32..700, rest in vec(any::<u8>(), 0..600)) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(((ty as u32) << 24) | hlen).to_be_bytes());
        bytes.extend_from_slice(&rest);
        feed(&bytes, 7, 512);
    }

    #[test]
    fn mutated_frames_never_panic(
        cmd in prop_oneof![arb_command(false), arb_command(true)],
        flips in vec((any::<usize>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut bytes = cmd.to_frame().unwrap().to_vec();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (bytes.len() + 1));
        }
        feed(&bytes, 3, 4096);
    }

    #[test]
    fn fastjson_parser_never_panics(s in "(?s).{0,200}") {
        let _ = fastjson::parse(&s);
    }

    #[test]
    fn fastjson_parser_never_panics_on_jsonish(s in "[\\[\\]{}:,\"'0-9a-zA-Z\\\\ .+\\-eENIu/*]{0,120}") {
        if let Ok(v) = fastjson::parse(&s) {
            let _ = v.to_json();
            let _ = v.to_compact_json();
        }
    }

    #[test]
    fn fastjson_agrees_with_serde_json(v in arb_json()) {
        let text = serde_json::to_string(&v).unwrap();
        let parsed = fastjson::parse(&text).unwrap();
        prop_assert_eq!(parsed.to_json(), v.clone());
        // And the compact writer produces JSON that means the same.
        let again: serde_json::Value = serde_json::from_str(&parsed.to_compact_json()).unwrap();
        prop_assert_eq!(again, v);
    }

    #[test]
    fn route_roundtrip_both_dialects(route in arb_route()) {
        let mut want = route.clone();
        want.normalize();
        for dialect in [RouteDialect::Standard, RouteDialect::Fastjson] {
            let body = encode_route(&route, dialect);
            let mut got = TopicRouteData::from_body(&body).unwrap();
            got.normalize();
            prop_assert_eq!(&got, &want);
            // Deterministic: re-encoding the parsed route gives the same bytes.
            prop_assert_eq!(encode_route(&got, dialect), body);
        }
        let std = encode_route(&route, RouteDialect::Standard);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&std).is_ok());
        prop_assert!(std.is_ascii());
    }

    #[test]
    fn ext_field_headers_roundtrip(topic in "(?s).{0,30}", accept in proptest::option::of(any::<bool>())) {
        use ferry_remoting::headers::{CommandHeader, GetRouteInfoRequestHeader};
        let h = GetRouteInfoRequestHeader { topic, accept_standard_json_only: accept, ..Default::default() };
        let fields: BTreeMap<String, String> = h.to_ext_fields();
        prop_assert_eq!(GetRouteInfoRequestHeader::from_ext_fields(&fields).unwrap(), h);
    }
}
