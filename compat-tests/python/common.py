"""Shared pieces of the Python client round-trip scripts.

Every script produces COUNT records, record i going to partition i % PARTITIONS
with a distinct key and value, then reads every partition back with manual
assignment from the beginning and compares: per partition, the records must be
exactly the ones sent there, in send order, at offsets 0, 1, 2, ... The
offsets reported to the producer must match too. Any mismatch: exit status 1.
"""

import argparse
import sys


def parse_args(client):
    parser = argparse.ArgumentParser(description=f"{client} produce/consume round trip")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="existing topic to use")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument("--count", type=int, default=1000, help="records to produce")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each phase")
    return parser.parse_args()


def record(client, i):
    """(key, value) of record i; the value length varies so shifts show."""
    key = f"{client}-key-{i:06d}".encode()
    value = f"{client}-value-{i:06d}-".encode() + b"z" * (i % 50)
    return key, value


def expected(client, count, partitions):
    """partition -> [(offset, key, value)] that must be read back."""
    out = {p: [] for p in range(partitions)}
    for i in range(count):
        p = i % partitions
        key, value = record(client, i)
        out[p].append((len(out[p]), key, value))
    return out


def check(client, args, produced, consumed):
    """produced: i -> (partition, offset); consumed: partition -> [(offset, key, value)]."""
    errors = []
    want = expected(client, args.count, args.partitions)
    for i in range(args.count):
        p = i % args.partitions
        offset = i // args.partitions
        if produced.get(i) != (p, offset):
            errors.append(f"record {i}: producer reported {produced.get(i)}, want {(p, offset)}")
    for p in range(args.partitions):
        have = consumed.get(p, [])
        if len(have) != len(want[p]):
            errors.append(f"partition {p}: read {len(have)} records, want {len(want[p])}")
        for n, (w, h) in enumerate(zip(want[p], have)):
            if w != h:
                errors.append(f"partition {p} record #{n}: got {h!r}, want {w!r}")
                break
    extra = set(consumed) - set(range(args.partitions))
    if extra:
        errors.append(f"records from unexpected partitions {sorted(extra)}")
    return errors


def finish(client, errors):
    if errors:
        print(f"{client}: FAILED with {len(errors)} problem(s):", file=sys.stderr)
        for e in errors[:20]:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{client}: OK")
