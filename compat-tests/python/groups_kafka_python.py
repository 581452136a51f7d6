"""kafka-python group consumers: subscribe, commit, resume."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

import groups_common as common

CLIENT = "kafka-python"


def produce(args):
    p = KafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
    futures = []
    for i in range(args.count):
        key, value = common.record(CLIENT, i)
        futures.append(p.send(args.topic, key=key, value=value, partition=i % args.partitions))
    for f in futures:
        f.get(timeout=args.timeout)
    p.close()


def consumer(args):
    return KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
    )


def main():
    args = common.parse_args(CLIENT)
    produce(args)
    first, committed = {}, {}
    c = consumer(args)
    c.subscribe([args.topic])
    deadline = time.time() + args.timeout
    read = 0
    while read < args.count // 2 and time.time() < deadline:
        batch = c.poll(timeout_ms=500, max_records=50)
        for tp, msgs in batch.items():
            for m in msgs:
                first.setdefault(m.partition, []).append(m.offset)
                committed[m.partition] = m.offset + 1
                read += 1
    c.commit({TopicPartition(args.topic, p): OffsetAndMetadata(o, "", -1) for p, o in committed.items()})
    errors = []
    for p, o in committed.items():
        have = c.committed(TopicPartition(args.topic, p))
        if have != o:
            errors.append(f"committed() of partition {p} is {have}, want {o}")
    c.close()

    second = {}
    c = consumer(args)
    c.subscribe([args.topic])
    want = args.count - read
    got = 0
    deadline = time.time() + args.timeout
    while got < want and time.time() < deadline:
        for tp, msgs in c.poll(timeout_ms=500).items():
            for m in msgs:
                second.setdefault(m.partition, []).append(m.offset)
                got += 1
    for tp, msgs in c.poll(timeout_ms=1000).items():
        for m in msgs:
            second.setdefault(m.partition, []).append(m.offset)
    c.close()
    common.finish(CLIENT, errors + common.check_resume(args, first, committed, second))


if __name__ == "__main__":
    main()
