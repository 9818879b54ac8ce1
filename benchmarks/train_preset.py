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
import json
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
from fwdlearn.lac.run import train_lac_run  # noqa: E402
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
        if f"{name}_train_seconds" in first["timing"]:      # end-to-end baselines: bptt, bp
            baselines[name]["train_seconds"] = [r["timing"][f"{name}_train_seconds"] for r in runs]
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
                  "history": r["history"], **{k: r[k] for k in ("bptt_history", "bp_history") if k in r}}
                 for r in runs],
    }


def aggregate_lac(preset: str, runs: list[dict], command: str) -> dict:
    """Mean and spread over seeds of both down-stream protocols, for LAC and each baseline encoder."""
    first = runs[0]

    def protocols(entries: list[dict]) -> dict:
        out = {}
        for protocol in ("linear_evaluation", "fine_tuning"):
            if protocol in entries[0]:
                stats = mean_and_std([e[protocol]["test_accuracy"] for e in entries])
                out[protocol] = {"test_accuracy": stats["mean"], "test_accuracy_std": stats["std"]}
        return out

    for r in runs:  # total training time from the per-epoch records, which survive a resume
        r["timing"]["lac_train_seconds"] = round(sum(h["seconds"] for h in r["history"]), 2)
    metrics = protocols([r["metrics"] for r in runs])
    metrics["test_accuracy"] = metrics["linear_evaluation"]["test_accuracy"]
    return {
        "experiment": preset, "learner": first["learner"], "dataset": first["dataset"], "command": command,
        "device": first["device"], "seeds": [r["seeds"][0] for r in runs], "date": first["date"],
        "metrics": metrics,
        "baselines": {name: protocols([r["baselines"][name] for r in runs]) for name in first["baselines"]},
        "reconstruction_error": first["reconstruction_error"],
        "timing": {key: round(statistics.fmean(r["timing"][key] for r in runs), 2)
                   for key in first["timing"] if key != "lac_train_seconds_this_process"},
        "config": first["config"],
        "runs": [{"seed": r["seeds"][0], "metrics": r["metrics"], "baselines": r["baselines"], "timing": r["timing"],
                  "reconstruction_error": r["reconstruction_error"], "history": r["history"]} for r in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist-paper")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="do not train: aggregate the finished runs' results.json files again")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python", "benchmarks/train_preset.py"] + sys.argv[1:])
    runs = []
    for seed in args.seeds:
        config = load_preset(args.preset)
        config.seed = seed
        run_dir = HERE / "runs" / f"{args.preset}-seed{seed}"
        if args.aggregate_only:
            runs.append(json.loads((run_dir / "results.json").read_text()))
            command = runs[-1]["command"]
        else:
            train = train_lac_run if config.learner.startswith("lac") else train_run
            runs.append(train(config, run_dir, args.data_dir, show_progress=sys.stderr.isatty(), command=command))
    lac = runs[0]["learner"].startswith("lac")
    result = (aggregate_lac if lac else aggregate)(args.preset, runs, command)
    save_json(result, args.results / f"{args.preset}.json")
    figures = args.results / args.preset
    figures.mkdir(parents=True, exist_ok=True)
    names = ("reconstruction_error.png", "downstream.png", "bp_reconstructions.png") if lac else \
        ("learning_curves.png", "probe_accuracy.png")
    if lac:
        grids = sorted((HERE / "runs" / f"{args.preset}-seed{args.seeds[0]}" / "reconstructions").glob("*.png"))
        for grid in (grids[0], grids[-1]):
            shutil.copyfile(grid, figures / f"reconstructions_{grid.name}")
    for name in names:
        shutil.copyfile(HERE / "runs" / f"{args.preset}-seed{args.seeds[0]}" / name, figures / name)
    write_table(args.results)
    print(f"recorded {args.results / (args.preset + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
