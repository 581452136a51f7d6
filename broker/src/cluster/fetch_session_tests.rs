//! The follower's fetch session: what each round names and forgets, and when it starts over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.to_string(),
        partition,
    }
}

/// A topic's id in these tests (one per name).
fn id(topic: &str) -> Uuid {
    Uuid::from_u128(topic.bytes().fold(1u128, |h, b| h * 31 + u128::from(b)))
}

fn sent(fetch_offset: i64) -> Sent {
    Sent {
        fetch_offset,
        leader_epoch: 3,
        log_start_offset: 0,
    }
}

/// Entries over `tps` with the given offsets and stamps.
fn entries<'a>(
    tps: &'a [TopicPartition],
    offsets: &[i64],
    stamps: &[Option<Stamp>],
) -> Vec<RoundEntry<'a>> {
    tps.iter()
        .zip(offsets)
        .zip(stamps)
        .map(|((tp, &o), &stamp)| RoundEntry {
            tp,
            topic_id: id(&tp.topic),
            sent: sent(o),
            stamp,
        })
        .collect()
}

/// A session opened with a full round over `tps` at offset 0, and the stamps it gave.
fn opened(tps: &[TopicPartition], id: i32) -> (FollowerSession, Vec<Option<Stamp>>) {
    let mut s = FollowerSession::new();
    let none = vec![None; tps.len()];
    let e = entries(tps, &vec![0; tps.len()], &none);
    let plan = s.plan(&e);
    let stamps = s.complete(&plan, &e, id).expect("session opened");
    (s, stamps.into_iter().map(Some).collect())
}

#[test]
fn the_first_round_is_full_and_asks_for_a_session() {
    let tps = [tp("a", 0), tp("a", 1), tp("b", 0)];
    let s = FollowerSession::new();
    let plan = s.plan(&entries(&tps, &[5, 6, 7], &[None, None, None]));
    assert_eq!((plan.session_id, plan.epoch), (0, 0));
    assert_eq!(plan.include, vec![0, 1, 2]);
    assert!(plan.forget.is_empty());
}

#[test]
fn without_a_session_from_the_leader_every_round_stays_full() {
    let tps = [tp("a", 0), tp("a", 1)];
    let mut s = FollowerSession::new();
    let e = entries(&tps, &[0, 0], &[None, None]);
    let plan = s.plan(&e);
    assert_eq!(s.complete(&plan, &e, 0), None);
    let again = s.plan(&e);
    assert_eq!((again.session_id, again.epoch), (0, 0));
    assert_eq!(again.include, vec![0, 1]);
}

#[test]
fn an_unchanged_round_names_nothing_and_a_changed_partition_alone_is_named() {
    let tps = [tp("a", 0), tp("a", 1), tp("b", 0)];
    let (mut s, stamps) = opened(&tps, 42);
    let e = entries(&tps, &[0, 0, 0], &stamps);
    let plan = s.plan(&e);
    assert_eq!((plan.session_id, plan.epoch), (42, 1));
    assert!(plan.include.is_empty());
    assert!(plan.forget.is_empty());
    assert!(s.complete(&plan, &e, 42).is_some());

    let e = entries(&tps, &[0, 10, 0], &stamps);
    let plan = s.plan(&e);
    assert_eq!((plan.session_id, plan.epoch), (42, 2));
    assert_eq!(plan.include, vec![1]);
    let new = s.complete(&plan, &e, 42).expect("in a session");
    assert_eq!(new.len(), 1);

    // With the new stamp the partition is unchanged again.
    let stamps = vec![stamps[0], Some(new[0]), stamps[2]];
    let plan = s.plan(&entries(&tps, &[0, 10, 0], &stamps));
    assert!(plan.include.is_empty());
    assert_eq!(plan.epoch, 3);
}

#[test]
fn a_new_leader_epoch_or_log_start_counts_as_a_change() {
    let tps = [tp("a", 0), tp("a", 1)];
    let (s, stamps) = opened(&tps, 1);
    let mut e = entries(&tps, &[0, 0], &stamps);
    e[0].sent.leader_epoch = 4;
    e[1].sent.log_start_offset = 9;
    assert_eq!(s.plan(&e).include, vec![0, 1]);
}

#[test]
fn a_partition_missing_from_a_round_is_forgotten_and_named_again_when_it_returns() {
    let tps = [tp("a", 0), tp("a", 1), tp("b", 0)];
    let (mut s, stamps) = opened(&tps, 5);
    // "a"-1 backs off: not in this round.
    let fewer = [tps[0].clone(), tps[2].clone()];
    let e = entries(&fewer, &[0, 0], &[stamps[0], stamps[2]]);
    let plan = s.plan(&e);
    assert_eq!(plan.forget, vec![(tp("a", 1), id("a"))]);
    assert!(plan.include.is_empty());
    s.complete(&plan, &e, 5).expect("in a session");
    // The fetcher clears a forgotten partition's stamp; it is named when it returns.
    let e = entries(&tps, &[0, 0, 0], &[stamps[0], None, stamps[2]]);
    let plan = s.plan(&e);
    assert_eq!(plan.include, vec![1]);
    assert!(plan.forget.is_empty());
    s.complete(&plan, &e, 5).expect("in a session");
    assert_eq!(s.members.len(), 3);
}

#[test]
fn a_new_partition_joins_and_a_replaced_target_is_named_without_forgetting_it() {
    let tps = [tp("a", 0), tp("a", 1)];
    let (mut s, stamps) = opened(&tps, 5);
    let more = [tp("a", 0), tp("a", 1), tp("c", 0)];
    // "a"-0's target was replaced (its stamp is gone); "c"-0 is new.
    let e = entries(&more, &[0, 0, 0], &[None, stamps[1], None]);
    let plan = s.plan(&e);
    assert_eq!(plan.include, vec![0, 2]);
    assert!(plan.forget.is_empty());
    s.complete(&plan, &e, 5).expect("in a session");
    assert_eq!(s.members.len(), 3);
}

#[test]
fn a_reset_makes_earlier_stamps_stale_and_the_next_round_full() {
    let tps = [tp("a", 0), tp("a", 1)];
    let (mut s, stamps) = opened(&tps, 5);
    s.reset();
    let e = entries(&tps, &[0, 0], &stamps);
    let plan = s.plan(&e);
    // Full (epoch 0), naming the old session for the leader to close.
    assert_eq!((plan.session_id, plan.epoch), (5, 0));
    assert_eq!(plan.include, vec![0, 1]);
    // A new session: the old stamps do not count in it.
    let fresh = s.complete(&plan, &e, 6).expect("session opened");
    let plan = s.plan(&e);
    assert_eq!(plan.session_id, 6);
    assert_eq!(plan.include, vec![0, 1]);
    let fresh: Vec<_> = fresh.into_iter().map(Some).collect();
    assert!(s.plan(&entries(&tps, &[0, 0], &fresh)).include.is_empty());
}

#[test]
fn the_epoch_wraps_to_one() {
    let tps = [tp("a", 0)];
    let (mut s, stamps) = opened(&tps, 5);
    s.next_epoch = i32::MAX;
    let e = entries(&tps, &[0], &stamps);
    let plan = s.plan(&e);
    assert_eq!(plan.epoch, i32::MAX);
    s.complete(&plan, &e, 5).expect("in a session");
    assert_eq!(s.plan(&e).epoch, 1);
}

#[test]
fn a_partition_named_under_a_new_topic_id_is_forgotten_under_the_old_one() {
    let tps = [tp("a", 0), tp("b", 0)];
    let (mut s, stamps) = opened(&tps, 5);
    // "a" was deleted and re-created: its new target has no stamp and a new id.
    let mut e = entries(&tps, &[0, 0], &[None, stamps[1]]);
    let new_id = Uuid::from_u128(77);
    e[0].topic_id = new_id;
    let plan = s.plan(&e);
    assert_eq!(plan.include, vec![0]);
    assert_eq!(plan.forget, vec![(tp("a", 0), id("a"))]);
    let new = s.complete(&plan, &e, 5).expect("in a session");
    assert_eq!(s.members.get(&tp("a", 0)), Some(&new_id));
    assert_eq!(s.members.len(), 2);
    // Stamped under its new id, the partition is unchanged in the next round.
    e[0].stamp = Some(new[0]);
    let plan = s.plan(&e);
    assert!(plan.include.is_empty());
    assert!(plan.forget.is_empty());
}

#[test]
fn a_current_stamp_under_another_topic_id_does_not_count() {
    let tps = [tp("a", 0)];
    let (s, stamps) = opened(&tps, 5);
    let mut e = entries(&tps, &[0], &stamps);
    e[0].topic_id = Uuid::from_u128(78);
    let plan = s.plan(&e);
    assert_eq!(plan.include, vec![0]);
    assert_eq!(plan.forget, vec![(tp("a", 0), id("a"))]);
}

#[test]
fn a_full_round_after_a_reset_closes_the_old_session_once() {
    let tps = [tp("a", 0)];
    let (mut s, _) = opened(&tps, 5);
    s.reset();
    // A second reset before any answer (a lost connection) still names the session to close.
    s.reset();
    let e = entries(&tps, &[0], &[None]);
    let plan = s.plan(&e);
    assert_eq!((plan.session_id, plan.epoch), (5, 0));
    // The leader closed it but opened none: the next full round names nothing to close.
    assert_eq!(s.complete(&plan, &e, 0), None);
    let plan = s.plan(&e);
    assert_eq!((plan.session_id, plan.epoch), (0, 0));
}
