"""kafka-python (pure Python): produce with acks=all, then consume with
assign() + seek_to_beginning(). See common.py for the checks."""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import common

CLIENT = "kafka-python"


def main():
    args = common.parse_args(CLIENT)
    produced, errors = {}, []

    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=int(args.timeout * 1000))
    futures = []
    for i in range(args.count):
        key, value = common.record(CLIENT, i)
        futures.append(producer.send(args.topic, key=key, value=value,
                                     partition=i % args.partitions))
    producer.flush(timeout=args.timeout)
    for i, future in enumerate(futures):
        try:
            md = future.get(timeout=args.timeout)
            produced[i] = (md.partition, md.offset)
        except Exception as e:  # any delivery failure is a test failure
            errors.append(f"record {i} not delivered: {e!r}")
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="none")
    partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    consumed, total = {}, 0
    deadline = time.monotonic() + args.timeout
    while total < args.count and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=1000, max_records=1000).items():
            for r in records:
                consumed.setdefault(tp.partition, []).append((r.offset, r.key, r.value))
                total += 1
    consumer.close()

    common.finish(CLIENT, errors + common.check(CLIENT, args, produced, consumed))


if __name__ == "__main__":
    sys.exit(main())
