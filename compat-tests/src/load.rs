//! A numbered acks=all produce load for failover tests: sequence numbers written round-robin
//! over a topic's partitions, in groups awaited together, recording every acknowledgement
//! with its time, until told to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

/// One acknowledged record.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// The partition it was written to (`seq % partitions`).
    pub partition: i32,
    /// Its sequence number, which is also its value.
    pub seq: u64,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// Sends `group` records at a time (value = sequence number, partition = seq % partitions),
/// awaits their delivery reports, pushes each acknowledged one onto `acked`, and repeats
/// until `stop`. Returns (records sent, records that failed).
pub async fn numbered_load(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    group: usize,
    stop: &AtomicBool,
    acked: &Mutex<Vec<Acked>>,
) -> (u64, usize) {
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(1);
    let mut seq = 0u64;
    let mut failed = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut inflight = Vec::with_capacity(group);
        for _ in 0..group {
            let partition = i32::try_from(seq % partitions).unwrap_or(0);
            let value = seq.to_string();
            let record = FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value);
            match producer.send_result(record) {
                Ok(f) => inflight.push((seq, partition, f)),
                Err((e, _)) => panic!("cannot queue record {seq}: {e}"),
            }
            seq += 1;
        }
        for (seq, partition, f) in inflight {
            match f.await {
                Ok(Ok(_)) => acked.lock().unwrap_or_else(|p| p.into_inner()).push(Acked {
                    partition,
                    seq,
                    at: Instant::now(),
                }),
                _ => failed += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (seq, failed)
}
