//! Broker admin calls (what `DefaultMQAdminExt`/`MQClientAPIImpl` send straight to a
//! broker address; see ROCKETMQ.md §2.6 and §7).
//!
//! Answers that mean "nothing there" are values, not errors: TOPIC_NOT_EXIST for
//! topic stats, CONSUMER_NOT_ONLINE for consumer connections, Java's SYSTEM_ERROR
//! "the producer group[..] not exist" / "no consumer for this group" for producer
//! connections and consumer lists. Other non-success codes become
//! [`RemotingError::Remote`]; unparsable bodies become `Malformed` errors naming the
//! broker address and the request code.

use serde::Serialize;

use crate::body::{
    ConsumeStats, ConsumerConnection, DelayOffsetSerializeWrapper,
    GetConsumerListByGroupResponseBody, KVTable, ProducerConnection, SubscriptionGroupConfig,
    SubscriptionGroupWrapper, TopicConfig, TopicConfigSerializeWrapper, TopicStatsTable,
};
use crate::client::{RemotingClient, decode_body};
use crate::codes::{RequestCode, ResponseCode};
use crate::command::RemotingCommand;
use crate::error::{RemotingError, Result};
use crate::headers::{
    CreateTopicRequestHeader, GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetConsumerListByGroupRequestHeader, GetProducerConnectionListRequestHeader,
    GetTopicStatsInfoRequestHeader,
};

/// Items per UPDATE_AND_CREATE_TOPIC_LIST / SUBSCRIPTIONGROUP_LIST request, to keep
/// frames far below the 16 MiB limit and broker-side work per request modest.
pub const CREATE_BATCH_SIZE: usize = 500;

/// Admin calls to broker addresses (`ip:port`, normally a master's).
#[derive(Debug, Clone)]
pub struct BrokerAdmin {
    client: RemotingClient,
}

/// `CreateTopicListRequestBody`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateTopicListRequestBody<'a> {
    topic_config_list: &'a [TopicConfig],
}

/// `SubscriptionGroupList`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionGroupList<'a> {
    group_config_list: &'a [SubscriptionGroupConfig],
}

impl BrokerAdmin {
    pub fn new(client: RemotingClient) -> Self {
        BrokerAdmin { client }
    }

    pub fn client(&self) -> &RemotingClient {
        &self.client
    }

    async fn call(&self, addr: &str, request: RemotingCommand) -> Result<RemotingCommand> {
        self.client.invoke(addr, request, None).await
    }

    /// GET_ALL_TOPIC_CONFIG (21), unpaged (no 5.3 paging header: every broker
    /// answers with its whole table).
    pub async fn all_topic_config(&self, addr: &str) -> Result<TopicConfigSerializeWrapper> {
        let code = RequestCode::GET_ALL_TOPIC_CONFIG;
        let resp = self
            .call(addr, self.client.new_request(code))
            .await?
            .into_success(addr)?;
        decode_body(addr, code, &resp, TopicConfigSerializeWrapper::from_body)
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201), unpaged.
    pub async fn all_subscription_groups(&self, addr: &str) -> Result<SubscriptionGroupWrapper> {
        let code = RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG;
        let resp = self
            .call(addr, self.client.new_request(code))
            .await?
            .into_success(addr)?;
        decode_body(addr, code, &resp, SubscriptionGroupWrapper::from_body)
    }

    /// UPDATE_AND_CREATE_TOPIC (17) with the header the Java admin sends
    /// ([`CreateTopicRequestHeader::from_topic_config`]). Creates or updates;
    /// idempotent when nothing changes.
    pub async fn create_topic(&self, addr: &str, topic: &TopicConfig) -> Result<()> {
        let header = CreateTopicRequestHeader::from_topic_config(topic);
        let request = self
            .client
            .new_request(RequestCode::UPDATE_AND_CREATE_TOPIC)
            .with_header(&header);
        self.call(addr, request).await?.into_success(addr)?;
        Ok(())
    }

    /// Creates or updates many topics: UPDATE_AND_CREATE_TOPIC_LIST (18) for topics
    /// the broker does not have yet, in batches of [`CREATE_BATCH_SIZE`], and one
    /// UPDATE_AND_CREATE_TOPIC (17) per topic it already has.
    ///
    /// Why not one list request: the broker's list handler (Java 5.x
    /// `AdminBrokerProcessor.updateAndCreateTopicList`, and rocketmq-rust 1.0's port)
    /// answers SUCCESS *without applying the rest of the list* as soon as one entry
    /// equals an existing topic config. Entries that do not exist yet can never hit
    /// that, so only those are batched (the table is read first with code 21). A
    /// broker without code 18 (4.x answers REQUEST_CODE_NOT_SUPPORTED) gets one 17
    /// per topic instead.
    pub async fn create_topics(&self, addr: &str, topics: &[TopicConfig]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let existing = self.all_topic_config(addr).await?.topic_config_table;
        let (update, create): (Vec<&TopicConfig>, Vec<&TopicConfig>) = topics
            .iter()
            .partition(|t| existing.contains_key(&t.topic_name));
        for topic in update {
            self.create_topic(addr, topic).await?;
        }
        // The broker stores attributes without '+' but only accepts '+key' when
        // creating (AttributeUtil.alterCurrentAttributes), as in the 17 header.
        let create: Vec<TopicConfig> = create.into_iter().map(creation_config).collect();
        for chunk in create.chunks(CREATE_BATCH_SIZE) {
            let body = serde_json::to_vec(&CreateTopicListRequestBody {
                topic_config_list: chunk,
            })
            .map_err(|e| RemotingError::Unencodable {
                reason: e.to_string(),
            })?;
            let request = self
                .client
                .new_request(RequestCode::UPDATE_AND_CREATE_TOPIC_LIST)
                .with_body(body);
            let resp = self.call(addr, request).await?;
            if resp.code == ResponseCode::REQUEST_CODE_NOT_SUPPORTED {
                tracing::info!(
                    addr,
                    "broker lacks UPDATE_AND_CREATE_TOPIC_LIST; creating topics one by one"
                );
                for topic in chunk {
                    self.create_topic(addr, topic).await?;
                }
                continue;
            }
            resp.into_success(addr)?;
        }
        Ok(())
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200); body = the config as JSON.
    pub async fn create_group(&self, addr: &str, group: &SubscriptionGroupConfig) -> Result<()> {
        let request = self
            .client
            .new_request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(group.to_body()?);
        self.call(addr, request).await?.into_success(addr)?;
        Ok(())
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST (225), body `SubscriptionGroupList`
    /// `{"groupConfigList":[...]}`, in batches of [`CREATE_BATCH_SIZE`]. Unlike the
    /// topic list, the broker applies every entry. A broker without code 225 (4.x)
    /// gets one 200 per group.
    pub async fn create_groups(
        &self,
        addr: &str,
        groups: &[SubscriptionGroupConfig],
    ) -> Result<()> {
        for chunk in groups.chunks(CREATE_BATCH_SIZE) {
            let body = serde_json::to_vec(&SubscriptionGroupList {
                group_config_list: chunk,
            })
            .map_err(|e| RemotingError::Unencodable {
                reason: e.to_string(),
            })?;
            let request = self
                .client
                .new_request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST)
                .with_body(body);
            let resp = self.call(addr, request).await?;
            if resp.code == ResponseCode::REQUEST_CODE_NOT_SUPPORTED {
                tracing::info!(
                    addr,
                    "broker lacks UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST; creating groups one by one"
                );
                for group in chunk {
                    self.create_group(addr, group).await?;
                }
                continue;
            }
            resp.into_success(addr)?;
        }
        Ok(())
    }

    /// GET_CONSUME_STATS (208) for `group`, for one topic or (None) every topic the
    /// group has offsets for on this broker.
    pub async fn consume_stats(
        &self,
        addr: &str,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumeStats> {
        let code = RequestCode::GET_CONSUME_STATS;
        let header = GetConsumeStatsRequestHeader {
            consumer_group: group.to_string(),
            topic: topic.map(str::to_string),
            ..Default::default()
        };
        let request = self.client.new_request(code).with_header(&header);
        let resp = self.call(addr, request).await?.into_success(addr)?;
        decode_body(addr, code, &resp, ConsumeStats::from_body)
    }

    /// GET_TOPIC_STATS_INFO (202). `None` when the topic is not on this broker.
    pub async fn topic_stats(&self, addr: &str, topic: &str) -> Result<Option<TopicStatsTable>> {
        let code = RequestCode::GET_TOPIC_STATS_INFO;
        let header = GetTopicStatsInfoRequestHeader {
            topic: topic.to_string(),
            ..Default::default()
        };
        let resp = self
            .call(addr, self.client.new_request(code).with_header(&header))
            .await?;
        if resp.code == ResponseCode::TOPIC_NOT_EXIST {
            return Ok(None);
        }
        let resp = resp.into_success(addr)?;
        decode_body(addr, code, &resp, TopicStatsTable::from_body).map(Some)
    }

    /// GET_CONSUMER_CONNECTION_LIST (203). `None` when no consumer of the group is
    /// connected to this broker (CONSUMER_NOT_ONLINE, 206).
    pub async fn consumer_connections(
        &self,
        addr: &str,
        group: &str,
    ) -> Result<Option<ConsumerConnection>> {
        let code = RequestCode::GET_CONSUMER_CONNECTION_LIST;
        let header = GetConsumerConnectionListRequestHeader {
            consumer_group: group.to_string(),
            ..Default::default()
        };
        let resp = self
            .call(addr, self.client.new_request(code).with_header(&header))
            .await?;
        if resp.code == ResponseCode::CONSUMER_NOT_ONLINE {
            return Ok(None);
        }
        let resp = resp.into_success(addr)?;
        decode_body(addr, code, &resp, ConsumerConnection::from_body).map(Some)
    }

    /// GET_PRODUCER_CONNECTION_LIST (204). `None` when no producer of the group is
    /// connected (the broker answers SYSTEM_ERROR `the producer group[G] not exist`).
    pub async fn producer_connections(
        &self,
        addr: &str,
        group: &str,
    ) -> Result<Option<ProducerConnection>> {
        let code = RequestCode::GET_PRODUCER_CONNECTION_LIST;
        let header = GetProducerConnectionListRequestHeader {
            producer_group: group.to_string(),
            ..Default::default()
        };
        let resp = self
            .call(addr, self.client.new_request(code).with_header(&header))
            .await?;
        if resp.code == ResponseCode::SYSTEM_ERROR
            && remark_has(&resp, &format!("producer group[{group}] not exist"))
        {
            return Ok(None);
        }
        let resp = resp.into_success(addr)?;
        decode_body(addr, code, &resp, ProducerConnection::from_body).map(Some)
    }

    /// GET_BROKER_RUNTIME_INFO (28): the broker's runtime KV table (all strings).
    pub async fn broker_runtime_info(&self, addr: &str) -> Result<KVTable> {
        let code = RequestCode::GET_BROKER_RUNTIME_INFO;
        let resp = self
            .call(addr, self.client.new_request(code))
            .await?
            .into_success(addr)?;
        decode_body(addr, code, &resp, KVTable::from_body)
    }

    /// GET_ALL_DELAY_OFFSET (45): the broker's `delayOffset.json`, i.e. per delay level
    /// how far scheduled messages in `SCHEDULE_TOPIC_XXXX` (queue id = level − 1) have been
    /// delivered. A level missing from the table has delivered nothing (offset 0). A
    /// broker with no table yet answers SYSTEM_ERROR "No delay offset in this broker"
    /// (Java and the Rust broker): that reads as an empty table.
    pub async fn delay_offsets(&self, addr: &str) -> Result<DelayOffsetSerializeWrapper> {
        let code = RequestCode::GET_ALL_DELAY_OFFSET;
        let resp = self.call(addr, self.client.new_request(code)).await?;
        if resp.code == ResponseCode::SYSTEM_ERROR && remark_has(&resp, "No delay offset") {
            return Ok(DelayOffsetSerializeWrapper::default());
        }
        let resp = resp.into_success(addr)?;
        if resp.body.is_empty() {
            return Ok(DelayOffsetSerializeWrapper::default());
        }
        decode_body(addr, code, &resp, DelayOffsetSerializeWrapper::from_body)
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38): client ids of the group's consumers connected
    /// to this broker. Empty when there are none (the broker answers SYSTEM_ERROR
    /// "no consumer for this group, G").
    pub async fn consumer_list(&self, addr: &str, group: &str) -> Result<Vec<String>> {
        let code = RequestCode::GET_CONSUMER_LIST_BY_GROUP;
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_string(),
            ..Default::default()
        };
        let resp = self
            .call(addr, self.client.new_request(code).with_header(&header))
            .await?;
        if resp.code == ResponseCode::SYSTEM_ERROR
            && remark_has(&resp, "no consumer for this group")
        {
            return Ok(Vec::new());
        }
        let resp = resp.into_success(addr)?;
        decode_body(
            addr,
            code,
            &resp,
            GetConsumerListByGroupResponseBody::from_body,
        )
        .map(|b| b.consumer_id_list)
    }
}

fn remark_has(resp: &RemotingCommand, needle: &str) -> bool {
    resp.remark.as_deref().is_some_and(|r| r.contains(needle))
}

/// The config as the list-create body must carry it: attribute keys with '+',
/// empty values dropped (the broker cannot parse them), like the 17 header.
fn creation_config(topic: &TopicConfig) -> TopicConfig {
    let mut tc = topic.clone();
    tc.attributes = topic
        .attributes
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let key = if k.starts_with('+') {
                k.clone()
            } else {
                format!("+{k}")
            };
            (key, v.clone())
        })
        .collect();
    tc
}
