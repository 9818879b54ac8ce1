"""Benchmark: one training epoch of a layer against the GEMM floor of that epoch's exact products, in one process.

    python benchmarks/epoch_vs_gemm.py --data-dir ../shared/data                 # mnist-paper and mnist-conv, layer 1
    python benchmarks/epoch_vs_gemm.py --data-dir ../shared/data --presets fsdd-paper
    python benchmarks/epoch_vs_gemm.py --data-dir ../shared/data --device cuda   # on a GPU

A local layer's update needs two products per batch: the projection of every distinct view and the weight
gradient (methods section 6). The *floor* is the time of exactly those products for every batch of the
epoch (same shapes, same order, the layer's own BLAS / convolution kernels, outputs preallocated), and
nothing else: no data movement, no element-wise work, no optimiser. The *epoch* is the learner's own
``train`` for one epoch of the layer (data pairs, standardisation, the products, the pair kernel or autograd,
AdamW), as the learner itself records it (``history[-1]["seconds"]``), without the progress bar. Both are measured alternately, ``--repeats`` times each, so the ratio
(median epoch / median floor) survives a noisy machine. Every backend is measured (``fused`` and ``torch``).

Writes ``benchmarks/results/epoch-vs-gemm-<device>.json`` and regenerates ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.bench.sweep import describe_device  # noqa: E402
from fwdlearn.config import BACKENDS  # noqa: E402
from fwdlearn.data import load_dataset  # noqa: E402
from fwdlearn.presets import load_preset  # noqa: E402
from fwdlearn.registry import get_rule  # noqa: E402


def first_layer_config(preset: str, backend: str):
    """The preset with its first layer alone, trained for one epoch on ``backend``."""
    config = load_preset(preset)
    layer = dataclasses.replace(config.layers[0], epochs=1)
    return dataclasses.replace(config, layers=[layer], backend=backend, bptt=dataclasses.replace(config.bptt, epochs=0),
                               bp=dataclasses.replace(config.bp, epochs=0))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Floor:
    """The products of one epoch of a rule's first layer, replayed: ``run()`` times them all."""

    def __init__(self, learner, n: int, lengths: torch.Tensor | None):
        self.device = learner.device
        layer = learner.network.layers[0] if hasattr(learner.network, "layers") else None
        self.products = []
        generator_state = learner.generator.get_state()
        batches = learner.epoch_batches(n, lengths)
        learner.generator.set_state(generator_state)     # the epoch itself draws the same batches
        views_per_sample = 2 if learner.config.data.translate else 1
        for rows in batches:
            self.products.append(self.batch_products(learner, layer, len(rows) * views_per_sample, rows, lengths))
        self.batches = len(batches)

    def batch_products(self, learner, layer, views: int, rows, lengths):
        weight = layer.conv.weight if hasattr(layer, "conv") else layer.linear.weight
        if weight.dim() == 2:                                  # dense: [M, D] @ [D, H], then [H, M] @ [M, D]
            x = torch.randn(views, weight.shape[1], device=self.device)
            r = torch.randn(views, weight.shape[0], device=self.device)
            w = weight.detach()
            return lambda: (torch.mm(x, w.t()), torch.mm(r.t(), x))
        spec = layer.spec                                      # conv: forward and weight-only backward
        size = learner.input_dim[1] + 2 * spec.padding
        x = torch.randn(views, weight.shape[1], size, learner.input_dim[2] + 2 * spec.padding, device=self.device)
        w = weight.detach()
        out = torch.nn.functional.conv2d(x, w)
        r = torch.randn_like(out)
        conv_backward = torch.ops.aten.convolution_backward
        return lambda: (torch.nn.functional.conv2d(x, w),
                        conv_backward(r, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False]))

    def run(self) -> float:
        _sync(self.device)
        started = time.perf_counter()
        for products in self.products:
            products()
        _sync(self.device)
        return time.perf_counter() - started


def epoch_seconds(rule, config, dataset, input_dim, x, lengths, device) -> float:
    """The learner's own record of its one epoch (``history[-1]["seconds"]``: the batch loop, not the checks of the
    training data before it)."""
    learner = rule.learner(config, input_dim, device=device)
    learner.prepare(dataset)
    learner.train(x, lengths, show_progress=False)
    return learner.history[-1]["seconds"]


def measure(preset: str, data_dir: str, device: str, repeats: int, log=print) -> list[dict]:
    rows = []
    config = first_layer_config(preset, "torch")
    rule = get_rule(config.learner)
    dataset = load_dataset(config.data.dataset, data_dir)
    input_dim = rule.learner.network_input(dataset)
    x, lengths, _ = rule.learner.train_inputs(dataset)
    x = x.to(device)
    for backend in BACKENDS:
        config = first_layer_config(preset, backend)
        probe = rule.learner(config, input_dim, device=device)
        floor = Floor(probe, x.shape[0], lengths)
        epoch_seconds(rule, config, dataset, input_dim, x[: 4 * config.batch_size], lengths, device)   # compile, warm
        floor.run()
        epochs, floors = [], []
        for _ in range(repeats):
            floors.append(floor.run())
            epochs.append(epoch_seconds(rule, config, dataset, input_dim, x, lengths, device))
        epoch, gemm = statistics.median(epochs), statistics.median(floors)
        row = {"preset": preset, "layer": 1, "backend": backend, "rule": config.learner, "batches": floor.batches,
               "batch_size": config.batch_size, "translate": config.data.translate,
               "epoch_seconds": epochs, "floor_seconds": floors, "epoch_median": epoch, "floor_median": gemm,
               "ratio": epoch / gemm}
        rows.append(row)
        log(f"{preset:14s} layer 1  {backend:6s} epoch {epoch:7.2f} s   GEMM floor {gemm:7.2f} s   "
            f"ratio {epoch / gemm:5.2f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--presets", nargs="+", default=["mnist-paper", "mnist-conv"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.threads:
        import numba
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    rows = [row for preset in args.presets for row in measure(preset, args.data_dir, args.device, args.repeats)]
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    path = args.results / f"epoch-vs-gemm-{kind}.json"
    previous = {}
    if path.exists():                         # keep the presets not measured this time
        import json
        previous = {(r["preset"], r["backend"]): r for r in json.loads(path.read_text())["rows"]}
    for row in rows:
        previous[(row["preset"], row["backend"])] = row
    document = {"kind": "epoch-vs-gemm", "device": describe_device(args.device), "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "command": " ".join(["python", "benchmarks/epoch_vs_gemm.py"] + (argv or sys.argv[1:])),
                "rows": list(previous.values())}
    save_json(document, path)
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
