//! Client presence: which client address looked up which topic, how often, first and last
//! time, with the language and version from its request header.
//!
//! In memory only (lookups are far too frequent for a consensus store), bounded: at most
//! `capacity` (topic, address) pairs; inserting one more evicts the pair seen least
//! recently. Every operation is O(log n).

use std::collections::{BTreeMap, HashMap};

/// One (topic, client address) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    pub topic: String,
    pub client_addr: String,
    pub language: String,
    pub version: i32,
    pub lookups: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// Per-topic summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    pub topic: String,
    pub client_addrs: Vec<String>,
    pub last_seen_ms: i64,
}

type Key = (String, String);

/// The bounded presence table.
#[derive(Debug)]
pub struct Presence {
    capacity: usize,
    entries: HashMap<Key, (PresenceEntry, u64)>,
    /// Recency order: sequence number of the last touch → key.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    evicted: u64,
}

impl Presence {
    /// A table holding at most `capacity` pairs (at least 1).
    pub fn new(capacity: usize) -> Self {
        Presence {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Records one lookup of `topic` by `client_addr` at `now_ms`.
    pub fn record(
        &mut self,
        topic: &str,
        client_addr: &str,
        language: &str,
        version: i32,
        now_ms: i64,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = (topic.to_string(), client_addr.to_string());
        if let Some((entry, old_seq)) = self.entries.get_mut(&key) {
            entry.lookups += 1;
            entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
            language.clone_into(&mut entry.language);
            entry.version = version;
            self.order.remove(old_seq);
            *old_seq = seq;
            self.order.insert(seq, key);
            return;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            self.evicted += 1;
        }
        let entry = PresenceEntry {
            topic: key.0.clone(),
            client_addr: key.1.clone(),
            language: language.to_string(),
            version,
            lookups: 1,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        };
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (entry, seq));
    }

    /// Pairs remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pairs dropped to stay within capacity since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Entries of `topic` (all when `None`) seen at or after `since_ms`, sorted by topic then
    /// address, starting after `after` (a `(topic, addr)` key), at most `limit`. Returns the
    /// page and whether more follow.
    pub fn list(
        &self,
        topic: Option<&str>,
        since_ms: i64,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> (Vec<PresenceEntry>, bool) {
        let mut all: Vec<&PresenceEntry> = self
            .entries
            .values()
            .map(|(e, _)| e)
            .filter(|e| topic.is_none_or(|t| e.topic == t))
            .filter(|e| e.last_seen_ms >= since_ms)
            .filter(|e| {
                after.is_none_or(|(t, a)| (e.topic.as_str(), e.client_addr.as_str()) > (t, a))
            })
            .collect();
        all.sort_by(|a, b| (&a.topic, &a.client_addr).cmp(&(&b.topic, &b.client_addr)));
        let more = all.len() > limit;
        (all.into_iter().take(limit).cloned().collect(), more)
    }

    /// Per-topic summaries for `topics` (all topics seen when empty), sorted by topic.
    pub fn topics(&self, topics: &[String]) -> Vec<TopicSummary> {
        let mut by_topic: BTreeMap<&str, TopicSummary> = BTreeMap::new();
        for (entry, _) in self.entries.values() {
            if !topics.is_empty() && !topics.contains(&entry.topic) {
                continue;
            }
            let s = by_topic
                .entry(entry.topic.as_str())
                .or_insert_with(|| TopicSummary {
                    topic: entry.topic.clone(),
                    client_addrs: Vec::new(),
                    last_seen_ms: 0,
                });
            s.client_addrs.push(entry.client_addr.clone());
            s.last_seen_ms = s.last_seen_ms.max(entry.last_seen_ms);
        }
        by_topic
            .into_values()
            .map(|mut s| {
                s.client_addrs.sort();
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_evicts_least_recent() {
        let mut p = Presence::new(2);
        p.record("T", "1.1.1.1:1", "JAVA", 479, 10);
        p.record("T", "1.1.1.1:2", "GO", 317, 20);
        p.record("T", "1.1.1.1:1", "JAVA", 479, 30);
        assert_eq!(p.len(), 2);
        // :2 is now the least recently seen.
        p.record("U", "1.1.1.1:3", "RUST", 475, 40);
        assert_eq!(p.len(), 2);
        assert_eq!(p.evicted(), 1);
        let (all, more) = p.list(None, 0, None, 10);
        assert!(!more);
        assert_eq!(
            all.iter()
                .map(|e| (e.topic.as_str(), e.client_addr.as_str(), e.lookups))
                .collect::<Vec<_>>(),
            [("T", "1.1.1.1:1", 2), ("U", "1.1.1.1:3", 1)]
        );
        assert_eq!(all[0].first_seen_ms, 10);
        assert_eq!(all[0].last_seen_ms, 30);
    }

    #[test]
    fn pages_filters_and_summaries() {
        let mut p = Presence::new(100);
        for i in 0..5 {
            p.record("T", &format!("c:{i}"), "JAVA", 1, i64::from(i) * 10);
        }
        p.record("U", "c:9", "JAVA", 1, 100);
        let (page, more) = p.list(Some("T"), 0, None, 2);
        assert!(more);
        assert_eq!(page.len(), 2);
        let last = page.last().unwrap();
        let (page2, more2) = p.list(Some("T"), 0, Some((&last.topic, &last.client_addr)), 10);
        assert!(!more2);
        assert_eq!(page2.len(), 3);
        let (recent, _) = p.list(None, 30, None, 10);
        assert_eq!(recent.len(), 3);
        let sums = p.topics(&[]);
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[0].client_addrs.len(), 5);
        assert_eq!(sums[0].last_seen_ms, 40);
        assert_eq!(p.topics(&["U".to_string()]).len(), 1);
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let mut p = Presence::new(1000);
        for i in 0..50_000 {
            p.record(
                &format!("T{}", i % 97),
                &format!("10.0.0.1:{i}"),
                "JAVA",
                1,
                i,
            );
        }
        assert_eq!(p.len(), 1000);
        assert_eq!(p.order.len(), 1000);
    }
}
