"""Shared pieces of the consumer-group scripts (groups_*.py).

Each script: produce COUNT records round-robin over PARTITIONS; a first group
consumer subscribes, reads about half, commits exactly what it processed and
closes; a second consumer in the same group subscribes and must resume at the
committed offsets: per partition it reads exactly the records from the
committed offset to the end, nothing skipped and nothing read twice.
Any mismatch: exit status 1.
"""

import argparse
import sys


def parse_args(client):
    parser = argparse.ArgumentParser(description=f"{client} consumer-group commit/resume")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="existing topic to use")
    parser.add_argument("--group", required=True, help="consumer group id")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument("--count", type=int, default=600, help="records to produce")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each phase")
    return parser.parse_args()


def record(client, i):
    key = f"{client}-key-{i:06d}".encode()
    value = f"{client}-value-{i:06d}".encode()
    return key, value


def check_resume(args, first, committed, second):
    """first/second: partition -> [offsets read]; committed: partition -> next offset."""
    errors = []
    per_partition = {p: 0 for p in range(args.partitions)}
    for i in range(args.count):
        per_partition[i % args.partitions] += 1
    for p in range(args.partitions):
        end = per_partition[p]
        c = committed.get(p, 0)
        got_first = first.get(p, [])
        if got_first and got_first != list(range(got_first[0], got_first[0] + len(got_first))):
            errors.append(f"partition {p}: first consumer read non-contiguous offsets")
        want_second = list(range(c, end))
        got_second = second.get(p, [])
        if got_second != want_second:
            errors.append(
                f"partition {p}: second consumer read {len(got_second)} records "
                f"starting {got_second[:1]}, want {len(want_second)} from offset {c}"
            )
    if sum(len(v) for v in first.values()) == 0:
        errors.append("first consumer read nothing")
    return errors


def finish(client, errors):
    if errors:
        print(f"{client}: FAILED with {len(errors)} problem(s):", file=sys.stderr)
        for e in errors[:20]:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{client}: OK")
