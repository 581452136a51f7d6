#!/usr/bin/env python3
"""Helpers for run.sh: list librdkafka's tests and read test-runner's summary.

`suite.py list TEST_C` prints one line per runnable unit of librdkafka's
tests/test.c table: `<id> <number> <scenario> <names,...>` for the broker
tests (neither TEST_F_LOCAL nor TEST_F_MANUAL), grouped by test number and by
the scenario the broker must be started in. The id is the test number for the
default scenario and `<number>/<scenario>` otherwise. test-runner selects by
number (TESTS=0045) and by scenario (TEST_SCENARIO), so a unit is the finest
grain it can run on its own.

`suite.py local TEST_C` prints the numbers that have only local tests.

`suite.py result LOG NAMES` reads test-runner's closing summary table from
its output and prints `<pass|fail|skip>\t<note>` for the named tests (other
rows, e.g. the local variants it filtered out, are ignored).
"""

import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\(B")


def parse_tests(test_c):
    """Returns [(name, flags, scenario)] from the `struct test tests[]` table."""
    src = open(test_c, encoding="utf-8", errors="replace").read()
    start = src.index("struct test tests[] = {")
    end = src.index("{NULL}};", start)
    table = src[start:end]
    # Drop comments so parentheses in them do not confuse the scan.
    table = re.sub(r"/\*.*?\*/", "", table, flags=re.S)
    out = []
    pos = 0
    while True:
        i = table.find("_TEST(", pos)
        if i < 0:
            break
        j = i + len("_TEST(")
        depth = 1
        k = j
        while depth and k < len(table):
            if table[k] == "(":
                depth += 1
            elif table[k] == ")":
                depth -= 1
            k += 1
        body = table[j : k - 1]
        pos = k
        parts = [p.strip() for p in body.split(",")]
        name = parts[0]
        flags = parts[1] if len(parts) > 1 else "0"
        m = re.search(r'\.scenario\s*=\s*"([^"]*)"', body)
        scenario = m.group(1) if m else "default"
        out.append((name, flags, scenario))
    return out


def broker_units(test_c):
    units = {}  # (number, scenario) -> [names]
    for name, flags, scenario in parse_tests(test_c):
        if "TEST_F_LOCAL" in flags or "TEST_F_MANUAL" in flags:
            continue
        number = name.split("_", 1)[0]
        scenarios = scenario.split(",")
        chosen = "default" if "default" in scenarios else scenarios[0]
        units.setdefault((number, chosen), []).append(name)
    for (number, scenario), names in sorted(units.items()):
        uid = number if scenario == "default" else f"{number}/{scenario}"
        print(uid, number, scenario, ",".join(names))


def local_only(test_c):
    kinds = {}
    for name, flags, _ in parse_tests(test_c):
        number = name.split("_", 1)[0]
        local = "TEST_F_LOCAL" in flags or "TEST_F_MANUAL" in flags
        kinds.setdefault(number, set()).add(local)
    for number, k in sorted(kinds.items()):
        if k == {True}:
            print(number)


def first_failure(log):
    """The first `### Test "X" failed at ...: ###` block of a test (not <MAIN>):
    where it failed and the message on the next line."""
    lines = [ANSI.sub("", l.rstrip("\n")) for l in open(log, encoding="utf-8", errors="replace")]
    for i, line in enumerate(lines):
        m = re.match(r'^### Test "([^"]+)" failed at (\S+) at .*###$', line)
        if m and not m.group(1).startswith("<MAIN>"):
            msg = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return f"{m.group(1)} at {m.group(2)}: {msg}"
    return ""


def result(log, names):
    wanted = set(names.split(","))
    rows = {}
    in_summary = False
    for line in open(log, encoding="utf-8", errors="replace"):
        line = ANSI.sub("", line.rstrip("\n"))
        if re.match(r"^TEST \S+ \(.*\) SUMMARY", line):
            in_summary = True
            rows = {}
            continue
        if not in_summary or not line.startswith("|"):
            continue
        cells = line.split("|")
        if len(cells) < 5:
            continue
        name = cells[1].strip()
        state = cells[2].strip()
        note = "|".join(cells[4:]).strip()
        if name in wanted:
            rows[name] = (state, note)
    if not rows:
        reason = first_failure(log)
        # A failed test makes test-runner abort() before its summary.
        print(f"fail\t{reason or 'no test-runner summary (crashed or killed)'}")
        return
    failed = [n for n, (s, _) in rows.items() if s in ("FAILED", "RUNNING")]
    passed = [n for n, (s, _) in rows.items() if s == "PASSED"]
    if failed:
        reason = first_failure(log)
        notes = reason or "; ".join(f"{n}: {rows[n][0]} {rows[n][1]}".strip() for n in failed)
        print(f"fail\t{notes}")
    elif passed:
        skipped = [n for n, (s, _) in rows.items() if s == "SKIPPED"]
        note = ("skipped: " + "; ".join(f"{n}: {rows[n][1]}" for n in skipped)) if skipped else ""
        print(f"pass\t{note}")
    else:
        notes = "; ".join(f"{n}: {s} {t}".strip() for n, (s, t) in rows.items())
        print(f"skip\t{notes}")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "list" and len(sys.argv) == 3:
        broker_units(sys.argv[2])
    elif cmd == "local" and len(sys.argv) == 3:
        local_only(sys.argv[2])
    elif cmd == "result" and len(sys.argv) == 4:
        result(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
