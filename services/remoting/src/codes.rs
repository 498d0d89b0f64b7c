//! Request/response codes, language codes, serialize types and version ordinals,
//! with the names used by Apache RocketMQ (`RequestCode.java`, `ResponseCode.java`,
//! `RemotingSysResponseCode.java`, `LanguageCode.java`, `SerializeType.java`,
//! `MQVersion.java`).

use std::fmt;

macro_rules! code_type {
    ($(#[$meta:meta])* $ty:ident { $($name:ident = $val:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(pub i32);

        impl $ty {
            $(pub const $name: $ty = $ty($val);)*

            /// Every named code, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$name),*];

            /// The numeric code.
            pub const fn code(self) -> i32 {
                self.0
            }

            /// The Java constant name of `code`, if it is a known one.
            pub fn name_of(code: i32) -> Option<&'static str> {
                match code {
                    $(v if v == $val => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Like [`Self::name_of`], `"UNKNOWN"` for unknown codes (for messages).
            pub fn name_or_unknown(code: i32) -> &'static str {
                Self::name_of(code).unwrap_or("UNKNOWN")
            }

            /// The Java constant name, if known.
            pub fn name(self) -> Option<&'static str> {
                Self::name_of(self.0)
            }
        }

        impl From<$ty> for i32 {
            fn from(c: $ty) -> i32 {
                c.0
            }
        }

        impl PartialEq<i32> for $ty {
            fn eq(&self, other: &i32) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$ty> for i32 {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({})", n, self.0),
                    None => write!(f, "{}", self.0),
                }
            }
        }
    };
}

code_type! {
    /// Request codes (`RP/RequestCode.java`), the subset Ferry sends or serves.
    RequestCode {
        SEND_MESSAGE = 10,
        PULL_MESSAGE = 11,
        QUERY_CONSUMER_OFFSET = 14,
        UPDATE_CONSUMER_OFFSET = 15,
        UPDATE_AND_CREATE_TOPIC = 17,
        UPDATE_AND_CREATE_TOPIC_LIST = 18,
        GET_ALL_TOPIC_CONFIG = 21,
        UPDATE_BROKER_CONFIG = 25,
        GET_BROKER_CONFIG = 26,
        GET_BROKER_RUNTIME_INFO = 28,
        GET_MAX_OFFSET = 30,
        GET_MIN_OFFSET = 31,
        HEART_BEAT = 34,
        UNREGISTER_CLIENT = 35,
        CONSUMER_SEND_MSG_BACK = 36,
        END_TRANSACTION = 37,
        GET_CONSUMER_LIST_BY_GROUP = 38,
        CHECK_TRANSACTION_STATE = 39,
        NOTIFY_CONSUMER_IDS_CHANGED = 40,
        LOCK_BATCH_MQ = 41,
        UNLOCK_BATCH_MQ = 42,
        GET_ALL_DELAY_OFFSET = 45,
        UPDATE_AND_CREATE_ACL_CONFIG = 50,
        DELETE_ACL_CONFIG = 51,
        GET_BROKER_CLUSTER_ACL_INFO = 52,
        PUT_KV_CONFIG = 100,
        GET_KV_CONFIG = 101,
        DELETE_KV_CONFIG = 102,
        REGISTER_BROKER = 103,
        UNREGISTER_BROKER = 104,
        GET_ROUTEINFO_BY_TOPIC = 105,
        GET_BROKER_CLUSTER_INFO = 106,
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200,
        GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201,
        GET_TOPIC_STATS_INFO = 202,
        GET_CONSUMER_CONNECTION_LIST = 203,
        GET_PRODUCER_CONNECTION_LIST = 204,
        WIPE_WRITE_PERM_OF_BROKER = 205,
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206,
        DELETE_SUBSCRIPTIONGROUP = 207,
        GET_CONSUME_STATS = 208,
        DELETE_TOPIC_IN_BROKER = 215,
        DELETE_TOPIC_IN_NAMESRV = 216,
        REGISTER_TOPIC_IN_NAMESRV = 217,
        GET_KVLIST_BY_NAMESPACE = 219,
        GET_TOPICS_BY_CLUSTER = 224,
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST = 225,
        GET_SYSTEM_TOPIC_LIST_FROM_NS = 304,
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER = 305,
        GET_CONSUMER_RUNNING_INFO = 307,
        SEND_MESSAGE_V2 = 310,
        GET_UNIT_TOPIC_LIST = 311,
        GET_HAS_UNIT_SUB_TOPIC_LIST = 312,
        GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST = 313,
        UPDATE_NAMESRV_CONFIG = 318,
        GET_NAMESRV_CONFIG = 319,
        SEND_BATCH_MESSAGE = 320,
        QUERY_DATA_VERSION = 322,
        ADD_WRITE_PERM_OF_BROKER = 327,
        GET_TOPIC_CONFIG = 351,
        GET_SUBSCRIPTIONGROUP_CONFIG = 352,
        LITE_PULL_MESSAGE = 361,
        QUERY_ASSIGNMENT = 400,
        SET_MESSAGE_REQUEST_MODE = 401,
        GET_BROKER_MEMBER_GROUP = 901,
        BROKER_HEARTBEAT = 904,
        AUTH_CREATE_USER = 3001,
        AUTH_UPDATE_USER = 3002,
        AUTH_DELETE_USER = 3003,
        AUTH_GET_USER = 3004,
        AUTH_LIST_USER = 3005,
        AUTH_CREATE_ACL = 3006,
        AUTH_UPDATE_ACL = 3007,
        AUTH_DELETE_ACL = 3008,
        AUTH_GET_ACL = 3009,
        AUTH_LIST_ACL = 3010,
        // > i16::MAX: only usable with JSON headers (the binary header truncates).
        POP_MESSAGE = 200050,
        ACK_MESSAGE = 200051,
        PEEK_MESSAGE = 200052,
        CHANGE_MESSAGE_INVISIBLETIME = 200053,
        NOTIFICATION = 200054,
        POLLING_INFO = 200055,
        POP_ROLLBACK = 200056,
        BATCH_ACK_MESSAGE = 200151,
    }
}

impl RequestCode {
    /// The codes a Java NameServer serves (NamesrvController + DefaultRequestProcessor);
    /// everything else gets REQUEST_CODE_NOT_SUPPORTED from it.
    pub const NAMESRV_CODES: &'static [RequestCode] = &[
        RequestCode::PUT_KV_CONFIG,
        RequestCode::GET_KV_CONFIG,
        RequestCode::DELETE_KV_CONFIG,
        RequestCode::QUERY_DATA_VERSION,
        RequestCode::REGISTER_BROKER,
        RequestCode::UNREGISTER_BROKER,
        RequestCode::BROKER_HEARTBEAT,
        RequestCode::GET_BROKER_MEMBER_GROUP,
        RequestCode::GET_BROKER_CLUSTER_INFO,
        RequestCode::WIPE_WRITE_PERM_OF_BROKER,
        RequestCode::ADD_WRITE_PERM_OF_BROKER,
        RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        RequestCode::DELETE_TOPIC_IN_NAMESRV,
        RequestCode::REGISTER_TOPIC_IN_NAMESRV,
        RequestCode::GET_KVLIST_BY_NAMESPACE,
        RequestCode::GET_TOPICS_BY_CLUSTER,
        RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_NS,
        RequestCode::GET_UNIT_TOPIC_LIST,
        RequestCode::GET_HAS_UNIT_SUB_TOPIC_LIST,
        RequestCode::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
        RequestCode::UPDATE_NAMESRV_CONFIG,
        RequestCode::GET_NAMESRV_CONFIG,
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
    ];
}

code_type! {
    /// Response codes (`RemotingSysResponseCode.java` 0..4 and `ResponseCode.java`).
    ResponseCode {
        SUCCESS = 0,
        SYSTEM_ERROR = 1,
        SYSTEM_BUSY = 2,
        REQUEST_CODE_NOT_SUPPORTED = 3,
        TRANSACTION_FAILED = 4,
        FLUSH_DISK_TIMEOUT = 10,
        SLAVE_NOT_AVAILABLE = 11,
        FLUSH_SLAVE_TIMEOUT = 12,
        MESSAGE_ILLEGAL = 13,
        SERVICE_NOT_AVAILABLE = 14,
        VERSION_NOT_SUPPORTED = 15,
        NO_PERMISSION = 16,
        TOPIC_NOT_EXIST = 17,
        TOPIC_EXIST_ALREADY = 18,
        PULL_NOT_FOUND = 19,
        PULL_RETRY_IMMEDIATELY = 20,
        PULL_OFFSET_MOVED = 21,
        QUERY_NOT_FOUND = 22,
        SUBSCRIPTION_PARSE_FAILED = 23,
        SUBSCRIPTION_NOT_EXIST = 24,
        SUBSCRIPTION_NOT_LATEST = 25,
        SUBSCRIPTION_GROUP_NOT_EXIST = 26,
        FILTER_DATA_NOT_EXIST = 27,
        FILTER_DATA_NOT_LATEST = 28,
        INVALID_PARAMETER = 29,
        TRANSACTION_SHOULD_COMMIT = 200,
        TRANSACTION_SHOULD_ROLLBACK = 201,
        TRANSACTION_STATE_UNKNOW = 202,
        TRANSACTION_STATE_GROUP_WRONG = 203,
        NO_BUYER_ID = 204,
        NOT_IN_CURRENT_UNIT = 205,
        CONSUMER_NOT_ONLINE = 206,
        CONSUME_MSG_TIMEOUT = 207,
        NO_MESSAGE = 208,
        POLLING_FULL = 209,
        POLLING_TIMEOUT = 210,
        BROKER_NOT_EXIST = 211,
        BROKER_DISPATCH_NOT_COMPLETE = 212,
        BROADCAST_CONSUMPTION = 213,
        FLOW_CONTROL = 215,
        NOT_LEADER_FOR_QUEUE = 501,
        ILLEGAL_OPERATION = 604,
        GO_AWAY = 1500,
        USER_NOT_EXIST = 3001,
        POLICY_NOT_EXIST = 3002,
    }
}

/// `MQVersion.Version` ordinals that matter on the wire (the `version` header field).
pub mod mq_version {
    pub const V4_0_0: i32 = 213;
    pub const V4_5_2: i32 = 317;
    /// From this version on, the NameServer answers routes with standard (quoted-key) JSON.
    pub const V4_9_4: i32 = 401;
    pub const V4_9_8: i32 = 409;
    pub const V5_0_0: i32 = 413;
    pub const V5_1_0: i32 = 433;
    pub const V5_3_0: i32 = 473;
    pub const V5_3_3: i32 = 479;
}

/// The `version` Ferry puts on requests it sends: >= 401, so Java NameServers answer
/// routes in standard JSON (we still parse fastjson, see [`crate::fastjson`]).
pub const FERRY_REMOTING_VERSION: i32 = mq_version::V5_3_3;

/// `SerializeType.java`: how the header is encoded; carried in the high byte of the
/// header-length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// fastjson text header (Java's default).
    #[default]
    Json,
    /// The compact binary header (`RocketMQSerializable`).
    RocketMq,
}

impl SerializeType {
    pub const fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }

    /// The Java enum name (`"JSON"` / `"ROCKETMQ"`), as written in JSON headers.
    pub const fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// `LanguageCode.java`. Unknown binary codes are kept as `Unknown(byte)` so a header
/// re-encodes byte-identically; unknown JSON names decode as [`LanguageCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LanguageCode {
    /// Default of Java's `RemotingCommand`; also what Ferry sends, because servers
    /// older than 4.9.4 cannot parse `"RUST"` in a JSON header.
    #[default]
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
    /// A byte not in the table (binary headers only).
    Unknown(u8),
}

impl LanguageCode {
    const TABLE: [(LanguageCode, &'static str); 14] = [
        (LanguageCode::Java, "JAVA"),
        (LanguageCode::Cpp, "CPP"),
        (LanguageCode::Dotnet, "DOTNET"),
        (LanguageCode::Python, "PYTHON"),
        (LanguageCode::Delphi, "DELPHI"),
        (LanguageCode::Erlang, "ERLANG"),
        (LanguageCode::Ruby, "RUBY"),
        (LanguageCode::Other, "OTHER"),
        (LanguageCode::Http, "HTTP"),
        (LanguageCode::Go, "GO"),
        (LanguageCode::Php, "PHP"),
        (LanguageCode::Oms, "OMS"),
        (LanguageCode::Rust, "RUST"),
        (LanguageCode::NodeJs, "NODE_JS"),
    ];

    /// The byte used in binary headers (equal to the Java enum ordinal).
    pub fn code(self) -> u8 {
        match self {
            LanguageCode::Unknown(b) => b,
            known => Self::TABLE
                .iter()
                .position(|(l, _)| *l == known)
                .map_or(7, |i| i as u8),
        }
    }

    pub fn from_code(code: u8) -> Self {
        Self::TABLE
            .get(code as usize)
            .map_or(LanguageCode::Unknown(code), |(l, _)| *l)
    }

    /// The Java enum name; `Unknown` is written as `"OTHER"` because a Java server
    /// fails to parse an unknown enum name or ordinal.
    pub fn name(self) -> &'static str {
        match self {
            LanguageCode::Unknown(_) => "OTHER",
            known => Self::TABLE[known.code() as usize].1,
        }
    }

    /// Case-insensitive lookup by Java name; `"NODEJS"` is accepted for `NODE_JS`.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim();
        Self::TABLE
            .iter()
            .find(|(_, s)| s.eq_ignore_ascii_case(n))
            .map(|(l, _)| *l)
            .or_else(|| {
                n.eq_ignore_ascii_case("NODEJS")
                    .then_some(LanguageCode::NodeJs)
            })
    }
}

impl fmt::Display for LanguageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LanguageCode::Unknown(b) => write!(f, "UNKNOWN({b})"),
            l => f.write_str(l.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_match_java_table() {
        for b in 0u8..=255 {
            let l = LanguageCode::from_code(b);
            assert_eq!(l.code(), b);
            if b <= 13 {
                assert_eq!(LanguageCode::from_name(l.name()), Some(l));
            } else {
                assert_eq!(l, LanguageCode::Unknown(b));
            }
        }
        assert_eq!(LanguageCode::Go.code(), 9);
        assert_eq!(LanguageCode::Rust.code(), 12);
        assert_eq!(LanguageCode::NodeJs.name(), "NODE_JS");
        assert_eq!(LanguageCode::from_name("go"), Some(LanguageCode::Go));
    }

    #[test]
    fn code_names() {
        assert_eq!(RequestCode::name_of(105), Some("GET_ROUTEINFO_BY_TOPIC"));
        assert_eq!(ResponseCode::name_of(206), Some("CONSUMER_NOT_ONLINE"));
        assert_eq!(ResponseCode::TOPIC_NOT_EXIST, 17);
        assert_eq!(17, ResponseCode::TOPIC_NOT_EXIST);
        assert_eq!(
            RequestCode::GET_CONSUME_STATS.to_string(),
            "GET_CONSUME_STATS(208)"
        );
        for c in [
            17, 18, 21, 26, 28, 34, 38, 100, 101, 102, 103, 104, 105, 106, 200, 201, 202, 203, 204,
            205, 206, 207, 208, 215, 216, 219, 224, 225, 304, 311, 312, 313, 318, 319, 322, 327,
            901, 904,
        ] {
            assert!(
                RequestCode::name_of(c).is_some(),
                "missing request code {c}"
            );
        }
        // Names are unique per table.
        let mut names: Vec<_> = RequestCode::ALL.iter().map(|c| c.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RequestCode::ALL.len());
    }
}
