//! The target cluster as an import sees it: its master brokers (from the NameServer's
//! cluster info, code 106), what each already has (codes 21 and 201), and creating topics
//! and groups on them (batch 18 / 225, or one by one 17 / 200, through `BrokerAdmin`).
//!
//! Failures are text for the items' reasons: the importer reports them per item rather than
//! failing the call, so they name the broker, its address and the target's answer.

use std::collections::HashSet;
use std::time::Duration;

use ferry_core::{ItemKind, TopicClass, classify_topic_in, is_system_group};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::{
    BrokerAdmin, ClientConfig, Credentials, NameServerClient, RemotingClient, RemotingError,
};
use ferry_store::imports::StoredCredentials;

/// One master broker of the target cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub broker: String,
    pub addr: String,
}

/// Names a master already has, per kind.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub topics: HashSet<String>,
    pub groups: HashSet<String>,
}

impl Held {
    pub fn of(&self, kind: ItemKind) -> &HashSet<String> {
        match kind {
            ItemKind::Group => &self.groups,
            _ => &self.topics,
        }
    }

    pub fn of_mut(&mut self, kind: ItemKind) -> &mut HashSet<String> {
        match kind {
            ItemKind::Group => &mut self.groups,
            _ => &mut self.topics,
        }
    }
}

/// A connected target cluster.
#[derive(Debug, Clone)]
pub struct Target {
    pub cluster: String,
    pub masters: Vec<Master>,
    /// Every broker and cluster name the NameServer knows: topics named after them are the
    /// brokers' own.
    pub broker_names: Vec<String>,
    pub cluster_names: Vec<String>,
    admin: BrokerAdmin,
}

/// Timeouts of the calls to the target.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Target {
    /// Reads the cluster's masters from its NameServers. `Err` says why the target cannot be
    /// used (unreachable, unknown cluster, no master online).
    pub async fn connect(
        namesrv_addrs: &str,
        cluster: &str,
        credentials: Option<&StoredCredentials>,
        timeouts: Timeouts,
    ) -> Result<Target, String> {
        let client = RemotingClient::new(ClientConfig {
            connect_timeout: timeouts.connect,
            request_timeout: timeouts.request,
            credentials: credentials.map(|c| Credentials::new(&c.access_key, &c.secret_key)),
            ..ClientConfig::default()
        });
        let namesrv = NameServerClient::new(namesrv_addrs, client.clone())
            .map_err(|e| format!("target NameServer address list is invalid: {e}"))?;
        let info = namesrv
            .cluster_info()
            .await
            .map_err(|e| format!("target NameServer {namesrv_addrs} unreachable: {e}"))?;
        let Some(brokers) = info.cluster_addr_table.get(cluster) else {
            let known: Vec<&str> = info.cluster_addr_table.keys().map(String::as_str).collect();
            return Err(format!(
                "cluster {cluster} is not known to the target NameServer {namesrv_addrs} (it knows: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        let masters: Vec<Master> = brokers
            .iter()
            .filter_map(|name| {
                let data = info.broker_addr_table.get(name)?;
                Some(Master {
                    broker: name.clone(),
                    addr: data.master_addr()?.to_string(),
                })
            })
            .collect();
        if masters.is_empty() {
            return Err(format!(
                "cluster {cluster} has no master broker online (brokers: {})",
                brokers.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Target {
            cluster: cluster.to_string(),
            masters,
            broker_names: info.broker_addr_table.keys().cloned().collect(),
            cluster_names: info.cluster_addr_table.keys().cloned().collect(),
            admin: BrokerAdmin::new(client),
        })
    }

    /// Names of `kind` a master holds now (21 / 201).
    pub async fn names(&self, master: &Master, kind: ItemKind) -> Result<HashSet<String>, String> {
        let names = match kind {
            ItemKind::Group => self
                .admin
                .all_subscription_groups(&master.addr)
                .await
                .map(|w| w.subscription_group_table.into_keys().collect()),
            _ => self
                .admin
                .all_topic_config(&master.addr)
                .await
                .map(|w| w.topic_config_table.into_keys().collect()),
        };
        names.map_err(|e| broker_error(master, &e))
    }

    /// Topics and groups of every master, in master order.
    pub async fn inventory(&self) -> Result<Vec<Held>, String> {
        let reads = self.masters.iter().map(|m| async move {
            let (topics, groups) = tokio::join!(
                self.names(m, ItemKind::Topic),
                self.names(m, ItemKind::Group)
            );
            Ok::<_, String>(Held {
                topics: topics?,
                groups: groups?,
            })
        });
        futures::future::try_join_all(reads).await
    }

    /// Why `name` is reserved on this target (per-broker and per-cluster topics), if it is.
    pub fn reserved_topic(&self, name: &str) -> Option<&'static str> {
        ferry_core::names::system_topic_reason(name, &self.broker_names, &self.cluster_names)
    }

    /// User items of `kind` over all masters: what the target's quota counts.
    pub fn user_count(&self, held: &[Held], kind: ItemKind) -> usize {
        let mut names: HashSet<&str> = HashSet::new();
        for h in held {
            names.extend(h.of(kind).iter().map(String::as_str));
        }
        names
            .into_iter()
            .filter(|n| match kind {
                ItemKind::Group => !is_system_group(n),
                _ => {
                    classify_topic_in(n, &self.broker_names, &self.cluster_names)
                        == TopicClass::User
                }
            })
            .count()
    }

    /// Creates `specs` on `master` with batch requests (the admin falls back to one request
    /// per item on brokers without them).
    pub async fn create_batch(
        &self,
        master: &Master,
        kind: ItemKind,
        specs: &[serde_json::Value],
    ) -> Result<(), CreateError> {
        match kind {
            ItemKind::Group => {
                let groups = decode_all::<SubscriptionGroupConfig>(specs)?;
                self.admin.create_groups(&master.addr, &groups).await
            }
            _ => {
                let topics = decode_all::<TopicConfig>(specs)?;
                self.admin.create_topics(&master.addr, &topics).await
            }
        }
        .map_err(|e| CreateError::from_remoting(master, e))
    }

    /// Creates one item on `master` (17 / 200).
    pub async fn create_one(
        &self,
        master: &Master,
        kind: ItemKind,
        spec: &serde_json::Value,
    ) -> Result<(), CreateError> {
        match kind {
            ItemKind::Group => {
                let group = decode::<SubscriptionGroupConfig>(spec)?;
                self.admin.create_group(&master.addr, &group).await
            }
            _ => {
                let topic = decode::<TopicConfig>(spec)?;
                self.admin.create_topic(&master.addr, &topic).await
            }
        }
        .map_err(|e| CreateError::from_remoting(master, e))
    }
}

/// A failed create: the reason for the items, and whether the broker was unreachable (then
/// the rest of the task is not attempted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateError {
    pub reason: String,
    pub unreachable: bool,
}

impl CreateError {
    fn from_remoting(master: &Master, e: RemotingError) -> Self {
        CreateError {
            unreachable: e.is_transport(),
            reason: broker_error(master, &e),
        }
    }
}

fn broker_error(master: &Master, e: &RemotingError) -> String {
    format!("broker {} ({}): {e}", master.broker, master.addr)
}

fn decode<T: serde::de::DeserializeOwned>(spec: &serde_json::Value) -> Result<T, CreateError> {
    serde_json::from_value(spec.clone()).map_err(|e| CreateError {
        reason: format!("the stored config of this item cannot be read: {e}"),
        unreachable: false,
    })
}

fn decode_all<T: serde::de::DeserializeOwned>(
    specs: &[serde_json::Value],
) -> Result<Vec<T>, CreateError> {
    specs.iter().map(decode).collect()
}
