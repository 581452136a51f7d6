"""confluent-kafka (librdkafka) group consumers: subscribe, commit, resume."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition

import groups_common as common

CLIENT = "confluent-kafka"


def produce(args):
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    for i in range(args.count):
        key, value = common.record(CLIENT, i)
        p.produce(args.topic, key=key, value=value, partition=i % args.partitions)
    left = p.flush(args.timeout)
    if left:
        common.finish(CLIENT, [f"{left} records not delivered"])


def consumer(args):
    return Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
    })


def main():
    args = common.parse_args(CLIENT)
    produce(args)
    first, committed = {}, {}
    c = consumer(args)
    c.subscribe([args.topic])
    deadline = time.time() + args.timeout
    read = 0
    while read < args.count // 2 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        first.setdefault(m.partition(), []).append(m.offset())
        committed[m.partition()] = m.offset() + 1
        read += 1
    c.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in committed.items()], asynchronous=False)
    back = c.committed([TopicPartition(args.topic, p) for p in committed], timeout=10)
    errors = [f"committed() of partition {tp.partition} is {tp.offset}, want {committed[tp.partition]}"
              for tp in back if tp.offset != committed[tp.partition]]
    c.close()

    second = {}
    c = consumer(args)
    c.subscribe([args.topic])
    want = args.count - read
    got = 0
    deadline = time.time() + args.timeout
    while got < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        second.setdefault(m.partition(), []).append(m.offset())
        got += 1
    # Anything more would be a duplicate.
    end = time.time() + 1.0
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            second.setdefault(m.partition(), []).append(m.offset())
    c.close()
    common.finish(CLIENT, errors + common.check_resume(args, first, committed, second))


if __name__ == "__main__":
    main()
