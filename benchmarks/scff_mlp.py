"""Benchmark: SCFF-MLP with a preset over one or more seeds; records accuracy and seconds per epoch.

    python benchmarks/scff_mlp.py --preset mnist-paper --data-dir ../shared/data --seeds 0
    python benchmarks/scff_mlp.py --preset digits --seeds 0 1 2

Each seed trains in ``benchmarks/runs/<preset>-seed<N>/`` (resumable, not committed). The
aggregate (mean and spread over seeds, the untrained-network and raw-input probes beside it,
per-layer seconds per epoch) goes to ``benchmarks/results/<preset>.json`` with the figures of the
first seed, and ``benchmarks/results/README.md`` is regenerated from every results file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.config import load_preset  # noqa: E402
from fwdlearn.runs import train_run  # noqa: E402


def mean_and_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 5),
            "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0}


def aggregate(preset: str, runs: list[dict], command: str) -> dict:
    first = runs[0]
    acc = mean_and_std([r["metrics"]["test_accuracy"] for r in runs])
    layers = list(first["metrics"]["per_layer"])
    per_layer = {name: mean_and_std([r["metrics"]["per_layer"][name]["test_accuracy"] for r in runs]) for name in layers}
    baselines = {name: {"test_accuracy": mean_and_std([r["baselines"][name]["test_accuracy"] for r in runs])["mean"],
                        "test_accuracy_std": mean_and_std([r["baselines"][name]["test_accuracy"] for r in runs])["std"]}
                 for name in first["baselines"]}
    seconds = {name: round(statistics.fmean(r["timing"]["seconds_per_epoch"][name] for r in runs), 2)
               for name in first["timing"]["seconds_per_epoch"]}
    probe_seconds = {"combined": round(statistics.fmean(r["metrics"]["probe_seconds"] for r in runs), 1)}
    probe_seconds.update({name: round(statistics.fmean(r["metrics"]["per_layer"][name]["probe_seconds"] for r in runs), 1)
                          for name in layers})
    return {
        "experiment": preset, "learner": first["learner"], "dataset": first["dataset"], "command": command,
        "device": first["device"], "seeds": [r["seeds"][0] for r in runs], "date": first["date"],
        "metrics": {"test_accuracy": acc["mean"], "test_accuracy_std": acc["std"], "layers": first["metrics"]["layers"],
                    "per_layer": {k: {"test_accuracy": v["mean"], "test_accuracy_std": v["std"]}
                                  for k, v in per_layer.items()}},
        "baselines": baselines,
        "timing": {"seconds_per_epoch": seconds, "probe_seconds": probe_seconds,
                   "train_seconds": [r["timing"]["train_seconds_this_process"] for r in runs]},
        "config": first["config"],
        "runs": [{"seed": r["seeds"][0], "metrics": r["metrics"], "baselines": r["baselines"], "timing": r["timing"],
                  "history": r["history"]} for r in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist-paper")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python", "benchmarks/scff_mlp.py"] + sys.argv[1:])
    runs = []
    for seed in args.seeds:
        config = load_preset(args.preset)
        config.seed = seed
        run_dir = HERE / "runs" / f"{args.preset}-seed{seed}"
        runs.append(train_run(config, run_dir, args.data_dir, show_progress=sys.stderr.isatty(), command=command))
    result = aggregate(args.preset, runs, command)
    save_json(result, args.results / f"{args.preset}.json")
    figures = args.results / args.preset
    figures.mkdir(parents=True, exist_ok=True)
    for name in ("learning_curves.png", "probe_accuracy.png"):
        shutil.copyfile(HERE / "runs" / f"{args.preset}-seed{args.seeds[0]}" / name, figures / name)
    write_table(args.results)
    print(f"recorded {args.results / (args.preset + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
