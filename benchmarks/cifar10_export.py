"""Benchmark: the paper's CIFAR-10 network (``cifar10-paper``: conv 96-384-1536, Table D.1) quantised, trained for a
moment on synthetic images and exported to QCDQ and QONNX, verified as every export is.

    python benchmarks/cifar10_export.py                 # w8a8 and w4a4, per channel

No CIFAR-10 is read: the point is that the full-size quantised network goes through the local rule and the
exporters (the layers, shapes, operators, bytes and MACs per inference a chip would take), not its accuracy.
Each bit width trains the preset with weights and standardised inputs quantised (per output channel) for one
epoch per layer on 256 uniform random 3x32x32 images (random labels for the read-out), then exports: QCDQ
checked in onnxruntime and QONNX in qonnx's executor on random images of the same shape (the exporter says
so), within one step of the 8-bit output grid. Runs go to ``benchmarks/runs/cifar10-synthetic-*`` (not committed);
the record to ``benchmarks/results/export-cifar10-paper-synthetic.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.config import QuantConfig  # noqa: E402
from fwdlearn.data.dataset import LabelledDataset, Split  # noqa: E402
from fwdlearn.export import export_onnx, load_deployable  # noqa: E402
from fwdlearn.presets import load_preset  # noqa: E402
from fwdlearn.run import device_description, train_run  # noqa: E402

IMAGES = 256


def synthetic_cifar10(seed: int = 0) -> LabelledDataset:
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        return Split(torch.rand(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator))

    return LabelledDataset("cifar10", split(IMAGES), split(64), tuple(str(i) for i in range(10)),
                           f"synthetic: uniform random 3x32x32 images (seed {seed})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows = []
    for bits in args.bits:
        config = load_preset("cifar10-paper")
        config.name = f"cifar10-paper-w{bits}a{bits}-synthetic"
        config.quant = QuantConfig(weight_bits=bits, act_bits=bits, per_channel=True)
        for layer in config.layers:
            layer.epochs = 1
        config.probe.epochs = 1
        folder = args.runs / f"cifar10-synthetic-w{bits}a{bits}"
        started = time.perf_counter()
        train_run(config.validate(), folder, show_progress=False, log=lambda _: None, dataset=synthetic_cifar10(),
                  fresh=True)
        row = {"quantisation": config.quant.label(), "train_seconds": round(time.perf_counter() - started, 1),
               "exports": {}}
        for export_format in ("qcdq", "qonnx"):
            deployable = load_deployable(folder / "checkpoint.pt")
            started = time.perf_counter()
            report = export_onnx(deployable, folder / f"model-{export_format}.onnx", export_format)
            check = report["verification"]["onnxruntime" if export_format == "qcdq" else "qonnx"]
            row["exports"][export_format] = {
                "seconds": round(time.perf_counter() - started, 1), "model_bytes": report["model_bytes"],
                "parameters": report["parameters"], "macs_per_inference": report["macs_per_inference"],
                "operators": report["operators"], "same_class": check["same_class"],
                "differing_logit_fraction": check["differing_fraction"],
                "max_abs_logit_difference": check["max_abs_difference"], "output_step": check["output_step"],
                "inputs": check["inputs"]}
            print(f"w{bits}a{bits} {export_format}: {row['exports'][export_format]}", flush=True)
        rows.append(row)
    document = {"kind": "export-check", "experiment": "export-cifar10-paper-synthetic", "preset": "cifar10-paper",
                "command": "python benchmarks/cifar10_export.py", "device": device_description(),
                "data": f"synthetic: {IMAGES} uniform random 3x32x32 training images, one epoch per layer",
                "rows": rows}
    save_json(document, args.results / "export-cifar10-paper-synthetic.json")
    write_table(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
