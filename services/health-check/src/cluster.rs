//! Reading RocketMQ clusters: NameServer clients per address list, broker admin calls, and
//! the two broker calls `BrokerAdmin` does not have (who consumes a topic, all producers).
//!
//! Every call goes through one [`RemotingClient`] (one pooled connection per address), and
//! per-measurement results are memoised in a [`Memo`] so a check of many topics asks each
//! broker once per (call, argument).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use ferry_remoting::{
    BrokerAdmin, ClientConfig, NameServerClient, RemotingClient, RemotingError, RequestCode,
    ResponseCode, fastjson,
};
use serde::Deserialize;
use tokio::sync::OnceCell;

/// `RequestCode.QUERY_TOPIC_CONSUME_BY_WHO`: groups with offsets on, or online
/// subscriptions to, a topic on one broker (Java `AdminBrokerProcessor.queryTopicConsumeByWho`).
pub const QUERY_TOPIC_CONSUME_BY_WHO: RequestCode = RequestCode(300);
/// `RequestCode.GET_ALL_PRODUCER_INFO` (RocketMQ 5.x): every producer connected to a broker.
pub const GET_ALL_PRODUCER_INFO: RequestCode = RequestCode(328);

/// `GroupList` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GroupList {
    #[serde(alias = "group_list")]
    group_list: BTreeSet<String>,
}

/// One producer as a broker reports it (`ProducerInfo`; Java writes camelCase, the Rust
/// broker snake_case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ProducerInfo {
    #[serde(alias = "clientId")]
    pub client_id: String,
    /// The producer's address as the broker sees its connection (`ip` or `ip:port`).
    #[serde(alias = "remoteIP", alias = "remoteIp")]
    pub remote_ip: String,
}

/// Producers of one broker by group.
pub type ProducerTable = BTreeMap<String, Vec<ProducerInfo>>;

/// `ProducerTableInfo` body: producer group -> producers.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProducerTableInfo {
    data: BTreeMap<String, Vec<ProducerInfo>>,
}

/// Access to clusters through one connection pool.
#[derive(Debug, Clone)]
pub struct Clusters {
    client: RemotingClient,
    admin: BrokerAdmin,
    namesrvs: Arc<Mutex<HashMap<String, NameServerClient>>>,
}

impl Clusters {
    pub fn new(config: ClientConfig) -> Self {
        let client = RemotingClient::new(config);
        Clusters {
            admin: BrokerAdmin::new(client.clone()),
            client,
            namesrvs: Arc::default(),
        }
    }

    pub fn admin(&self) -> &BrokerAdmin {
        &self.admin
    }

    /// The NameServer client of a `host:port;host:port` list (cached, so its failover
    /// choice survives between checks).
    pub fn namesrv(&self, addrs: &str) -> Result<NameServerClient, RemotingError> {
        let mut map = self.namesrvs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = map.get(addrs) {
            return Ok(ns.clone());
        }
        let ns = NameServerClient::new(addrs, self.client.clone())?;
        map.insert(addrs.to_string(), ns.clone());
        Ok(ns)
    }

    /// Groups that consume `topic` on the broker at `addr` (online subscriptions and
    /// committed offsets).
    pub async fn topic_groups(
        &self,
        addr: &str,
        topic: &str,
    ) -> Result<BTreeSet<String>, RemotingError> {
        let request = self
            .client
            .new_request(QUERY_TOPIC_CONSUME_BY_WHO)
            .with_ext_field("topic", topic);
        let resp = self
            .client
            .invoke(addr, request, None)
            .await?
            .into_success(addr)?;
        if resp.body.is_empty() {
            return Ok(BTreeSet::new());
        }
        let list: GroupList =
            fastjson::from_slice(&resp.body).map_err(|e| malformed(addr, 300, e))?;
        Ok(list.group_list)
    }

    /// Every producer connected to the broker at `addr`, by group; `None` when the broker
    /// cannot list them (RocketMQ 4.x answers REQUEST_CODE_NOT_SUPPORTED).
    pub async fn producers(&self, addr: &str) -> Result<Option<ProducerTable>, RemotingError> {
        let request = self.client.new_request(GET_ALL_PRODUCER_INFO);
        let resp = self.client.invoke(addr, request, None).await?;
        if resp.code == ResponseCode::REQUEST_CODE_NOT_SUPPORTED {
            return Ok(None);
        }
        let resp = resp.into_success(addr)?;
        if resp.body.is_empty() {
            return Ok(Some(BTreeMap::new()));
        }
        let table: ProducerTableInfo =
            fastjson::from_slice(&resp.body).map_err(|e| malformed(addr, 328, e))?;
        Ok(Some(table.data))
    }
}

fn malformed(addr: &str, code: i32, e: RemotingError) -> RemotingError {
    RemotingError::Malformed {
        reason: format!("answer to request {code} from {addr}: {e}"),
    }
}

/// The host part of `ip:port`, `[v6]:port`, or a bare address.
pub fn host_of(addr: &str) -> &str {
    let addr = addr.trim().trim_start_matches('/');
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => addr,
    }
}

/// Memoised async results for one measurement: the first caller of a key computes, the
/// others wait for it. Values are cloned out (errors as text, so they clone).
pub struct Memo<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Memo<K, V> {
    pub async fn get_or<F, Fut>(&self, key: K, compute: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.entry(key).or_default().clone()
        };
        cell.get_or_init(compute).await.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_addresses() {
        assert_eq!(host_of("127.0.0.1:5555"), "127.0.0.1");
        assert_eq!(host_of("/10.0.0.5:53122"), "10.0.0.5");
        assert_eq!(host_of("10.0.0.5"), "10.0.0.5");
        assert_eq!(host_of("[::1]:9876"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("host.example:80"), "host.example");
    }

    #[test]
    fn bodies_parse_in_both_dialects() {
        let java = br#"{"data":{"PG":[{"clientId":"10.0.0.5@1","remoteIP":"10.0.0.5:1234","language":"JAVA","version":1,"lastUpdateTimestamp":1}]}}"#;
        let rust = br#"{"data":{"PG":[{"client_id":"10.0.0.5@1","remote_ip":"10.0.0.5:1234","language":"RUST"}]}}"#;
        for body in [&java[..], &rust[..]] {
            let t: ProducerTableInfo = fastjson::from_slice(body).unwrap();
            assert_eq!(t.data["PG"][0].remote_ip, "10.0.0.5:1234");
            assert_eq!(t.data["PG"][0].client_id, "10.0.0.5@1");
        }
        let g: GroupList = fastjson::from_slice(br#"{"groupList":["A","B"]}"#).unwrap();
        assert_eq!(g.group_list.len(), 2);
    }

    #[tokio::test]
    async fn memo_computes_once_per_key() {
        let memo: Memo<&str, usize> = Memo::default();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..3 {
            let v = memo
                .get_or("k", || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    7
                })
                .await;
            assert_eq!(v, 7);
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
