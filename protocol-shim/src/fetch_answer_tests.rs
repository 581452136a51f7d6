//! `encode_fetch_answer` against `kafka-protocol`'s encoder of the same response, at every
//! version, with every field.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::response::encode_response;
use kafka_protocol::messages::fetch_response::{
    self, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    SnapshotId,
};
use kafka_protocol::messages::{BrokerId, FetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

/// The codec's form of `answer`, with external record set `i` holding `external[i]`.
fn to_response(answer: &FetchAnswer, external: &[Bytes]) -> FetchResponse {
    let topics = answer
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut d = PartitionData::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(p.error_code)
                        .with_high_watermark(p.high_watermark)
                        .with_last_stable_offset(p.last_stable_offset)
                        .with_log_start_offset(p.log_start_offset)
                        .with_preferred_read_replica(BrokerId(p.preferred_read_replica))
                        .with_aborted_transactions(p.aborted_transactions.as_ref().map(|v| {
                            v.iter()
                                .map(|a| {
                                    fetch_response::AbortedTransaction::default()
                                        .with_producer_id(a.producer_id.into())
                                        .with_first_offset(a.first_offset)
                                })
                                .collect()
                        }))
                        .with_records(p.records.as_ref().map(|r| match r {
                            AnswerRecords::Bytes(b) => b.clone(),
                            AnswerRecords::External { index, .. } => external[*index].clone(),
                        }));
                    d.diverging_epoch = EpochEndOffset::default()
                        .with_epoch(p.diverging_epoch.0)
                        .with_end_offset(p.diverging_epoch.1);
                    d.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(p.current_leader.0))
                        .with_leader_epoch(p.current_leader.1);
                    d.snapshot_id = SnapshotId::default()
                        .with_end_offset(p.snapshot_id.0)
                        .with_epoch(p.snapshot_id.1);
                    d
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(t.name.to_string())))
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default()
        .with_throttle_time_ms(answer.throttle_time_ms)
        .with_error_code(answer.error_code)
        .with_session_id(answer.session_id)
        .with_responses(topics)
        .with_node_endpoints(
            answer
                .node_endpoints
                .iter()
                .map(|e| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(e.node_id))
                        .with_host(StrBytes::from_string(e.host.clone()))
                        .with_port(e.port)
                        .with_rack(e.rack.clone().map(StrBytes::from_string))
                })
                .collect(),
        )
}

/// The frame the chunks make, external record set `i` being `external[i]`.
fn concat(chunks: &[FrameChunk], external: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        match c {
            FrameChunk::Bytes(b) => out.extend_from_slice(b),
            FrameChunk::External(i) => out.extend_from_slice(&external[*i]),
        }
    }
    out
}

/// -1 (unset) half of the time.
fn maybe<T: std::fmt::Debug + Clone + From<i8> + 'static>(
    set: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![Just(T::from(-1)), set].boxed()
}

fn bytes_of(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// A partition; its records are inline (`Some(len, false)`), external (`Some(len, true)`) or
/// null (`None`).
fn partition() -> impl Strategy<Value = (PartitionAnswer, Option<(usize, bool)>)> {
    (
        (
            any::<i32>(),
            any::<i16>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        ),
        proptest::option::of(proptest::collection::vec(
            (any::<i64>(), any::<i64>()),
            0..3,
        )),
        // Set rarely: below v11 it makes the whole answer unencodable.
        prop_oneof![9 => Just(-1), 1 => 0i32..5],
        proptest::option::of((prop_oneof![0usize..64, 1000usize..5000], any::<bool>())),
        (
            (maybe(any::<i32>()), maybe(any::<i64>())),
            (maybe(any::<i32>()), maybe(any::<i32>())),
            (maybe(any::<i64>()), maybe(any::<i32>())),
        ),
    )
        .prop_map(
            |((index, error, hw, lso, start), aborted, preferred, records, tagged)| {
                let mut p = PartitionAnswer::new(index);
                p.error_code = error;
                p.high_watermark = hw;
                p.last_stable_offset = lso;
                p.log_start_offset = start;
                p.aborted_transactions = aborted.map(|v| {
                    v.into_iter()
                        .map(|(producer_id, first_offset)| AbortedTransaction {
                            producer_id,
                            first_offset,
                        })
                        .collect()
                });
                p.preferred_read_replica = preferred;
                (p.diverging_epoch, p.current_leader, p.snapshot_id) = tagged;
                (p, records)
            },
        )
}

fn answer() -> impl Strategy<Value = (FetchAnswer, Vec<Bytes>)> {
    (
        // A session id below v7 makes the answer unencodable: mostly 0.
        (
            any::<i32>(),
            any::<i16>(),
            prop_oneof![4 => Just(0), 1 => 1i32..3],
        ),
        proptest::collection::vec(
            (
                "[a-z._-]{0,12}",
                any::<u128>(),
                proptest::collection::vec(partition(), 0..5),
            ),
            0..4,
        ),
        proptest::collection::vec(
            (
                any::<i32>(),
                "[a-z0-9.]{0,12}",
                any::<i32>(),
                proptest::option::of("[a-z0-9]{0,4}"),
            ),
            0..3,
        ),
    )
        .prop_map(|((throttle, error, session), topics, endpoints)| {
            let mut external = Vec::new();
            let topics = topics
                .into_iter()
                .map(|(name, id, partitions)| TopicAnswer {
                    name: Arc::from(name.as_str()),
                    topic_id: Uuid::from_u128(id),
                    partitions: partitions
                        .into_iter()
                        .map(|(mut p, records)| {
                            let seed = external.len() as u8;
                            p.records = records.map(|(len, outside)| {
                                if outside {
                                    external.push(bytes_of(len, seed));
                                    AnswerRecords::External {
                                        index: external.len() - 1,
                                        len,
                                    }
                                } else {
                                    AnswerRecords::Bytes(bytes_of(len, seed))
                                }
                            });
                            p
                        })
                        .collect(),
                })
                .collect();
            let answer = FetchAnswer {
                throttle_time_ms: throttle,
                error_code: error,
                session_id: session,
                topics,
                node_endpoints: endpoints
                    .into_iter()
                    .map(|(node_id, host, port, rack)| Endpoint {
                        node_id,
                        host,
                        port,
                        rack,
                    })
                    .collect(),
            };
            (answer, external)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encodes_what_the_codec_encodes(version in 4i16..=18, (answer, external) in answer()) {
        let codec = encode_response(
            ApiKey::Fetch,
            version,
            77,
            &ResponseKind::Fetch(to_response(&answer, &external)),
        );
        let ours = encode_fetch_answer(version, 77, &answer);
        match (codec, ours) {
            (Ok(codec), Ok(chunks)) => prop_assert_eq!(concat(&chunks, &external), codec.to_vec()),
            (Err(_), Err(_)) => {}
            (codec, ours) => prop_assert!(false, "codec {:?}, ours {:?}", codec.err(), ours.err()),
        }
    }
}

#[test]
fn large_records_are_chunks_of_their_own_and_small_ones_are_copied() {
    let mut big = PartitionAnswer::new(0);
    big.records = Some(AnswerRecords::Bytes(bytes_of(50_000, 1)));
    let mut small = PartitionAnswer::new(1);
    small.records = Some(AnswerRecords::Bytes(bytes_of(10, 2)));
    let mut outside = PartitionAnswer::new(2);
    outside.records = Some(AnswerRecords::External {
        index: 0,
        len: 70_000,
    });
    let big_ptr = match &big.records {
        Some(AnswerRecords::Bytes(b)) => b.as_ptr(),
        _ => unreachable!(),
    };
    let answer = FetchAnswer {
        topics: vec![TopicAnswer {
            name: Arc::from("t"),
            topic_id: Uuid::nil(),
            partitions: vec![big, small, outside],
        }],
        ..FetchAnswer::default()
    };
    let chunks = encode_fetch_answer(16, 1, &answer).unwrap();
    // head (through the first length), the big records, the encoding between (with the
    // small records), the external records, the rest.
    assert_eq!(chunks.len(), 5, "{chunks:?}");
    assert!(matches!(&chunks[1], FrameChunk::Bytes(b) if b.as_ptr() == big_ptr));
    assert_eq!(chunks[3], FrameChunk::External(0));
    let size: usize = chunks
        .iter()
        .map(|c| match c {
            FrameChunk::Bytes(b) => b.len(),
            FrameChunk::External(_) => 70_000,
        })
        .sum();
    let FrameChunk::Bytes(head) = &chunks[0] else {
        panic!("the head is bytes")
    };
    assert_eq!(
        i32::from_be_bytes(head[..4].try_into().unwrap()) as usize,
        size - 4
    );
}

#[test]
fn fields_a_version_cannot_carry_are_refused() {
    let mut p = PartitionAnswer::new(0);
    p.preferred_read_replica = 2;
    let answer = FetchAnswer {
        topics: vec![TopicAnswer {
            name: Arc::from("t"),
            topic_id: Uuid::nil(),
            partitions: vec![p],
        }],
        ..FetchAnswer::default()
    };
    assert!(encode_fetch_answer(10, 1, &answer).is_err());
    assert!(encode_fetch_answer(11, 1, &answer).is_ok());
    let session = FetchAnswer {
        session_id: 5,
        ..FetchAnswer::default()
    };
    assert!(encode_fetch_answer(6, 1, &session).is_err());
    assert!(encode_fetch_answer(3, 1, &FetchAnswer::default()).is_err());
    assert!(encode_fetch_answer(19, 1, &FetchAnswer::default()).is_err());
}
