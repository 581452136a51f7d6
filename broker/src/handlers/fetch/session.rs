//! Fetch sessions (KIP-227): the broker remembers a consumer's partition list so incremental
//! fetches send and receive only what changed.
//!
//! Rules, as in Kafka's FetchSession: session 0 with epoch -1 is a sessionless full fetch;
//! epoch 0 is a full fetch that creates a session (closing the one named, if any); a named
//! session with epoch -1 closes it and is served sessionless; epoch N > 0 is incremental and
//! must name a live session (FETCH_SESSION_ID_NOT_FOUND) at its expected epoch
//! (INVALID_FETCH_SESSION_EPOCH). An incremental response carries a partition only if it has
//! records, an error, or a new high watermark or log start offset since the last response.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchRequest;
use parking_lot::Mutex;
use protocol_shim::ErrorKind;
use uuid::Uuid;

use super::WantedPartition;
use crate::node::Node;

/// Sessions unused this long are evicted.
const SESSION_IDLE: Duration = Duration::from_secs(120);

/// A partition as the request names it: by topic name (v<13) or topic id (v13+), resolved to
/// a name where the topic exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: Option<String>,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// The partitions to read for one request, and what to do with the response.
#[derive(Debug)]
pub struct FetchPlan {
    pub wanted: Vec<WantedPartition>,
    /// Session id to put in the response (0 = none).
    pub response_session_id: i32,
    /// Incremental responses are filtered against the session's cache.
    pub incremental: bool,
}

#[derive(Debug, Clone)]
struct Cached {
    wanted: WantedPartition,
    last_high_watermark: i64,
    last_log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<(String, i32), Cached>,
    order: Vec<(String, i32)>,
    last_used: Instant,
}

/// All live sessions of this broker, bounded in number.
#[derive(Debug)]
pub struct FetchSessionCache {
    capacity: usize,
    next_id: AtomicI32,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessionCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_id: AtomicI32::new(1),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Drops a deleted topic from every session.
    pub fn forget_topic(&self, topic: &str) {
        for s in self.sessions.lock().values_mut() {
            s.partitions.retain(|(t, _), _| t != topic);
            s.order.retain(|(t, _)| t != topic);
        }
    }

    fn new_session_id(&self) -> i32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id > 0 {
                return id;
            }
            self.next_id.store(1, Ordering::Relaxed);
        }
    }

    /// Keeps only what an incremental response must carry, and remembers what was sent.
    pub fn filter_response(
        &self,
        plan: &FetchPlan,
        entries: Vec<(PartitionKey, PartitionData)>,
    ) -> Vec<(PartitionKey, PartitionData)> {
        if plan.response_session_id == 0 {
            return entries;
        }
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.get_mut(&plan.response_session_id) else {
            return entries;
        };
        entries
            .into_iter()
            .filter(|(key, data)| {
                let name = key.topic.clone().unwrap_or_default();
                let Some(cached) = session.partitions.get_mut(&(name, key.partition)) else {
                    return true;
                };
                let changed = data.records.as_ref().is_some_and(|r| !r.is_empty())
                    || data.error_code != 0
                    || data.high_watermark != cached.last_high_watermark
                    || data.log_start_offset != cached.last_log_start_offset;
                cached.last_high_watermark = data.high_watermark;
                cached.last_log_start_offset = data.log_start_offset;
                !plan.incremental || changed
            })
            .collect()
    }
}

fn resolve_key(
    node: &Node,
    name: &str,
    topic_id: Uuid,
    partition: i32,
    version: i16,
) -> PartitionKey {
    if version >= 13 {
        PartitionKey {
            topic: node.topics.get_by_id(topic_id).map(|t| t.name),
            topic_id,
            partition,
        }
    } else {
        PartitionKey {
            topic: Some(name.to_string()),
            topic_id: Uuid::nil(),
            partition,
        }
    }
}

fn requested(node: &Node, request: &FetchRequest, version: i16) -> Vec<WantedPartition> {
    request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| WantedPartition {
                key: resolve_key(node, t.topic.0.as_str(), t.topic_id, p.partition, version),
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    -1
                },
            })
        })
        .collect()
}

/// Works out the partitions to read and updates the session cache.
pub fn plan(node: &Node, request: &FetchRequest, version: i16) -> Result<FetchPlan, ErrorKind> {
    let wanted = requested(node, request, version);
    if version < 7 {
        return Ok(FetchPlan {
            wanted,
            response_session_id: 0,
            incremental: false,
        });
    }
    let cache = &node.fetch_sessions;
    let id = request.session_id;
    let epoch = request.session_epoch;
    let now = Instant::now();
    let mut sessions = cache.sessions.lock();
    sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
    if epoch == -1 || epoch == 0 {
        if id != 0 {
            sessions.remove(&id);
        }
        let mut response_session_id = 0;
        if epoch == 0 && sessions.len() < cache.capacity {
            let new_id = cache.new_session_id();
            let mut session = Session {
                next_epoch: 1,
                partitions: BTreeMap::new(),
                order: Vec::new(),
                last_used: now,
            };
            for w in &wanted {
                let k = (w.key.topic.clone().unwrap_or_default(), w.key.partition);
                session.order.push(k.clone());
                session.partitions.insert(
                    k,
                    Cached {
                        wanted: w.clone(),
                        last_high_watermark: -1,
                        last_log_start_offset: -1,
                    },
                );
            }
            sessions.insert(new_id, session);
            response_session_id = new_id;
        }
        return Ok(FetchPlan {
            wanted,
            response_session_id,
            incremental: false,
        });
    }
    let Some(session) = sessions.get_mut(&id) else {
        return Err(ErrorKind::FetchSessionIdNotFound);
    };
    if session.next_epoch != epoch {
        return Err(ErrorKind::InvalidFetchSessionEpoch);
    }
    session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
    session.last_used = now;
    for w in wanted {
        let k = (w.key.topic.clone().unwrap_or_default(), w.key.partition);
        match session.partitions.get_mut(&k) {
            Some(c) => c.wanted = w,
            None => {
                session.order.push(k.clone());
                session.partitions.insert(
                    k,
                    Cached {
                        wanted: w,
                        last_high_watermark: -1,
                        last_log_start_offset: -1,
                    },
                );
            }
        }
    }
    for f in &request.forgotten_topics_data {
        let name = if version >= 13 {
            node.topics
                .get_by_id(f.topic_id)
                .map(|t| t.name)
                .unwrap_or_default()
        } else {
            f.topic.0.as_str().to_string()
        };
        for p in &f.partitions {
            let k = (name.clone(), *p);
            session.partitions.remove(&k);
            session.order.retain(|x| *x != k);
        }
    }
    let wanted = session
        .order
        .iter()
        .filter_map(|k| session.partitions.get(k).map(|c| c.wanted.clone()))
        .collect();
    Ok(FetchPlan {
        wanted,
        response_session_id: id,
        incremental: true,
    })
}
