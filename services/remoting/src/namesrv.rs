//! NameServer client with Java-like address selection
//! (`NettyRemotingClient.getAndCreateNameserverChannel`).
//!
//! The list `host:port;host:port` is validated up front. The first address is picked
//! at random (Java shuffles the list and starts at a random index) and then kept
//! while it works. A transport failure ([`RemotingError::is_transport`]) moves the
//! choice to the next address and the call is retried there, until every address
//! was tried once; the final error, [`RemotingError::AllAddressesFailed`], lists
//! each address with its failure (refused, timed out, unreachable, closed). A timed
//! out address also has its connection closed, as Java does by default
//! (`clientCloseSocketIfTimeout`), so a hung NameServer cannot keep a dead
//! connection pooled. Answers with error codes are not failover reasons: any
//! NameServer would answer the same.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::body::{KVTable, TopicList};
use crate::client::{RemotingClient, decode_body};
use crate::codes::{RequestCode, ResponseCode, mq_version};
use crate::command::RemotingCommand;
use crate::error::{RemotingError, Result};
use crate::headers::{
    GetKVConfigRequestHeader, GetKVListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader,
};
use crate::route::{ClusterInfo, TopicRouteData};

/// A client for one NameServer cluster (a `;`-separated address list). Cheap to
/// clone; clones share the current address choice.
#[derive(Debug, Clone)]
pub struct NameServerClient {
    addrs: Arc<[String]>,
    current: Arc<AtomicUsize>,
    client: RemotingClient,
}

impl NameServerClient {
    /// Parses `addrs` (`"h:p;h:p"`; whitespace around entries and one trailing `;`
    /// are tolerated, as Java's `split(";")` does). Empty entries and entries that
    /// are not `host:port` with a port in 1..=65535 are an error naming them.
    pub fn new(addrs: &str, client: RemotingClient) -> Result<Self> {
        let addrs = parse_addr_list(addrs)?;
        let start = random_index(addrs.len());
        Ok(NameServerClient {
            addrs: addrs.into(),
            current: Arc::new(AtomicUsize::new(start)),
            client,
        })
    }

    /// The validated addresses, in configuration order.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The address the next call goes to first.
    pub fn current_addr(&self) -> &str {
        &self.addrs[self.current.load(Ordering::Relaxed) % self.addrs.len()]
    }

    /// Makes `addrs()[index % len]` the current address (deterministic first choice,
    /// e.g. in tests).
    pub fn select(&self, index: usize) {
        self.current
            .store(index % self.addrs.len(), Ordering::Relaxed);
    }

    pub fn client(&self) -> &RemotingClient {
        &self.client
    }

    /// Sends `request` to the current NameServer with failover; returns the answering
    /// address and its response (any response code).
    pub async fn invoke(&self, request: RemotingCommand) -> Result<(String, RemotingCommand)> {
        let n = self.addrs.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for step in 0..n {
            let idx = (start + step) % n;
            let addr = &self.addrs[idx];
            match self.client.invoke(addr, request.clone(), None).await {
                Ok(response) => {
                    if step > 0 {
                        self.current.store(idx, Ordering::Relaxed);
                        tracing::info!(addr = %addr, "name server failover: now using this address");
                    }
                    return Ok((addr.clone(), response));
                }
                Err(e) if e.is_transport() => {
                    tracing::warn!(addr = %addr, code = request.code, error = %e, "name server call failed; trying the next address");
                    if matches!(e, RemotingError::Timeout { .. }) {
                        self.client.close_connection(addr);
                    }
                    // Rotate unless a concurrent call already did.
                    let _ = self.current.compare_exchange(
                        idx,
                        (idx + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    failures.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(RemotingError::AllAddressesFailed { errors: failures })
    }

    /// GET_BROKER_CLUSTER_INFO (106).
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let code = RequestCode::GET_BROKER_CLUSTER_INFO;
        let (addr, resp) = self.invoke(self.client.new_request(code)).await?;
        let resp = resp.into_success(&addr)?;
        decode_body(&addr, code, &resp, ClusterInfo::from_body)
    }

    /// GET_ROUTEINFO_BY_TOPIC (105), asking for standard JSON
    /// (`acceptStandardJsonOnly=true`, version >= 401; either dialect is parsed).
    /// `None` when the NameServer answers TOPIC_NOT_EXIST.
    pub async fn topic_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let code = RequestCode::GET_ROUTEINFO_BY_TOPIC;
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_string(),
            accept_standard_json_only: Some(true),
            ..Default::default()
        };
        let version = self.client.config().version.max(mq_version::V4_9_4);
        let request = self
            .client
            .new_request(code)
            .with_version(version)
            .with_header(&header);
        let (addr, resp) = self.invoke(request).await?;
        if resp.code == ResponseCode::TOPIC_NOT_EXIST {
            return Ok(None);
        }
        let resp = resp.into_success(&addr)?;
        decode_body(&addr, code, &resp, TopicRouteData::from_body).map(Some)
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206). A NameServer with
    /// `enableAllTopicList=false` answers SYSTEM_ERROR, returned as `Remote`.
    pub async fn all_topic_list(&self) -> Result<TopicList> {
        let code = RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER;
        let (addr, resp) = self.invoke(self.client.new_request(code)).await?;
        let resp = resp.into_success(&addr)?;
        decode_body(&addr, code, &resp, TopicList::from_body)
    }

    /// GET_TOPICS_BY_CLUSTER (224).
    pub async fn topics_by_cluster(&self, cluster: &str) -> Result<TopicList> {
        let code = RequestCode::GET_TOPICS_BY_CLUSTER;
        let header = GetTopicsByClusterRequestHeader {
            cluster: cluster.to_string(),
        };
        let (addr, resp) = self
            .invoke(self.client.new_request(code).with_header(&header))
            .await?;
        let resp = resp.into_success(&addr)?;
        decode_body(&addr, code, &resp, TopicList::from_body)
    }

    /// GET_KV_CONFIG (101). `None` when the NameServer answers QUERY_NOT_FOUND.
    pub async fn kv_config(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        let header = GetKVConfigRequestHeader {
            namespace: namespace.to_string(),
            key: key.to_string(),
        };
        let request = self
            .client
            .new_request(RequestCode::GET_KV_CONFIG)
            .with_header(&header);
        let (addr, resp) = self.invoke(request).await?;
        if resp.code == ResponseCode::QUERY_NOT_FOUND {
            return Ok(None);
        }
        let resp = resp.into_success(&addr)?;
        // Response header GetKVConfigResponseHeader.value.
        Ok(resp.ext("value").map(str::to_string))
    }

    /// GET_KVLIST_BY_NAMESPACE (219). Empty when the namespace has no entries
    /// (QUERY_NOT_FOUND).
    pub async fn kv_list(&self, namespace: &str) -> Result<KVTable> {
        let code = RequestCode::GET_KVLIST_BY_NAMESPACE;
        let header = GetKVListByNamespaceRequestHeader {
            namespace: namespace.to_string(),
        };
        let (addr, resp) = self
            .invoke(self.client.new_request(code).with_header(&header))
            .await?;
        if resp.code == ResponseCode::QUERY_NOT_FOUND {
            return Ok(KVTable::default());
        }
        let resp = resp.into_success(&addr)?;
        decode_body(&addr, code, &resp, KVTable::from_body)
    }
}

/// Parses and validates a `host:port;host:port` list.
pub fn parse_addr_list(list: &str) -> Result<Vec<String>> {
    let trimmed = list.trim();
    let trimmed = trimmed.strip_suffix(';').unwrap_or(trimmed);
    if trimmed.trim().is_empty() {
        return Err(RemotingError::InvalidAddress {
            addr: list.to_string(),
            reason: "the name server address list is empty".to_string(),
        });
    }
    trimmed
        .split(';')
        .enumerate()
        .map(|(i, raw)| {
            let entry = raw.trim();
            validate_addr(entry)
                .map(|()| entry.to_string())
                .map_err(|reason| RemotingError::InvalidAddress {
                    addr: entry.to_string(),
                    reason: format!("entry {} of {list:?}: {reason}", i + 1),
                })
        })
        .collect()
}

fn validate_addr(entry: &str) -> std::result::Result<(), String> {
    if entry.is_empty() {
        return Err("empty entry".to_string());
    }
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Err("expected host:port".to_string());
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("missing or invalid host".to_string());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("IPv6 hosts must be bracketed, e.g. [::1]:9876".to_string());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("invalid port {port:?}")),
    }
}

fn random_index(n: usize) -> usize {
    // RandomState is seeded randomly per process; no extra dependency needed.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(
            parse_addr_list(" 10.0.0.1:9876 ; ns2:9876;").unwrap(),
            ["10.0.0.1:9876", "ns2:9876"]
        );
        assert_eq!(parse_addr_list("[::1]:9876").unwrap(), ["[::1]:9876"]);
        for (bad, named) in [
            ("", ""),
            (";", ";"),
            ("a:1;;b:2", ""),
            ("a:1;b", "b"),
            ("a:0", "a:0"),
            ("a:99999", "a:99999"),
            (":9876", ":9876"),
            ("::1:9876", "::1:9876"),
            ("a b:1", "a b:1"),
        ] {
            let err = parse_addr_list(bad).unwrap_err();
            let RemotingError::InvalidAddress { addr, .. } = &err else {
                panic!("{bad}: {err}");
            };
            assert_eq!(addr, named, "{bad}: {err}");
            assert!(err.to_string().contains("invalid address"), "{err}");
        }
    }

    #[test]
    fn random_start_in_range() {
        for n in 1..20 {
            assert!(random_index(n) < n);
        }
    }
}
