//! RocketMQ remoting protocol for Ferry: the pure (I/O-free) layer.
//!
//! - [`command`]: [`RemotingCommand`] with JSON (serializeType 0) and ROCKETMQ binary
//!   (1) headers; lenient JSON decoding like Java's fastjson NameServer.
//! - [`frame`]: [`FrameCodec`], a `tokio_util` codec with a Netty-compatible frame
//!   limit (16 MiB including the 4-byte prefix) checked before allocating.
//! - [`codes`]: request/response codes, [`LanguageCode`], [`SerializeType`], versions.
//! - [`fastjson`]: a tolerant parser for Java fastjson bodies (unquoted integer keys,
//!   inline-object keys, NaN/Infinity, trailing commas; depth ≤ 512) and a lenient
//!   serde deserializer over it.
//! - [`body`] and [`route`]: typed bodies; [`encode_route`] writes a route in the
//!   dialect a Java NameServer would pick ([`RouteDialect::for_request`]).
//! - [`headers`]: typed request headers with canonical Java ext-field keys.
//! - [`acl`]: ACL 1.0 signing (`AclClientRPCHook`) with secret-redacting [`Credentials`].
//!
//! On top, the async (tokio) parts:
//! - [`client`]: [`RemotingClient`], one multiplexed connection per address, opaque
//!   matching, per-call timeouts, ACL signing of every request.
//! - [`namesrv`]: [`NameServerClient`], Java-like sticky selection with failover over
//!   a `host:port;host:port` list, typed NameServer calls.
//! - [`admin`]: [`BrokerAdmin`], typed broker admin calls.
//! - [`auth_admin`]: [`AuthAdmin`], ACL admin calls (ACL 2.0 users/policies, ACL 1.0
//!   accounts) whose secrets never show in `Debug` output or errors.
//! - [`server`]: [`serve_connections`], bounded server-side framing for the router.
//!
//! Errors are one enum, [`RemotingError`]; peer-related variants name the address.
//!
//! # Fuzzing the frame decoder
//!
//! ```text
//! cargo run --release -p ferry-remoting --example fuzz_frames -- 1000000 [seed]
//! cargo test --release -p ferry-remoting --test fuzz -- --ignored --nocapture
//! ```
//! Both feed random and mutated frames (bit flips, truncations, length-field and
//! serialize-type edits, random streams) through [`FrameCodec`] with a small frame
//! limit and assert no panic, no buffer growth, and a clean `Ok(None)`/frame/error
//! outcome; they print the number of frames and the elapsed time.

pub mod acl;
pub mod admin;
pub mod auth_admin;
pub mod body;
pub mod client;
pub mod codes;
pub mod command;
pub mod error;
pub mod fastjson;
pub mod frame;
pub mod headers;
mod jsonw;
pub mod namesrv;
pub mod route;
pub mod server;

pub use acl::{Credentials, calc_signature, sign_request, signature_content, verify_request};
pub use admin::BrokerAdmin;
pub use auth_admin::AuthAdmin;
pub use body::{
    ConsumeStats, ConsumerConnection, DataVersion, DelayOffsetSerializeWrapper,
    GetConsumerListByGroupResponseBody, KVTable, MessageQueue, OffsetWrapper, ProducerConnection,
    SubscriptionGroupConfig, SubscriptionGroupWrapper, TopicConfig, TopicConfigSerializeWrapper,
    TopicList, TopicOffset, TopicStatsTable,
};
pub use client::{ClientConfig, RemotingClient};
pub use codes::{
    FERRY_REMOTING_VERSION, LanguageCode, RequestCode, ResponseCode, SerializeType, mq_version,
};
pub use command::{FLAG_ONEWAY, FLAG_RESPONSE, RemotingCommand};
pub use error::{RemotingError, Result};
pub use frame::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec};
pub use headers::CommandHeader;
pub use namesrv::NameServerClient;
pub use route::{
    BrokerData, ClusterInfo, QueueData, RouteDialect, TopicQueueMappingInfo, TopicRouteData,
    encode_cluster_info, encode_route,
};
pub use server::{RequestHandler, ServerConfig, serve_connections};
