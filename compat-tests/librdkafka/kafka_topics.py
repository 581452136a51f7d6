#!/usr/bin/env python3
"""The subset of kafka-topics.sh that librdkafka's tests use, over the Admin API.

kafka-topics.sh --bootstrap-server HOST:PORT --create --topic T
    [--partitions N] [--replication-factor R] [--config K=V ...]
kafka-topics.sh --bootstrap-server HOST:PORT --alter --topic T --partitions N
kafka-topics.sh --bootstrap-server HOST:PORT --delete --topic T

Exits 0 on success, 1 with the broker's error otherwise (as the real tool does).
"""

import argparse
import sys

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic


def main():
    p = argparse.ArgumentParser(prog="kafka-topics.sh")
    p.add_argument("--bootstrap-server", required=True)
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--create", action="store_true")
    action.add_argument("--alter", action="store_true")
    action.add_argument("--delete", action="store_true")
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int)
    p.add_argument("--replication-factor", type=int, default=-1)
    p.add_argument("--config", action="append", default=[])
    a = p.parse_args()

    admin = AdminClient({"bootstrap.servers": a.bootstrap_server})
    if a.create:
        configs = dict(c.split("=", 1) for c in a.config)
        futures = admin.create_topics(
            [NewTopic(a.topic, num_partitions=a.partitions or -1,
                      replication_factor=a.replication_factor, config=configs)],
            operation_timeout=30)
    elif a.alter:
        if a.partitions is None:
            sys.exit("kafka-topics.sh: --alter supports only --partitions here")
        futures = admin.create_partitions([NewPartitions(a.topic, a.partitions)],
                                          operation_timeout=30)
    else:
        futures = admin.delete_topics([a.topic], operation_timeout=30)
    for topic, fut in futures.items():
        try:
            fut.result(timeout=60)
        except Exception as e:  # the tool prints the error and exits 1
            print(f"Error for topic {topic}: {e}", file=sys.stderr)
            sys.exit(1)
    print(f"{'Created' if a.create else 'Altered' if a.alter else 'Deleted'} topic {a.topic}.")


if __name__ == "__main__":
    main()
