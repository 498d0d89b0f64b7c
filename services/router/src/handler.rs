//! The NameServer-protocol handler: what the router answers to each request code.
//!
//! | code | answer |
//! |---|---|
//! | 105 GET_ROUTEINFO_BY_TOPIC | the merged route of the topic's stage ([`crate::merge`]), in the JSON dialect a Java NameServer would pick for the caller (quoted keys iff `version >= 401 \|\| acceptStandardJsonOnly`) |
//! | 106 GET_BROKER_CLUSTER_INFO | both clusters' tables (source only while broker names collide); same dialect rule (a Java NameServer always writes unquoted keys here, which clients >= 4.9.4 parse either way) |
//! | 206, 224, 304, 311, 312, 313 (topic lists) | union of both clusters' lists; a cluster that does not answer contributes its last good list |
//! | 101 / 219 in namespace `ORDER_TOPIC_CONFIG` | both clusters' values merged per topic (source entries first) |
//! | 103, 104, 904 (broker registration, heartbeat) | refused (REQUEST_CODE_NOT_SUPPORTED): brokers keep registering with their own NameServers |
//! | 205, 327, 901 (per broker) | forwarded to the cluster that has the broker |
//! | other NameServer codes (100, 102, 216, 217, 318, 319, 322, other KV namespaces, ...) | forwarded to the cluster that owns the traffic: the source, or the target once every topic of the task is DONE |
//! | anything else | REQUEST_CODE_NOT_SUPPORTED, as a Java NameServer answers |
//!
//! Oneway requests are never answered (the server layer guarantees it); the router does not
//! act on them either. Until the task is loaded every request gets SYSTEM_ERROR naming the
//! reason (clients keep their current routes on errors). Each request runs in a
//! `namesrv.request` span with its code, peer, opaque, topic and result.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ferry_core::perm::Side;
use ferry_remoting::body::TopicList;
use ferry_remoting::{
    RemotingCommand, RequestCode, RequestHandler, ResponseCode, RouteDialect, encode_cluster_info,
    encode_route,
};
use tracing::Instrument;

use crate::merge::{
    MergeOutcome, ORDER_TOPIC_CONFIG, merge_cluster_info, merge_order_kv, merge_order_values,
    merge_topic_lists,
};
use crate::metrics;
use crate::router::{Router, Upstreams};
use crate::upstream::{Fetched, side_name};

/// Java's suffix of the TOPIC_NOT_EXIST remark (`FAQUrl.suggestTodo(APPLY_TOPIC_URL)`).
const FAQ: &str = "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

/// The router's [`RequestHandler`].
pub struct NamesrvHandler {
    router: Arc<Router>,
    /// Peers already told that broker writes are refused (bounded), to log once each.
    refused_peers: Mutex<HashSet<IpAddr>>,
}

type Answer = (Option<RemotingCommand>, &'static str);

impl NamesrvHandler {
    pub fn new(router: Arc<Router>) -> Arc<Self> {
        Arc::new(NamesrvHandler {
            router,
            refused_peers: Mutex::new(HashSet::new()),
        })
    }

    async fn dispatch(&self, peer: SocketAddr, req: &RemotingCommand) -> Answer {
        if req.is_oneway() {
            tracing::debug!("oneway request: not answered, not acted on");
            return (None, "oneway");
        }
        let code = req.code;
        if [
            RequestCode::REGISTER_BROKER,
            RequestCode::UNREGISTER_BROKER,
            RequestCode::BROKER_HEARTBEAT,
        ]
        .iter()
        .any(|c| *c == code)
        {
            return self.refuse(peer, req);
        }
        if !RequestCode::NAMESRV_CODES.iter().any(|c| *c == code) {
            tracing::debug!("request code not supported by a NameServer");
            return (Some(req.not_supported_response()), "not_supported");
        }
        let Some(ups) = self.router.upstreams() else {
            return error(
                req,
                format!(
                    "name server not ready: ferry router: {}",
                    self.router.not_ready_reason()
                ),
            );
        };
        match RequestCode(code) {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => self.route(peer, req).await,
            RequestCode::GET_BROKER_CLUSTER_INFO => self.cluster_info(&ups, req).await,
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER
            | RequestCode::GET_TOPICS_BY_CLUSTER
            | RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_NS
            | RequestCode::GET_UNIT_TOPIC_LIST
            | RequestCode::GET_HAS_UNIT_SUB_TOPIC_LIST
            | RequestCode::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => self.topic_list(&ups, req).await,
            RequestCode::GET_KV_CONFIG if req.ext("namespace") == Some(ORDER_TOPIC_CONFIG) => {
                self.order_kv(&ups, req)
            }
            RequestCode::GET_KVLIST_BY_NAMESPACE
                if req.ext("namespace") == Some(ORDER_TOPIC_CONFIG) =>
            {
                self.order_kv_list(&ups, req)
            }
            RequestCode::WIPE_WRITE_PERM_OF_BROKER
            | RequestCode::ADD_WRITE_PERM_OF_BROKER
            | RequestCode::GET_BROKER_MEMBER_GROUP => {
                let side = req.ext("brokerName").map_or_else(
                    || self.router.owner(),
                    |b| broker_side(&ups, b, self.router.owner()),
                );
                forward(&ups, side, req).await
            }
            _ => forward(&ups, self.router.owner(), req).await,
        }
    }

    fn refuse(&self, peer: SocketAddr, req: &RemotingCommand) -> Answer {
        let first = {
            let mut seen = self
                .refused_peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            seen.len() < 1024 && seen.insert(peer.ip())
        };
        if first {
            tracing::warn!(%peer, code = req.code, "refusing a broker write: brokers must register with their own cluster's NameServers, not the router (logged once per peer)");
        }
        let resp = req.respond_to(
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(
                "ferry router does not accept broker registrations (request {}): brokers keep registering with their own cluster's NameServers",
                req.code
            )),
        );
        (Some(resp), "refused")
    }

    async fn route(&self, peer: SocketAddr, req: &RemotingCommand) -> Answer {
        let Some(topic) = req.ext("topic").filter(|t| !t.is_empty()) else {
            // What Java's header check says for a missing @CFNotNull field.
            return error(req, "the custom field <topic> is null".into());
        };
        tracing::Span::current().record("topic", topic);
        self.router
            .record_presence(topic, peer, &req.language.to_string(), req.version);
        let resolved = match self.router.resolve_route(topic).await {
            Ok(r) => r,
            Err(reason) => {
                return error(
                    req,
                    format!("name server not ready: ferry router: {reason}"),
                );
            }
        };
        match resolved.outcome {
            MergeOutcome::Route(m) => {
                let body = encode_route(&m.route, RouteDialect::for_command(req));
                let resp = req.respond_to(ResponseCode::SUCCESS, None).with_body(body);
                (Some(resp), if resolved.stale { "stale" } else { "success" })
            }
            MergeOutcome::TopicNotExist => {
                let resp = req.respond_to(
                    ResponseCode::TOPIC_NOT_EXIST,
                    Some(format!(
                        "No topic route info in name server for the topic: {topic}{FAQ}"
                    )),
                );
                (Some(resp), "topic_not_exist")
            }
            MergeOutcome::Unavailable(side) => error(
                req,
                format!(
                    "ferry router cannot build the route of {topic}: {}",
                    self.router.unavailable_reason(side)
                ),
            ),
        }
    }

    async fn cluster_info(&self, ups: &Upstreams, req: &RemotingCommand) -> Answer {
        let (s, t) = tokio::join!(ups.source.cluster_info(), ups.target.cluster_info());
        if s.value().is_none() && t.value().is_none() {
            return error(req, unknown_reason("cluster info", &s, &t));
        }
        self.router.update_collisions();
        let merged = merge_cluster_info(
            s.value().map(AsRef::as_ref),
            t.value().map(AsRef::as_ref),
            &self.router.collisions(),
        );
        let body = encode_cluster_info(&merged, RouteDialect::for_command(req));
        let stale = !matches!((&s, &t), (Fetched::Fresh(_), Fetched::Fresh(_)));
        let resp = req.respond_to(ResponseCode::SUCCESS, None).with_body(body);
        (Some(resp), if stale { "stale" } else { "success" })
    }

    async fn topic_list(&self, ups: &Upstreams, req: &RemotingCommand) -> Answer {
        let key = format!("{}:{}", req.code, req.ext("cluster").unwrap_or_default());
        let (s, t) = tokio::join!(
            ups.source.topic_list(&key, req.clone()),
            ups.target.topic_list(&key, req.clone())
        );
        let lists: Vec<&TopicList> = [&s, &t]
            .into_iter()
            .filter_map(|f| f.value().map(AsRef::as_ref))
            .collect();
        if lists.is_empty() {
            return error(req, unknown_reason("topic list", &s, &t));
        }
        match merge_topic_lists(lists).to_body() {
            Ok(body) => {
                let stale = !matches!((&s, &t), (Fetched::Fresh(_), Fetched::Fresh(_)));
                let resp = req.respond_to(ResponseCode::SUCCESS, None).with_body(body);
                (Some(resp), if stale { "stale" } else { "success" })
            }
            Err(e) => error(req, format!("cannot encode the topic list: {e}")),
        }
    }

    fn order_kv(&self, ups: &Upstreams, req: &RemotingCommand) -> Answer {
        let key = req.ext("key").unwrap_or_default();
        let (s, t) = (ups.source.order_kv(), ups.target.order_kv());
        match merge_order_values(
            s.table.get(key).map(String::as_str),
            t.table.get(key).map(String::as_str),
        ) {
            Some(value) => {
                let resp = req
                    .respond_to(ResponseCode::SUCCESS, None)
                    .with_ext_field("value", value);
                (Some(resp), "success")
            }
            None => not_found(req, key),
        }
    }

    fn order_kv_list(&self, ups: &Upstreams, req: &RemotingCommand) -> Answer {
        let merged = merge_order_kv(&ups.source.order_kv(), &ups.target.order_kv());
        if merged.table.is_empty() {
            return not_found(req, "");
        }
        match merged.to_body() {
            Ok(body) => (
                Some(req.respond_to(ResponseCode::SUCCESS, None).with_body(body)),
                "success",
            ),
            Err(e) => error(req, format!("cannot encode the KV table: {e}")),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for NamesrvHandler {
    async fn handle(&self, peer: SocketAddr, request: RemotingCommand) -> Option<RemotingCommand> {
        let started = Instant::now();
        let code = request.code;
        let span = tracing::info_span!(
            "namesrv.request",
            code,
            %peer,
            opaque = request.opaque,
            topic = tracing::field::Empty,
            result = tracing::field::Empty,
        );
        let (response, result) = self.dispatch(peer, &request).instrument(span.clone()).await;
        span.record("result", result);
        metrics::observe(code, result, started.elapsed());
        response
    }
}

fn error(req: &RemotingCommand, remark: String) -> Answer {
    tracing::debug!(%remark, "answering SYSTEM_ERROR");
    (
        Some(req.respond_to(ResponseCode::SYSTEM_ERROR, Some(remark))),
        "error",
    )
}

fn not_found(req: &RemotingCommand, key: &str) -> Answer {
    let ns = req.ext("namespace").unwrap_or_default();
    (
        Some(req.respond_to(
            ResponseCode::QUERY_NOT_FOUND,
            Some(format!("No config item, Namespace: {ns} Key: {key}")),
        )),
        "not_found",
    )
}

fn unknown_reason<A, B>(what: &str, s: &Fetched<A>, t: &Fetched<B>) -> String {
    format!(
        "ferry router: no {what} from either cluster: source: {}; target: {}",
        s.error().unwrap_or("-"),
        t.error().unwrap_or("-")
    )
}

/// The cluster that has broker `name`: the one whose cluster info lists it, else `fallback`.
fn broker_side(ups: &Upstreams, name: &str, fallback: Side) -> Side {
    match (ups.source.has_broker(name), ups.target.has_broker(name)) {
        (true, _) => Side::Source,
        (false, true) => Side::Target,
        (false, false) => fallback,
    }
}

async fn forward(ups: &Upstreams, side: Side, req: &RemotingCommand) -> Answer {
    tracing::debug!(cluster = side_name(side), "forwarding");
    match ups.get(side).forward(req.clone()).await {
        Ok(resp) => (Some(resp), "forwarded"),
        Err(e) => error(
            req,
            format!("ferry router could not forward the request: {e}"),
        ),
    }
}
