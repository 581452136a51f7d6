"""aiokafka (asyncio): produce with acks=all, then consume with assign() +
seek_to_beginning(). See common.py for the checks."""

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import common

CLIENT = "aiokafka"


async def run(args):
    produced, errors = {}, []

    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5,
                                request_timeout_ms=int(args.timeout * 1000))
    await producer.start()
    try:
        futures = []
        for i in range(args.count):
            key, value = common.record(CLIENT, i)
            futures.append(await producer.send(args.topic, value=value, key=key,
                                               partition=i % args.partitions))
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), args.timeout)
        for i, md in enumerate(results):
            if isinstance(md, BaseException):
                errors.append(f"record {i} not delivered: {md!r}")
            else:
                produced[i] = (md.partition, md.offset)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none")
    await consumer.start()
    consumed, total = {}, 0
    try:
        partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + args.timeout
        while total < args.count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for tp, records in batches.items():
                for r in records:
                    consumed.setdefault(tp.partition, []).append((r.offset, r.key, r.value))
                    total += 1
    finally:
        await consumer.stop()

    return errors + common.check(CLIENT, args, produced, consumed)


def main():
    args = common.parse_args(CLIENT)
    common.finish(CLIENT, asyncio.run(run(args)))


if __name__ == "__main__":
    sys.exit(main())
