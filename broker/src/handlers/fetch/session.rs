//! Fetch sessions (KIP-227): the broker remembers a consumer's partition list so incremental
//! fetches send and receive only what changed.
//!
//! Rules, as in Kafka's FetchSession: session 0 with epoch -1 is a sessionless full fetch;
//! epoch 0 is a full fetch that creates a session (closing the one named, if any); a named
//! session with epoch -1 closes it and is served sessionless; epoch N > 0 is incremental and
//! must name a live session (FETCH_SESSION_ID_NOT_FOUND) at its expected epoch
//! (INVALID_FETCH_SESSION_EPOCH). An incremental response carries a partition only if it has
//! records, an error, a preferred read replica, or a new high watermark or log start offset
//! since the last response (after an error, any high watermark counts as new).
//!
//! A session keys its partitions as Kafka's `TopicIdPartition` does: by topic id when the
//! session was created by a v13+ request (and then only v13+ requests may use it,
//! FETCH_SESSION_TOPIC_ID_ERROR otherwise), else by name. An id no topic has yet is kept and
//! looked up again each round until a topic has it; a deleted topic's partitions stay in an
//! id-keyed session, answered with an error, until the client forgets them, and leave a
//! name-keyed one (`forget_named_topic`).
//!
//! The cache holds at most `capacity` sessions (Kafka's `max.incremental.fetch.session.cache.
//! slots`); idle ones go after two minutes. When it is full, a new session may take the place
//! of the least valuable session created more than two minutes ago, valued as Kafka's
//! `FetchSessionCache.tryEvict` values them (a follower's above a consumer's, then by partition
//! count): only if the newcomer is worth more, so consumers cannot crowd followers out of
//! incremental fetching and a fresh session is never evicted. Session ids are random, as
//! Kafka's, so a client that outlived a broker restart does not name (or close) another
//! client's session.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use indexmap::{Equivalent, IndexMap};
use kafka_protocol::messages::FetchRequest;
use parking_lot::Mutex;
use protocol_shim::ErrorKind;
use uuid::Uuid;

use super::{PartitionRead, WantedPartition};
use crate::node::Node;
use crate::partition::Partition;

/// Sessions unused this long are evicted.
const SESSION_IDLE: Duration = Duration::from_secs(120);

/// A partition as the request names it: by topic name (v<13) or topic id (v13+), resolved to
/// a name where the topic exists. The name is shared: a session's rounds clone keys for
/// every partition it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: Option<Arc<str>>,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl PartitionKey {
    /// Named by a topic id no topic had a name for when it was resolved (the nil id never
    /// names one).
    fn names_unknown_id(&self) -> bool {
        self.topic.is_none() && !self.topic_id.is_nil()
    }
}

/// The partitions to read for one request, and what to do with the response.
#[derive(Debug)]
pub struct FetchPlan {
    /// Shared with the session while it does not change, so an incremental fetch that adds,
    /// alters and forgets nothing costs no copy of the session's partitions.
    pub wanted: Arc<Vec<WantedPartition>>,
    /// In an incremental fetch, the partitions `wanted` names as the session found them (same
    /// order; an empty `Weak` where none was), valid while the partition manager's generation
    /// is unchanged: a round looks none of them up again. Weak, so an idle session keeps no
    /// deleted partition open.
    pub found: Option<Arc<Vec<Weak<Partition>>>>,
    /// Session id to put in the response (0 = none).
    pub response_session_id: i32,
    /// Incremental responses are filtered against the session's cache.
    pub incremental: bool,
}

/// How a session keys its partitions, as Kafka's `TopicIdPartition`: by topic id where the
/// request names topics by id (v13+; an id no topic has yet is a key of its own), else by name;
/// and the partition index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionKey {
    Id(Uuid, i32),
    Name(Arc<str>, i32),
}

/// A `SessionKey` looked up without building one. Hashes as `SessionKey` does (see the `Hash`
/// impls: a tag, then the id or the name's `str`, then the partition).
enum SessionKeyRef<'a> {
    Id(Uuid, i32),
    Name(&'a str, i32),
}

impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            SessionKey::Id(id, p) => SessionKeyRef::Id(*id, *p).hash(state),
            SessionKey::Name(name, p) => SessionKeyRef::Name(name, *p).hash(state),
        }
    }
}

impl Hash for SessionKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            SessionKeyRef::Id(id, p) => {
                0u8.hash(state);
                id.hash(state);
                p.hash(state);
            }
            SessionKeyRef::Name(name, p) => {
                1u8.hash(state);
                name.hash(state);
                p.hash(state);
            }
        }
    }
}

impl Equivalent<SessionKey> for SessionKeyRef<'_> {
    fn equivalent(&self, key: &SessionKey) -> bool {
        match (self, key) {
            (SessionKeyRef::Id(a, p), SessionKey::Id(b, q)) => a == b && p == q,
            (SessionKeyRef::Name(a, p), SessionKey::Name(b, q)) => p == q && *a == &**b,
            _ => false,
        }
    }
}

impl<'a> SessionKeyRef<'a> {
    /// The key of `key` in a session that uses topic ids (`by_id`, v13+) or names.
    fn of(key: &'a PartitionKey, by_id: bool) -> Self {
        if by_id {
            SessionKeyRef::Id(key.topic_id, key.partition)
        } else {
            SessionKeyRef::Name(key.topic.as_deref().unwrap_or(""), key.partition)
        }
    }
}

impl SessionKey {
    /// See `SessionKeyRef::of`.
    fn of(key: &PartitionKey, by_id: bool) -> Self {
        if by_id {
            SessionKey::Id(key.topic_id, key.partition)
        } else {
            SessionKey::Name(
                key.topic.clone().unwrap_or_else(|| Arc::from("")),
                key.partition,
            )
        }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    wanted: WantedPartition,
    last_high_watermark: i64,
    last_log_start_offset: i64,
}

impl Cached {
    fn new(wanted: WantedPartition) -> Self {
        Self {
            wanted,
            last_high_watermark: -1,
            last_log_start_offset: -1,
        }
    }
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    /// A follower's (Kafka's privileged session): evicted only for a larger follower's.
    privileged: bool,
    created: Instant,
    /// Created by a v13+ request: keyed by topic id, and only v13+ requests may go on with it
    /// (Kafka's `usesTopicIds`).
    uses_topic_ids: bool,
    /// Some partition may name a topic id no topic had when it was added: each round looks
    /// such ids up again (a broker can hear of a topic after its clients).
    unresolved: bool,
    /// The order they are read and answered in: as added, except that a round whose budget ran
    /// out moves the partitions that sent records to the back (`move_to_back`).
    partitions: IndexMap<SessionKey, Cached>,
    /// What `partitions` asks for, in the same order: updated in place when a round alters a
    /// partition, built again only after one is added or forgotten.
    wanted: Option<Arc<Vec<WantedPartition>>>,
    /// The partitions `wanted` names, found at the manager's generation given.
    found: Option<(u64, Arc<Vec<Weak<Partition>>>)>,
    last_used: Instant,
}

impl Session {
    fn wanted(&mut self) -> Arc<Vec<WantedPartition>> {
        let partitions = &self.partitions;
        Arc::clone(self.wanted.get_or_insert_with(|| {
            Arc::new(partitions.values().map(|c| c.wanted.clone()).collect())
        }))
    }

    /// Moves the partitions at `indexes` to the back, keeping the order within each part, and
    /// reorders the lists kept for rounds (`wanted`, `found`) the same way.
    fn move_to_back(&mut self, indexes: &[usize]) {
        let n = self.partitions.len();
        let mut moved = vec![false; n];
        for &j in indexes {
            if let Some(m) = moved.get_mut(j) {
                *m = true;
            }
        }
        let is_moved = |j: &usize| moved.get(*j).copied().unwrap_or(false);
        let order: Vec<usize> = (0..n)
            .filter(|j| !is_moved(j))
            .chain((0..n).filter(|j| is_moved(j)))
            .collect();
        let mut slots: Vec<Option<(SessionKey, Cached)>> = std::mem::take(&mut self.partitions)
            .into_iter()
            .map(Some)
            .collect();
        self.partitions = order
            .iter()
            .filter_map(|&j| slots.get_mut(j).and_then(Option::take))
            .collect();
        self.wanted = self
            .wanted
            .take()
            .filter(|w| w.len() == n)
            .map(|w| Arc::new(order.iter().filter_map(|&j| w.get(j).cloned()).collect()));
        self.found = self
            .found
            .take()
            .filter(|(_, f)| f.len() == n)
            .map(|(g, f)| {
                (
                    g,
                    Arc::new(order.iter().filter_map(|&j| f.get(j).cloned()).collect()),
                )
            });
    }

    /// Gives the partitions named by an id no topic had a name, once a topic has that id: each
    /// distinct id is looked up once a round; the nil id never names a topic.
    fn resolve_names(&mut self, node: &Node) {
        let mut names: HashMap<Uuid, Option<Arc<str>>> = HashMap::new();
        let mut resolved = false;
        let mut unresolved = false;
        for c in self.partitions.values_mut() {
            if !c.wanted.key.names_unknown_id() {
                continue;
            }
            let id = c.wanted.key.topic_id;
            let name = names
                .entry(id)
                .or_insert_with(|| node.topics.name_of_id(id).map(Arc::from));
            match name {
                Some(name) => {
                    c.wanted.key.topic = Some(Arc::clone(name));
                    resolved = true;
                }
                None => unresolved = true,
            }
        }
        self.unresolved = unresolved;
        if resolved {
            self.changed();
        }
    }

    /// The session's partitions were added to or forgotten: its lists are built again.
    fn changed(&mut self) {
        self.wanted = None;
        self.found = None;
    }

    /// The partitions `wanted` (the session's list) names, found again only when the session
    /// changed or a partition was opened or removed since.
    fn found(&mut self, node: &Node, wanted: &[WantedPartition]) -> Arc<Vec<Weak<Partition>>> {
        let generation = node.partitions.generation();
        if let Some((g, found)) = &self.found {
            if *g == generation && found.len() == wanted.len() {
                return Arc::clone(found);
            }
        }
        let found: Arc<Vec<Weak<Partition>>> = Arc::new(
            node.partitions
                .get_many(
                    wanted
                        .iter()
                        .map(|w| (w.key.topic.as_deref(), w.key.partition)),
                )
                .iter()
                .map(|p| p.as_ref().map_or_else(Weak::new, Arc::downgrade))
                .collect(),
        );
        self.found = Some((generation, Arc::clone(&found)));
        found
    }
}

/// All live sessions of this broker, bounded in number.
#[derive(Debug)]
pub struct FetchSessionCache {
    capacity: usize,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessionCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A deleted topic leaves the sessions that name topics by name (before v13): such a
    /// session cannot tell a topic re-created under the same name from the deleted one.
    /// Sessions keyed by topic id (Sluice's followers' among them) keep its partitions and
    /// answer them with an error until the client forgets them, as Kafka's do.
    pub fn forget_named_topic(&self, topic: &str) {
        for s in self.sessions.lock().values_mut() {
            if s.uses_topic_ids {
                continue;
            }
            let before = s.partitions.len();
            s.partitions
                .retain(|k, _| !matches!(k, SessionKey::Name(name, _) if &**name == topic));
            if s.partitions.len() != before {
                s.changed();
            }
        }
    }

    /// Keeps only what an incremental response must carry, and remembers what was sent.
    /// `entries` are the plan's partitions in its order (the session's unless it changed
    /// since); what is kept comes with its index in the plan. With `rotate` (the answer's
    /// byte budget may have cut a partition short) the partitions that sent records move to
    /// the back of the session, as Kafka's `IncrementalFetchContext` does every round, so
    /// those behind them are read first next time instead of starving.
    pub fn filter_response(
        &self,
        plan: &FetchPlan,
        entries: Vec<PartitionRead>,
        rotate: bool,
    ) -> Vec<(usize, PartitionRead)> {
        if plan.response_session_id == 0 {
            return entries.into_iter().enumerate().collect();
        }
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.get_mut(&plan.response_session_id) else {
            return entries.into_iter().enumerate().collect();
        };
        let mut sent_records = Vec::new();
        let kept = entries
            .into_iter()
            .enumerate()
            .filter(|(i, read)| {
                let Some(key) = plan.wanted.get(*i).map(|w| &w.key) else {
                    return true;
                };
                let lookup = SessionKeyRef::of(key, session.uses_topic_ids);
                let index = match session.partitions.get_index(*i) {
                    Some((k, _)) if lookup.equivalent(k) => Some(*i),
                    _ => session.partitions.get_index_of(&lookup),
                };
                let Some(j) = index else {
                    return true;
                };
                if !read.records.is_empty() {
                    sent_records.push(j);
                }
                let Some((_, cached)) = session.partitions.get_index_mut(j) else {
                    return true;
                };
                // As Kafka's `CachedPartition.maybeUpdateResponseData`: a preferred read replica
                // must reach the client (else it is answered at once with nothing, and asks
                // again in a loop), and after an error the high watermark is forgotten so the
                // partition is sent again once the error clears.
                let changed = !read.records.is_empty()
                    || read.error != ErrorKind::None
                    || read.preferred_read_replica >= 0
                    || read.high_watermark != cached.last_high_watermark
                    || read.log_start_offset != cached.last_log_start_offset;
                cached.last_high_watermark = if read.error == ErrorKind::None {
                    read.high_watermark
                } else {
                    -1
                };
                cached.last_log_start_offset = read.log_start_offset;
                !plan.incremental || changed
            })
            .collect();
        if rotate && !sent_records.is_empty() {
            session.move_to_back(&sent_records);
        }
        kept
    }
}

/// The topic a request's topic entry names: its name (v<13) or the name of its id (v13+;
/// `None` for an unknown id). Once per topic entry, not per partition.
fn resolve_topic(
    node: &Node,
    name: &str,
    topic_id: Uuid,
    version: i16,
) -> (Option<Arc<str>>, Uuid) {
    if version >= 13 {
        (node.topics.name_of_id(topic_id).map(Arc::from), topic_id)
    } else {
        (Some(Arc::from(name)), Uuid::nil())
    }
}

fn requested(node: &Node, request: &FetchRequest, version: i16) -> Vec<WantedPartition> {
    let mut wanted = Vec::with_capacity(request.topics.iter().map(|t| t.partitions.len()).sum());
    for t in &request.topics {
        let (topic, topic_id) = resolve_topic(node, t.topic.0.as_str(), t.topic_id, version);
        wanted.extend(t.partitions.iter().map(|p| WantedPartition {
            key: PartitionKey {
                topic: topic.clone(),
                topic_id,
                partition: p.partition,
            },
            fetch_offset: p.fetch_offset,
            log_start_offset: if version >= 5 { p.log_start_offset } else { -1 },
            partition_max_bytes: p.partition_max_bytes,
            current_leader_epoch: if version >= 9 {
                p.current_leader_epoch
            } else {
                -1
            },
        }));
    }
    without_duplicates(wanted, version >= 13)
}

/// Kafka reads a Fetch's partitions into a map keyed by topic id (v13+) or name: a partition
/// named twice is answered once, in its first place, for what its last mention asks.
fn without_duplicates(wanted: Vec<WantedPartition>, by_id: bool) -> Vec<WantedPartition> {
    if wanted.len() < 2 {
        return wanted;
    }
    // (first place, a later place naming the same partition)
    let mut repeats = Vec::new();
    {
        let mut first: HashMap<(Uuid, Option<&str>, i32), usize> =
            HashMap::with_capacity(wanted.len());
        for (i, w) in wanted.iter().enumerate() {
            let key = if by_id {
                (w.key.topic_id, None, w.key.partition)
            } else {
                (Uuid::nil(), w.key.topic.as_deref(), w.key.partition)
            };
            match first.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => repeats.push((*e.get(), i)),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
        }
    }
    if repeats.is_empty() {
        return wanted;
    }
    let mut slots: Vec<Option<WantedPartition>> = wanted.into_iter().map(Some).collect();
    for (keep, repeat) in repeats {
        if let Some(w) = slots.get_mut(repeat).and_then(Option::take) {
            if let Some(slot) = slots.get_mut(keep) {
                *slot = Some(w);
            }
        }
    }
    slots.into_iter().flatten().collect()
}

/// Works out the partitions to read and updates the session cache.
/// A random positive id no live session has.
fn new_session_id(sessions: &HashMap<i32, Session>) -> i32 {
    loop {
        let id = rand::random::<i32>() & i32::MAX;
        if id != 0 && !sessions.contains_key(&id) {
            return id;
        }
    }
}

/// Makes room for a new session of `size` partitions in a full cache, if the rule allows: of
/// the sessions created at least `SESSION_IDLE` before `now`, the least valuable (a consumer's
/// before a follower's, then the fewest partitions, then the least recently used) goes if the
/// newcomer (`privileged`: a follower's) is worth more.
fn evict_for(
    sessions: &mut HashMap<i32, Session>,
    privileged: bool,
    size: usize,
    now: Instant,
) -> bool {
    let least = sessions
        .iter()
        .filter(|(_, s)| now.duration_since(s.created) >= SESSION_IDLE)
        .min_by_key(|(_, s)| (s.privileged, s.partitions.len(), s.last_used))
        .map(|(&id, s)| (id, (s.privileged, s.partitions.len())));
    match least {
        Some((id, value)) if (privileged, size) > value => {
            sessions.remove(&id);
            true
        }
        _ => false,
    }
}

/// The partitions a Fetch reads, and its session's answer id. `privileged`: a follower's
/// fetch, whose session may take a consumer's place in a full cache.
pub fn plan(
    node: &Node,
    request: &FetchRequest,
    version: i16,
    privileged: bool,
) -> Result<FetchPlan, ErrorKind> {
    plan_at(node, request, version, privileged, Instant::now())
}

/// `plan` with the clock read at `now` (tests step it past the session timeouts).
fn plan_at(
    node: &Node,
    request: &FetchRequest,
    version: i16,
    privileged: bool,
    now: Instant,
) -> Result<FetchPlan, ErrorKind> {
    let wanted = requested(node, request, version);
    if version < 7 {
        return Ok(FetchPlan {
            wanted: Arc::new(wanted),
            found: None,
            response_session_id: 0,
            incremental: false,
        });
    }
    let cache = &node.fetch_sessions;
    let id = request.session_id;
    let epoch = request.session_epoch;
    let mut sessions = cache.sessions.lock();
    sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
    if epoch == -1 || epoch == 0 {
        if id != 0 {
            sessions.remove(&id);
        }
        let mut response_session_id = 0;
        let wanted = Arc::new(wanted);
        if epoch == 0
            && (sessions.len() < cache.capacity
                || evict_for(&mut sessions, privileged, wanted.len(), now))
        {
            let new_id = new_session_id(&sessions);
            let mut partitions = IndexMap::with_capacity(wanted.len());
            for w in wanted.iter() {
                partitions.insert(
                    SessionKey::of(&w.key, version >= 13),
                    Cached::new(w.clone()),
                );
            }
            // A request naming a partition twice leaves one entry: build the list again.
            let same = partitions.len() == wanted.len();
            sessions.insert(
                new_id,
                Session {
                    next_epoch: 1,
                    privileged,
                    created: now,
                    uses_topic_ids: version >= 13,
                    unresolved: wanted.iter().any(|w| w.key.names_unknown_id()),
                    partitions,
                    wanted: same.then(|| Arc::clone(&wanted)),
                    found: None,
                    last_used: now,
                },
            );
            response_session_id = new_id;
        }
        return Ok(FetchPlan {
            wanted,
            found: None,
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
    if session.uses_topic_ids != (version >= 13) {
        // Kafka's `FetchManager.newContext`: a session's requests name topics one way.
        return Err(ErrorKind::FetchSessionTopicIdError);
    }
    let by_id = session.uses_topic_ids;
    session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
    session.last_used = now;
    for mut w in wanted {
        match session
            .partitions
            .get_full_mut(&SessionKeyRef::of(&w.key, by_id))
        {
            Some((i, _, c)) => {
                // An id no topic has any more keeps the name it had (a deleted topic's
                // partition then answers UNKNOWN_TOPIC_OR_PARTITION, as in Kafka).
                if w.key.topic.is_none() {
                    w.key.topic.clone_from(&c.wanted.key.topic);
                }
                session.unresolved |= w.key.names_unknown_id();
                // The list is in the session's order: change its entry in place (copying the
                // list only if a request still reads it).
                let in_place = session
                    .wanted
                    .as_mut()
                    .and_then(|list| Arc::make_mut(list).get_mut(i))
                    .map(|slot| *slot = w.clone())
                    .is_some();
                c.wanted = w;
                if !in_place {
                    session.changed();
                }
            }
            None => {
                session.unresolved |= w.key.names_unknown_id();
                session.changed();
                session
                    .partitions
                    .insert(SessionKey::of(&w.key, by_id), Cached::new(w));
            }
        }
    }
    for f in &request.forgotten_topics_data {
        for &p in &f.partitions {
            let key = if version >= 13 {
                SessionKeyRef::Id(f.topic_id, p)
            } else {
                SessionKeyRef::Name(f.topic.0.as_str(), p)
            };
            if session.partitions.shift_remove(&key).is_some() {
                session.changed();
            }
        }
    }
    if session.unresolved {
        session.resolve_names(node);
    }
    let wanted = session.wanted();
    let found = session.found(node, &wanted);
    Ok(FetchPlan {
        wanted,
        found: Some(found),
        response_session_id: id,
        incremental: true,
    })
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
