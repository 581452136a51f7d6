"""aiokafka group consumers: subscribe, commit, resume."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import groups_common as common

CLIENT = "aiokafka"


async def produce(args):
    p = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
    await p.start()
    try:
        futures = []
        for i in range(args.count):
            key, value = common.record(CLIENT, i)
            futures.append(await p.send(args.topic, key=key, value=value, partition=i % args.partitions))
        await asyncio.gather(*futures)
    finally:
        await p.stop()


def consumer(args):
    return AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
    )


async def main():
    args = common.parse_args(CLIENT)
    await produce(args)
    first, committed = {}, {}
    c = consumer(args)
    await c.start()
    read = 0
    deadline = time.time() + args.timeout
    try:
        while read < args.count // 2 and time.time() < deadline:
            batch = await c.getmany(timeout_ms=500, max_records=50)
            for tp, msgs in batch.items():
                for m in msgs:
                    first.setdefault(m.partition, []).append(m.offset)
                    committed[m.partition] = m.offset + 1
                    read += 1
        await c.commit({TopicPartition(args.topic, p): o for p, o in committed.items()})
        errors = []
        for p, o in committed.items():
            have = await c.committed(TopicPartition(args.topic, p))
            if have != o:
                errors.append(f"committed() of partition {p} is {have}, want {o}")
    finally:
        await c.stop()

    second = {}
    c = consumer(args)
    await c.start()
    want = args.count - read
    got = 0
    deadline = time.time() + args.timeout
    try:
        while got < want and time.time() < deadline:
            for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                for m in msgs:
                    second.setdefault(m.partition, []).append(m.offset)
                    got += 1
        for tp, msgs in (await c.getmany(timeout_ms=1000)).items():
            for m in msgs:
                second.setdefault(m.partition, []).append(m.offset)
    finally:
        await c.stop()
    common.finish(CLIENT, errors + common.check_resume(args, first, committed, second))


if __name__ == "__main__":
    asyncio.run(main())
