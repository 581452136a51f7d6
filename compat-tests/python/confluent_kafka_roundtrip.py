"""confluent-kafka (librdkafka bundled in the wheel): idempotent produce, then
consume with assign() from the beginning. See common.py for the checks."""

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import common

CLIENT = "confluent-kafka"


def main():
    args = common.parse_args(CLIENT)
    produced, errors = {}, []

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })

    def on_delivery(index):
        def callback(err, msg):
            if err is not None:
                errors.append(f"record {index} not delivered: {err}")
            else:
                produced[index] = (msg.partition(), msg.offset())
        return callback

    for i in range(args.count):
        key, value = common.record(CLIENT, i)
        producer.produce(args.topic, key=key, value=value, partition=i % args.partitions,
                         on_delivery=on_delivery(i))
        producer.poll(0)
    left = producer.flush(args.timeout)
    if left:
        errors.append(f"{left} records still undelivered after {args.timeout}s")

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "sluice-compat-unused",  # required by librdkafka, never used with assign()
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
    })
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING)
                     for p in range(args.partitions)])
    consumed, total = {}, 0
    deadline = time.monotonic() + args.timeout
    while total < args.count and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=1.0):
            if msg.error():
                errors.append(f"consumer error: {msg.error()}")
                continue
            consumed.setdefault(msg.partition(), []).append((msg.offset(), msg.key(), msg.value()))
            total += 1
    consumer.close()

    common.finish(CLIENT, errors + common.check(CLIENT, args, produced, consumed))


if __name__ == "__main__":
    sys.exit(main())
