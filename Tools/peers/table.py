#!/usr/bin/env python3
"""Joins slotstore-bench --json with the peers' rows into one table (Markdown, so it can go
into the README as printed). Run by Tools/peers/run.

usage: table.py SLOTSTORE_JSON MAP_LABEL NAME=ROWS.tsv...
ROWS.tsv lines: workload<TAB>medium<TAB>median ns/op<TAB>min<TAB>max
"""

import json
import sys


def workloads(map_label):
    """(workload, what it does, the slotstore-bench row doing the same)."""
    return [
        ("counter-add", "add 1 to an int64 counter", "int64 add"),
        ("counter-add-2proc", "2 processes adding to one counter (aggregate)",
         "2 processes: int64 add on one counter (aggregate)"),
        ("read-64", "read a 64-byte value (copy out)", "string[64] read(into:) 64 B"),
        ("write-64", "replace a 64-byte value", "string[64] store 64 B"),
        ("array-512-read", "read 64 doubles (512 B, copy out)", "array<double>[64] snapshot read(into:)"),
        ("array-512-write", "replace 64 doubles (512 B)", "array<double>[64] whole-array store"),
        ("map-get", f"map of {map_label} 32-byte keys: get a key", f"map {map_label}: get hit"),
        ("map-put", f"map of {map_label} keys: set an existing key", f"map {map_label}: set (replace)"),
        ("durable-commit", "durable commit of one int64 (disk)", "durable transaction, one int64 field"),
    ]


def nanoseconds(value):
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f} ms"
    if value >= 10_000:
        return f"{value / 1000:.1f} µs"
    if value >= 1000:
        return f"{value / 1000:.2f} µs"
    if value >= 10:
        return f"{value:.1f} ns"
    return f"{value:.2f} ns"


def read_rows(path):
    rows = {}
    with open(path) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 5:
                rows[fields[0]] = (fields[1], float(fields[2]))
    return rows


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as handle:
        bench = json.load(handle)
    map_label = sys.argv[2]
    slotstore = {row["op"]: (row["medium"], row["median_ns"]) for row in bench["rows"]}
    peers = []
    for argument in sys.argv[3:]:
        name, _, path = argument.partition("=")
        peers.append((name, read_rows(path)))

    header = ["workload", "SlotStore"] + [name for name, _ in peers]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for workload, what, op in workloads(map_label):
        mine = slotstore.get(op)
        cells = [what, nanoseconds(mine[1]) if mine else "-"]
        for _, rows in peers:
            theirs = rows.get(workload)
            if theirs is None:
                cells.append("-")
            elif mine and mine[1] > 0:
                cells.append(f"{nanoseconds(theirs[1])} ({theirs[1] / mine[1]:,.0f}x)" if theirs[1] / mine[1] >= 10
                             else f"{nanoseconds(theirs[1])} ({theirs[1] / mine[1]:.1f}x)")
            else:
                cells.append(nanoseconds(theirs[1]))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
