"""Benchmark: train a preset (any rule) over one or more seeds; record accuracy and wall times.

    python benchmarks/train_preset.py --preset mnist-paper --data-dir ../shared/data --seeds 0
    python benchmarks/train_preset.py --preset digits --seeds 0 1 2 3 4
    python benchmarks/train_preset.py --preset fsdd-paper --data-dir ../shared/data --seeds 0 1 2
    python benchmarks/train_preset.py --preset lac-mnist --data-dir ../shared/data --seeds 0 1 2
    python benchmarks/train_preset.py --preset ssl-mnist --method byol --epochs 3 --data-dir ../shared/data --seeds 0 1 2

``--method`` (the self-supervised rules) records ``<preset>-<method>``; ``--epochs`` and ``--bp-epochs``
override the preset as ``fwdlearn train`` does.

Every rule runs the same path (``fwdlearn.run.train_run``). Each seed trains in
``benchmarks/runs/<preset>-seed<N>/`` (resumable, not committed). The aggregate goes to
``benchmarks/results/<preset>.json``: mean and spread over seeds of the linear probe and of every
baseline beside it (untrained network; raw inputs for images; BPTT, BP or the BP autoencoder where
the preset trains one), of the rule's own accuracies (LAC: fine-tuning) and errors (LAC: test
reconstruction error), seconds per epoch per parameter group, and the wall time of each training.
The first seed's figures are copied beside it, and ``benchmarks/results/README.md`` is regenerated
from every results file.
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
from fwdlearn.config import BACKENDS  # noqa: E402
from fwdlearn.cli import set_epochs  # noqa: E402
from fwdlearn.presets import check_for_rule, load_preset  # noqa: E402
from fwdlearn.run import train_run  # noqa: E402

PROBE_KEYS = ("test_accuracy", "train_accuracy", "num_features", "probe_seconds", "layers", "per_layer")
FIGURES = ("learning_curves.png", "probe_accuracy.png", "test_curves.png")


def mean_and_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 5),
            "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0}


def _accuracy(values: list[float]) -> dict:
    stats = mean_and_std(values)
    return {"test_accuracy": stats["mean"], "test_accuracy_std": stats["std"]}


def _extras(entries: list[dict]) -> dict:
    """What a rule reports beside the probe, over seeds: accuracies of its own protocols (LAC's
    ``fine_tuning``, FF's goodness classification) and numbers (LAC's ``reconstruction_error``)."""
    out: dict = {}
    for key, value in entries[0].items():
        if key in PROBE_KEYS:
            continue
        if isinstance(value, dict) and "test_accuracy" in value:
            out[key] = _accuracy([e[key]["test_accuracy"] for e in entries])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            stats = mean_and_std([e[key] for e in entries])
            out[key], out[f"{key}_std"] = stats["mean"], stats["std"]
    return out


def aggregate(preset: str, runs: list[dict], command: str) -> dict:
    """One results file (architecture.md's format) from the results of each seed."""
    first = runs[0]
    layers = list(first["metrics"]["per_layer"])
    metrics = {**_accuracy([r["metrics"]["test_accuracy"] for r in runs]), "layers": first["metrics"]["layers"],
               "per_layer": {name: _accuracy([r["metrics"]["per_layer"][name]["test_accuracy"] for r in runs])
                             for name in layers},
               **_extras([r["metrics"] for r in runs])}
    baselines = {}
    for name in first["baselines"]:
        entries = [r["baselines"][name] for r in runs]
        baselines[name] = {**_accuracy([e["test_accuracy"] for e in entries]), **_extras(entries)}
        if f"{name}_train_seconds" in first["timing"]:      # trained baselines: bptt, bp, bp_autoencoder
            baselines[name]["train_seconds"] = [r["timing"][f"{name}_train_seconds"] for r in runs]
    seconds = {name: round(statistics.fmean(r["timing"]["seconds_per_epoch"][name] for r in runs), 2)
               for name in first["timing"]["seconds_per_epoch"]}
    probe_seconds = {"combined": round(statistics.fmean(r["metrics"]["probe_seconds"] for r in runs), 1)}
    probe_seconds.update({name: round(statistics.fmean(r["metrics"]["per_layer"][name]["probe_seconds"] for r in runs), 1)
                          for name in layers})
    return {
        "experiment": preset, "learner": first["learner"], "dataset": first["dataset"], "command": command,
        "device": first["device"], "seeds": [r["seeds"][0] for r in runs], "date": first["date"],
        "metrics": metrics,
        "baselines": baselines,
        "timing": {"seconds_per_epoch": seconds, "probe_seconds": probe_seconds,
                   # every epoch's wall time, across resumes
                   "train_seconds": [r["timing"]["train_seconds"] for r in runs]},
        "config": first["config"],
        "runs": [{"seed": r["seeds"][0], "metrics": r["metrics"], "baselines": r["baselines"], "timing": r["timing"],
                  "history": r["history"], **({"baseline_history": r["baseline_history"]}
                                              if "baseline_history" in r else {})}
                 for r in runs],
    }


def copy_figures(run_dir: Path, figures: Path) -> None:
    """The first seed's figures beside the results file (and, where the rule draws them, its first and
    last reconstruction grids)."""
    figures.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, figures / name)
    grids = sorted((run_dir / "reconstructions").glob("*.png"))
    for grid in dict.fromkeys(grids[:1] + grids[-1:]):
        shutil.copyfile(grid, figures / f"reconstructions_{grid.name}")


def configured(args, seed: int):
    """The preset with the command line's overrides (as ``fwdlearn train`` applies them) and ``seed``."""
    config = load_preset(args.preset)
    config.seed = seed
    if args.method:
        config.method = args.method
    if args.epochs:
        set_epochs(config, args.epochs)
    if args.bp_epochs is not None:
        config.bp.epochs = args.bp_epochs
    if args.combined_probe_only:
        config.probe.each_layer = False
    if args.backend:
        config.backend = args.backend
    return check_for_rule(config.validate(f"preset {args.preset}"), f"preset {args.preset}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist-paper", help="shipped preset or TOML file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--runs", type=Path, default=HERE / "runs", help="where each seed's run directory goes")
    parser.add_argument("--method", help="ssl-*: the self-supervised method (recorded as <preset>-<method>)")
    parser.add_argument("--epochs", type=int, help="training epochs (every layer's), overriding the preset")
    parser.add_argument("--bp-epochs", type=int, help="epochs of the supervised BP baseline on the same network")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="the local step's backend (recorded as <preset>-backend-<name>)")
    parser.add_argument("--combined-probe-only", action="store_true",
                        help="probe the layers read together only, not each layer alone (saves time; same probe)")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="do not train: aggregate the finished runs' results.json files again")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python", "benchmarks/train_preset.py"] + argv)
    runs = []
    name = load_preset(args.preset).name        # a shipped preset's name, or the name inside a TOML file
    if args.method:
        name = f"{name}-{args.method}"
    if args.backend:
        name = f"{name}-backend-{args.backend}"
    for seed in args.seeds:
        config = configured(args, seed)
        run_dir = args.runs / f"{name}-seed{seed}"
        if args.aggregate_only:
            runs.append(json.loads((run_dir / "results.json").read_text()))
            command = runs[-1]["command"]
        else:
            runs.append(train_run(config, run_dir, args.data_dir, show_progress=sys.stderr.isatty(), command=command))
    result = aggregate(name, runs, command)
    save_json(result, args.results / f"{name}.json")
    copy_figures(args.runs / f"{name}-seed{args.seeds[0]}", args.results / name)
    write_table(args.results)
    print(f"recorded {args.results / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
