"""Benchmark: the hls4ml C++ models of the quantised digits SCFF MLP and CNN against PyTorch, on the whole test split.

    python benchmarks/hls4ml_agreement.py                      # digits (embedded): scff-mlp and scff-cnn, w4a4

For each model the preset (``digits``, ``digits-conv``) is trained with 4-bit weights (per tensor: hls4ml's QONNX
reader takes no per-channel scales) and 4-bit standardised inputs, exported to QONNX traced for accelerators
(``fwdlearn export --format qonnx --hls4ml``: each standardisation a layer normalisation, the triangle's mean a
linear map, the reflect padding hls4ml's added layer), converted and compiled by hls4ml (Vitis, io_parallel,
g++), and its C++ model run on every test image. Recorded: the fraction of images given the same class as
PyTorch, the fraction of logits on another level of the 8-bit output grid, the largest logit difference (absolute
and in output steps), and both models' test accuracy.

Then the precision of the layer normalisation's 1/sqrt table is measured: the MLP is converted again with
hls4ml's default table (4,096 entries of ``ufixed<8,5>``) and with larger or finer ones, the CNN with the largest,
each on the whole test split. A logit a level off comes from a value that sits within the table's error of a 4-bit input quantiser's
rounding boundary and flips.

Runs go to ``benchmarks/runs/hls4ml-<preset>/`` (not committed); the record to
``benchmarks/results/hls4ml-agreement.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.config import QuantConfig  # noqa: E402
from fwdlearn.data import load_dataset  # noqa: E402
from fwdlearn.export import export_onnx, load_deployable  # noqa: E402
from fwdlearn.export import hls4ml_check  # noqa: E402
from fwdlearn.presets import load_preset  # noqa: E402
from fwdlearn.run import device_description, train_run  # noqa: E402

PRESETS = ("digits", "digits-conv")
TABLES = ((4096, "ufixed<8,5>"), (4096, "ufixed<32,12>"), (65536, "ufixed<32,12>"), (262144, "ufixed<32,12>"),
          (1048576, "ufixed<32,12>"))


def trained(preset: str, runs: Path, bits: int) -> Path:
    config = load_preset(preset)
    config.quant = QuantConfig(weight_bits=bits, act_bits=bits, per_channel=False)
    config.name = f"{preset}-w{bits}a{bits}"
    folder = runs / f"hls4ml-{config.name}"
    if not (folder / "results.json").exists():
        train_run(config.validate(), folder, show_progress=False, log=lambda _: None)
    return folder / "checkpoint.pt"


def figures(got: np.ndarray, expected: np.ndarray, step: float) -> dict:
    """How the C++ model's logits compare with PyTorch's (all figures, nothing judged)."""
    steps = np.abs(got - expected) / step
    return {"same_class": f"{int((got.argmax(1) == expected.argmax(1)).sum())}/{len(got)}",
            "differing_logit_fraction": round(float((steps > 0.5).mean()), 5),
            "samples_with_a_differing_logit": int((steps.max(1) > 0.5).sum()),
            "max_abs_logit_difference": float(np.abs(got - expected).max()), "output_step": step,
            "max_difference_in_steps": round(float(steps.max()), 4)}


def agreement(checkpoint: Path, workdir: Path) -> dict:
    deployable = load_deployable(checkpoint)
    path = workdir / "model.onnx"
    started = time.perf_counter()
    report = export_onnx(deployable, path, "qonnx", hls4ml=True)    # the exporter's own check: 32 test images
    export_seconds = time.perf_counter() - started
    test = load_dataset(deployable.readout.dataset).test
    got, expected, step, settings = hls4ml_check.hls4ml_logits(path, deployable, test.x, workdir=workdir / "hls")
    return {"checkpoint": str(checkpoint), "quantisation": deployable.config.quant.label(),
            "operators": report["operators"], "test_samples": len(test), **figures(got, expected, step),
            "pytorch_test_accuracy": round(float((expected.argmax(1) == test.y.numpy()).mean()), 5),
            "hls4ml_test_accuracy": round(float((got.argmax(1) == test.y.numpy()).mean()), 5),
            **settings, "export_and_check_seconds": round(export_seconds, 1)}


def table_sweep(checkpoint: Path, workdir: Path, tables) -> list[dict]:
    """The model converted with each 1/sqrt table, on the whole test split."""
    deployable = load_deployable(checkpoint)
    path = workdir / "model.onnx"
    test = load_dataset(deployable.readout.dataset).test
    chosen = (hls4ml_check.LAYER_NORM_TABLE, hls4ml_check.LAYER_NORM_TABLE_PRECISION)
    rows = []
    try:
        for entries, precision in tables:
            hls4ml_check.LAYER_NORM_TABLE, hls4ml_check.LAYER_NORM_TABLE_PRECISION = entries, precision
            got, expected, step, _ = hls4ml_check.hls4ml_logits(path, deployable, test.x)
            rows.append({"table_entries": entries, "table_precision": precision, **figures(got, expected, step)})
            print(f"  table {entries} x {precision}: {rows[-1]}", flush=True)
    finally:
        hls4ml_check.LAYER_NORM_TABLE, hls4ml_check.LAYER_NORM_TABLE_PRECISION = chosen
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    models = {}
    for preset in PRESETS:
        checkpoint = trained(preset, args.runs, args.bits)
        workdir = checkpoint.parent / "hls4ml"
        workdir.mkdir(exist_ok=True)
        models[preset] = agreement(checkpoint, workdir)
        print(f"{preset}: {models[preset]}", flush=True)
    sweep = {preset: table_sweep(args.runs / f"hls4ml-{preset}-w{args.bits}a{args.bits}" / "checkpoint.pt",
                                 args.runs / f"hls4ml-{preset}-w{args.bits}a{args.bits}" / "hls4ml",
                                 TABLES if preset == PRESETS[0] else TABLES[-1:])      # a conv compile takes minutes
             for preset in PRESETS}
    document = {"kind": "hls4ml-agreement", "experiment": "hls4ml-agreement",
                "command": "python benchmarks/hls4ml_agreement.py" + (f" --bits {args.bits}" if args.bits != 4 else ""),
                "device": device_description(), "models": models,
                "layer_norm_tables": sweep,
                "chosen_table": {"entries": hls4ml_check.LAYER_NORM_TABLE,
                                 "precision": hls4ml_check.LAYER_NORM_TABLE_PRECISION,
                                 "other_precision": hls4ml_check.PRECISION}}
    save_json(document, args.results / "hls4ml-agreement.json")
    write_table(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
