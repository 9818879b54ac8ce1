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
import inspect
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from torch.optim.optimizer import register_optimizer_step_pre_hook  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.hardware.update_ops import _conv_macs, _matmul_macs  # noqa: E402
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


PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
            torch.ops.aten.baddbmm.default, torch.ops.aten.convolution.default,
            torch.ops.aten.convolution_backward.default}


class ProductRecorder(TorchDispatchMode):
    """Records every matrix product and convolution (operator, operand shapes and strides, other arguments)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in PRODUCTS:
            self.calls.append((func, [_spec(a) for a in args], dict(kwargs or {})))
            self.macs += _macs(func, args, out)
        return out


def _macs(func, args, out) -> int:
    """Multiply-accumulates of one recorded product (``hardware/update_ops``' counting)."""
    if func is torch.ops.aten.convolution_backward.default:
        return _conv_macs(args[1], args[2], args[0], args[7]) * sum(bool(m) for m in args[10][:2])
    if func is torch.ops.aten.convolution.default:
        return _conv_macs(args[0], args[1], out, args[6])
    return _matmul_macs(func, args)


def _spec(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), tuple(value.stride()), value.dtype, str(value.device))
    return value


class Floor:
    """The products one epoch ran, replayed on random operands of the same shapes, strides and order."""

    def __init__(self, calls: list[tuple], macs: int, device: torch.device):
        self.device, self.macs, operands = device, macs, {}

        def operand(spec):
            if not (isinstance(spec, tuple) and spec and spec[0] == "tensor"):
                return spec
            if spec not in operands:
                _, shape, stride, dtype, where = spec
                operands[spec] = torch.empty_strided(shape, stride, dtype=dtype, device=where).normal_()
            return operands[spec]
        self.calls = [(func, [operand(a) for a in args], kwargs) for func, args, kwargs in calls]

    def run(self) -> float:
        _sync(self.device)
        started = time.perf_counter()
        for func, args, kwargs in self.calls:
            func(*args, **kwargs)
        _sync(self.device)
        return time.perf_counter() - started


def recorded_floor(rule, config, dataset, input_dim, x, lengths, device) -> tuple[Floor, "OptimizerFloor"]:
    """The products of one epoch of ``config`` (a fresh learner, so the same batches as every measured epoch), and
    its optimiser steps."""
    learner = rule.learner(config, input_dim, device=device)
    learner.prepare(dataset)
    steps = [0]
    hook = register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: steps.__setitem__(0, steps[0] + 1))
    try:
        with ProductRecorder() as recorder:
            learner.train(x, lengths, show_progress=False)
    finally:
        hook.remove()
    group = next(iter(learner.groups.values()))
    return Floor(recorder.calls, recorder.macs, torch.device(device)), OptimizerFloor(group, steps[0])


class OptimizerFloor:
    """``steps`` steps of an optimiser like the group's (same class and settings) on parameters of its shapes."""

    def __init__(self, group, steps: int):
        self.steps, self.device = steps, group.parameters[0].device
        self.parameters = [torch.nn.Parameter(torch.randn_like(p)) for p in group.parameters]
        for p in self.parameters:
            p.grad = torch.randn_like(p)
        optimizer = group.optimizer
        accepted = inspect.signature(type(optimizer)).parameters
        self.optimizer = type(optimizer)(self.parameters, **{k: v for k, v in optimizer.defaults.items()
                                                             if k in accepted})

    def run(self) -> float:
        _sync(self.device)
        started = time.perf_counter()
        for _ in range(self.steps):
            self.optimizer.step()
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
    fused = first_layer_config(preset, "fused")
    warm = slice(0, 4 * fused.batch_size)
    epoch_seconds(rule, fused, dataset, input_dim, x[warm], None if lengths is None else lengths[warm], device)   # compile
    floor, optimizer = recorded_floor(rule, fused, dataset, input_dim, x, lengths, device)
    floor.run(), optimizer.run()
    for backend in BACKENDS:
        config = first_layer_config(preset, backend)
        epoch_seconds(rule, config, dataset, input_dim, x[warm], None if lengths is None else lengths[warm], device)
        epochs, floors, steps = [], [], []
        for _ in range(repeats):
            floors.append(floor.run())
            steps.append(optimizer.run())
            epochs.append(epoch_seconds(rule, config, dataset, input_dim, x, lengths, device))
        epoch, gemm, step = statistics.median(epochs), statistics.median(floors), statistics.median(steps)
        row = {"preset": preset, "layer": 1, "backend": backend, "rule": config.learner,
               "products": len(floor.calls), "floor_macs": floor.macs,
               "batch_size": config.batch_size, "translate": config.data.translate,
               "epoch_seconds": epochs, "floor_seconds": floors, "epoch_median": epoch, "floor_median": gemm,
               "ratio": epoch / gemm, "optimizer_steps": optimizer.steps, "optimizer_seconds": steps,
               "optimizer_median": step, "ratio_to_products_and_optimizer": epoch / (gemm + step)}
        rows.append(row)
        log(f"{preset:14s} layer 1  {backend:6s} epoch {epoch:7.2f} s   GEMM floor {gemm:7.2f} s   "
            f"ratio {epoch / gemm:5.2f}   (+ {optimizer.steps} optimiser steps {step:5.2f} s: "
            f"ratio {epoch / (gemm + step):5.2f})")
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
    document = {"kind": "epoch-vs-gemm", "experiment": path.stem, "device": describe_device(args.device), "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "command": " ".join(["python", "benchmarks/epoch_vs_gemm.py"] + (argv or sys.argv[1:])),
                "rows": list(previous.values())}
    save_json(document, path)
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
