"""Read the FSDD sweeps recorded before ``fwdlearn tune`` replaced the hand-written search (JSONL, one job per line).

    python benchmarks/read_sweep.py benchmarks/results/fsdd-paper/sweep-takes.jsonl --top 10

Each line is one (settings, seed) job of the old ``benchmarks/fsdd_sweep.py``: ``settings`` (what it changed in
the preset; empty: the preset), ``val_accuracy`` (%, on the 300 held-out training recordings) and
``train_seconds``. Prints the mean validation accuracy per setting, best first. New searches:
``fwdlearn tune fsdd-paper --space benchmarks/spaces/fsdd-paper.toml --trials 40 --data-dir ../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def summarise(path: str | Path) -> list[tuple[float, float, int, str, float]]:
    """``(mean, std, seeds, settings, train seconds)`` per setting, best first."""
    groups: dict[str, list[dict]] = {}
    for record in map(json.loads, Path(path).read_text().splitlines()):
        groups.setdefault(json.dumps(record["settings"], sort_keys=True), []).append(record)
    rows = []
    for key, records in groups.items():
        accuracies = [r["val_accuracy"] for r in records]
        rows.append((statistics.fmean(accuracies), statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                     len(accuracies), key, statistics.fmean(r["train_seconds"] for r in records)))
    return sorted(rows, reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a recorded sweep (.jsonl)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'val mean':>8} {'std':>5} {'n':>2} {'train s':>7}  settings (empty: the preset)")
    for mean, std, n, key, seconds in summarise(args.results)[:args.top]:
        print(f"{mean:8.2f} {std:5.2f} {n:2d} {seconds:7.1f}  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
