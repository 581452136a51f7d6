//! Tests of the response writer: answered responses after the one being written join its
//! write in order, and gathering stops at one not answered yet (kept and waited on next), at
//! one with record data in a file (written on its own), at one that closes the connection, at
//! the chunk limit and after as many responses as the queue holds; over a socket, every
//! response arrives whole and in request order, none overtaking one still waiting.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{gather, write_responses, Next, GATHER_CHUNKS};
use crate::handlers::{OutChunk, PendingResponse};
use crate::server::test_support::{file_chunk, writer_and_received};

fn answered(text: &'static str) -> PendingResponse {
    Box::pin(async move { Some(vec![OutChunk::Bytes(Bytes::from_static(text.as_bytes()))]) })
}

/// A response answered when `release` is sent.
fn waiting() -> (PendingResponse, oneshot::Sender<&'static str>) {
    let (release, answer) = oneshot::channel::<&'static str>();
    let pending: PendingResponse = Box::pin(async move {
        let text = answer.await.ok()?;
        Some(vec![OutChunk::Bytes(Bytes::from_static(text.as_bytes()))])
    });
    (pending, release)
}

fn text(chunks: &[OutChunk]) -> String {
    chunks
        .iter()
        .map(|c| match c {
            OutChunk::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
            OutChunk::File(_) => "<file>".into(),
        })
        .collect()
}

#[tokio::test]
async fn answered_responses_join_the_write_until_one_is_still_waiting() {
    let (tx, mut rx) = mpsc::channel(8);
    let (later, release) = waiting();
    for pending in [answered("b"), answered("c"), later, answered("e")] {
        tx.send(pending).await.unwrap();
    }
    let mut chunks = vec![OutChunk::Bytes(Bytes::from_static(b"a"))];
    let Some(Next::Waiting(pending)) = gather(&mut chunks, &mut rx).await else {
        panic!("the waiting response was not kept");
    };
    assert_eq!(text(&chunks), "abc");
    release.send("d").unwrap();
    assert_eq!(text(&pending.await.unwrap()), "d");
    // The response after it stays queued for the writer.
    assert_eq!(text(&rx.recv().await.unwrap().await.unwrap()), "e");
}

#[tokio::test]
async fn gathering_stops_at_file_data_at_a_close_and_at_the_chunk_limit() {
    let (tx, mut rx) = mpsc::channel(GATHER_CHUNKS + 8);
    tx.send(answered("b")).await.unwrap();
    tx.send(Box::pin(async { Some(vec![file_chunk(b"xyz", 0, 3)]) }))
        .await
        .unwrap();
    let mut chunks = vec![OutChunk::Bytes(Bytes::from_static(b"a"))];
    let Some(Next::Answered(file)) = gather(&mut chunks, &mut rx).await else {
        panic!("a response with file data was gathered");
    };
    assert_eq!((text(&chunks), text(&file)), ("ab".into(), "<file>".into()));
    // A response with file data gathers nothing after it.
    tx.send(answered("c")).await.unwrap();
    let mut with_file = file;
    assert!(gather(&mut with_file, &mut rx).await.is_none());
    assert_eq!(text(&with_file), "<file>");

    let mut chunks = vec![OutChunk::Bytes(Bytes::from_static(b"c"))];
    assert_eq!(text(&rx.recv().await.unwrap().await.unwrap()), "c");
    tx.send(Box::pin(async { None })).await.unwrap();
    assert!(matches!(
        gather(&mut chunks, &mut rx).await,
        Some(Next::Close)
    ));

    for _ in 0..GATHER_CHUNKS + 4 {
        tx.send(answered("x")).await.unwrap();
    }
    let mut chunks = vec![OutChunk::Bytes(Bytes::from_static(b"y"))];
    assert!(gather(&mut chunks, &mut rx).await.is_none());
    assert_eq!(chunks.len(), GATHER_CHUNKS);
}

/// An answered response that, when polled, queues another like it (as the reader refills the
/// queue while the writer gathers).
fn refilling(tx: mpsc::Sender<PendingResponse>) -> PendingResponse {
    Box::pin(async move {
        let _ = tx.try_send(refilling(tx.clone()));
        Some(vec![OutChunk::Bytes(Bytes::from_static(b"r"))])
    })
}

#[tokio::test]
async fn gathering_takes_at_most_as_many_responses_as_the_queue_holds() {
    const QUEUE: usize = 4;
    let (tx, mut rx) = mpsc::channel(QUEUE);
    for _ in 0..QUEUE {
        tx.send(refilling(tx.clone())).await.unwrap();
    }
    let mut chunks = vec![OutChunk::Bytes(Bytes::from_static(b"a"))];
    // Every response taken frees a place that its poll fills again: without the cap the
    // gathering would never end (until the chunk limit).
    assert!(gather(&mut chunks, &mut rx).await.is_none());
    assert_eq!(text(&chunks), format!("a{}", "r".repeat(QUEUE)));
    assert_eq!(
        rx.len(),
        QUEUE,
        "the refills stay queued for the next write"
    );
}

#[tokio::test]
async fn every_response_arrives_whole_and_in_order() {
    let (writer, received) = writer_and_received().await;
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(write_responses(rx, writer, Duration::from_secs(5), false));
    let (later, release) = waiting();
    tx.send(answered("1-")).await.unwrap();
    tx.send(later).await.unwrap();
    tx.send(answered("3-")).await.unwrap();
    tx.send(Box::pin(async { Some(vec![file_chunk(b"..4-..", 2, 2)]) }))
        .await
        .unwrap();
    tx.send(answered("5-")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.send("2-").unwrap();
    tx.send(answered("6")).await.unwrap();
    drop(tx);
    task.await.unwrap();
    assert_eq!(received.await.unwrap(), b"1-2-3-4-5-6");
}
