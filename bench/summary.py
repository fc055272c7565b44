"""One table for `bench/run`: every benchmark records its headline figures here.

A script calls `record(...)`; when `SKIFF_BENCH_SUMMARY` names a file (bench/run sets it), a
JSON line is appended to it, and `bench/run` prints them all as one table at the end.
"""
import json
import os


def record(bench, figure, ours, unit, peer=None, peer_value=None, ratio=None, target=None):
    path = os.environ.get("SKIFF_BENCH_SUMMARY")
    if not path:
        return
    if ratio is None and peer_value:
        ratio = ours / peer_value
    row = {"bench": bench, "figure": figure, "ours": ours, "unit": unit, "peer": peer,
           "peer_value": peer_value, "ratio": ratio, "target": target}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def print_table(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    head = ("benchmark", "figure", "skiff", "peer", "peer figure", "ratio", "target")
    table = [head] + [
        (r["bench"], r["figure"], f"{fmt(r['ours'])} {r['unit']}", r["peer"] or "-",
         f"{fmt(r['peer_value'])} {r['unit']}" if r["peer_value"] is not None else "-",
         f"{r['ratio']:.3g}x" if r["ratio"] is not None else "-", r["target"] or "-")
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    import sys
    print_table(sys.argv[1])
