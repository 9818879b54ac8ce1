"""Benchmark: test accuracy against bit width for quantisation-aware SCFF, and the size of each export.

    python benchmarks/quant_sweep.py --preset mnist-quant --data-dir ../shared/data --bits 0 8 4 2
    python benchmarks/quant_sweep.py --preset fsdd-paper --data-dir ../shared/data --bits 0 8 4 2 --seeds 0 1 2

For every bit width (0 = float) the preset is trained with weights and standardised layer inputs
at that width (``--per-channel``: one weight scale per unit), probed beside the same network
untrained (a recurrent preset's BPTT baseline is skipped), then exported (float ONNX, or QCDQ
for quantised runs), verified against PyTorch, and
the exported file's own test accuracy measured in onnxruntime (its read-out rounded to 8 bits). With several
``--seeds`` each width is trained once per seed; a row holds the mean and standard deviation of each accuracy,
every seed's value, and the first seed's export.
Runs go to ``benchmarks/runs/<preset>-w<b>a<b>/`` (``--runs``) (resumable, not committed: a finished run's
results and a current export are reused, so deleting one run's folder redoes only that run); the sweep to
``benchmarks/results/quant-<preset>.json``, and ``benchmarks/results/README.md`` is regenerated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.data import load_dataset  # noqa: E402
from fwdlearn.export import export_onnx, load_deployable, report_path  # noqa: E402
from fwdlearn.presets import check_for_rule, load_preset  # noqa: E402
from fwdlearn.run import train_run  # noqa: E402

END_TO_END = ("bptt", "bp")   # baselines trained by back-propagation, skipped: each width beside the untrained twin


def onnxruntime_accuracy(path: Path, config, data_dir) -> float:
    """Test accuracy of the exported file itself (quantised read-out and logits included), in onnxruntime.

    Recurrent graphs are unrolled over a fixed frame count: test sequences are zero-padded to it
    (none is longer than the longest training sequence the graph was exported with).
    """
    import numpy as np
    import onnxruntime

    test = load_dataset(config.data.dataset, data_dir).test
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = test.x.numpy()
    feeds = {"x": x}
    if test.lengths is not None:
        steps = session.get_inputs()[0].shape[1]
        if x.shape[1] > steps:
            raise SystemExit(f"{path}: test sequences of {x.shape[1]} frames exceed the graph's {steps}")
        feeds = {"x": np.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0))), "lengths": test.lengths.numpy()}
    logits = np.concatenate([session.run(["logits"], {k: v[s:s + 2000] for k, v in feeds.items()})[0]
                             for s in range(0, len(test), 2000)])
    return round(float((logits.argmax(1) == test.y.numpy()).mean()), 5)


def reuse(product: Path, source: Path, config=None) -> dict | None:
    """``product`` (JSON) if it was written after ``source`` (and, given ``config``, by that very
    configuration): a finished run is not probed again, a current export not traced again (a
    quantised Bi-RNN's QCDQ trace takes minutes)."""
    if not (product.exists() and source.exists() and product.stat().st_mtime > source.stat().st_mtime):
        return None
    document = json.loads(product.read_text())
    if config is not None and document.get("config") != config.to_dict():
        return None
    return document


def run_width(args, name: str, bits: int, seed: int, command: str) -> dict:
    """Train (or reuse) one bit width with one seed, export and verify it, and measure the file's accuracy."""
    config = load_preset(args.preset)
    config.seed = seed
    config.quant.weight_bits = config.quant.act_bits = bits
    config.quant.per_channel = bool(bits and args.per_channel)
    for section in END_TO_END:   # the sweep compares each bit width with the same network untrained
        if hasattr(config, section):
            getattr(config, section).epochs = 0
    check_for_rule(config.validate(f"preset {args.preset}"), f"preset {args.preset}")
    seed_part = "" if seed == load_preset(args.preset).seed else f"-seed{seed}"
    run_dir = args.runs / f"{name}-w{bits}a{bits}{'-pc' if config.quant.per_channel else ''}{seed_part}"
    print(f"== {config.quant.label()}, seed {seed}", flush=True)
    results = reuse(run_dir / "results.json", run_dir / "checkpoint.pt", config) or train_run(
        config, run_dir, args.data_dir, show_progress=sys.stderr.isatty(), command=command)
    report = reuse(report_path(run_dir / "model.onnx"), run_dir / "readout.pt") or export_onnx(
        load_deployable(run_dir / "checkpoint.pt"), run_dir / "model.onnx")
    check = report["verification"]["onnxruntime"]
    return {
        "weight_bits": bits, "act_bits": bits, "per_channel": config.quant.per_channel,
        "quantisation": config.quant.label(),
        "test_accuracy": results["metrics"]["test_accuracy"],
        "untrained_test_accuracy": results["baselines"]["untrained"]["test_accuracy"],
        "deployed_test_accuracy": onnxruntime_accuracy(run_dir / "model.onnx", config, args.data_dir),
        "seconds_per_epoch": results["timing"]["seconds_per_epoch"],
        "export": {"format": report["format"], "model_bytes": report["model_bytes"],
                   "parameters": report["parameters"], "macs_per_inference": report["macs_per_inference"]["total"],
                   "max_abs_difference": check["max_abs_difference"], "tolerance": check["tolerance"],
                   "differing_fraction": check["differing_fraction"],
                   "pytorch_one_at_a_time": check.get("pytorch_one_at_a_time"),
                   "same_class": check["same_class"]},
        "device": results["device"], "date": results["date"],
    }


ACCURACIES = ("test_accuracy", "untrained_test_accuracy", "deployed_test_accuracy")
PARITY = ("max_abs_difference", "tolerance", "differing_fraction", "pytorch_one_at_a_time", "same_class")


def combine_seeds(runs: list[dict]) -> dict:
    """One row from one width's runs: each accuracy's mean (``*_std`` beside it with several seeds, and every
    seed's value under ``per_seed``); the export's parity from the seed whose file is farthest from PyTorch; the
    rest from the first seed."""
    import statistics
    row = dict(runs[0])
    if len(runs) > 1:
        row["per_seed"] = {key: [r[key] for r in runs] for key in ACCURACIES}
        for key in ACCURACIES:
            values = row["per_seed"][key]
            row[key], row[f"{key}_std"] = round(statistics.mean(values), 5), round(statistics.stdev(values), 5)
        worst = max(runs, key=lambda r: r["export"]["max_abs_difference"])
        row["export"] = {**row["export"], **{k: worst["export"][k] for k in PARITY}}
        row["per_seed"]["export_max_abs_difference"] = [r["export"]["max_abs_difference"] for r in runs]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mnist-quant", help="shipped preset or TOML file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--bits", type=int, nargs="+", default=[0, 8, 4, 2])
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--runs", type=Path, default=HERE / "runs", help="where each bit width's run directory goes")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the preset's)")
    args = parser.parse_args()
    args.seeds = args.seeds or [load_preset(args.preset).seed]
    command = " ".join(["python", "benchmarks/quant_sweep.py"] + sys.argv[1:])
    first = load_preset(args.preset)
    name = first.name               # a shipped preset's name, or the name inside a TOML file
    rows = []
    for bits in args.bits:
        runs = [run_width(args, name, bits, seed, command) for seed in args.seeds]
        rows.append(combine_seeds(runs))
    device, date = rows[-1]["device"], rows[-1]["date"]
    for row in rows:
        del row["device"], row["date"]
    sweep = {"kind": "quant-sweep", "experiment": f"quant-{name}", "learner": first.learner,
             "dataset": first.data.dataset, "command": command, "device": device,
             "seeds": args.seeds, "date": date, "rows": rows, "config": first.to_dict()}
    path = save_json(sweep, args.results / f"quant-{name}.json")
    write_table(args.results)
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
