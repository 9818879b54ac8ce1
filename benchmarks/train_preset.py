"""Benchmark: train a preset (any learner) over one or more seeds; record accuracy and wall times.

    python benchmarks/train_preset.py --preset mnist-paper --data-dir ../shared/data --seeds 0
    python benchmarks/train_preset.py --preset digits --seeds 0 1 2 3 4
    python benchmarks/train_preset.py --preset fsdd-paper --data-dir ../shared/data --seeds 0 1 2

Each seed trains in ``benchmarks/runs/<preset>-seed<N>/`` (resumable, not committed). The
aggregate goes to ``benchmarks/results/<preset>.json``: mean and spread over seeds of the SCFF
probe and of every baseline beside it (untrained network; raw inputs for images; BPTT for the
Bi-RNN), seconds per epoch per layer, and the wall time of each training. The first seed's
figures are copied beside it, and ``benchmarks/results/README.md`` is regenerated from every
results file.
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
    baselines = {}
    for name in first["baselines"]:
        stats = mean_and_std([r["baselines"][name]["test_accuracy"] for r in runs])
        baselines[name] = {"test_accuracy": stats["mean"], "test_accuracy_std": stats["std"]}
        if name == "bptt":
            baselines[name]["train_seconds"] = [r["timing"]["bptt_train_seconds"] for r in runs]
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
    command = " ".join(["python", "benchmarks/train_preset.py"] + sys.argv[1:])
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
