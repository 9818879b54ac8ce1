"""Checks an exported model must pass before it is written: reusable from tests.

- ``check_onnx``: ``onnx.checker`` with ``full_check`` (shape inference included);
- ``compare_onnxruntime``: the graph run by onnxruntime on fresh inputs, at batch sizes other
  than the one it was traced with, against the PyTorch module's outputs;
- ``compare_qonnx``: a QONNX graph run by qonnx's executor, sample by sample, against PyTorch.

Tolerance: ``FLOAT_TOLERANCE`` for float models; one step of the output grid for quantised
ones (a value on the boundary between two levels may round either way in another runtime).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ExportError
from .deployable import Deployable

FLOAT_TOLERANCE = 1e-4   # max abs difference of the logits, float export (issue acceptance)


def check_onnx(path: str | Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path}: onnx.checker rejected the model ({str(exc).splitlines()[0]})") from None


def sample_inputs(deployable: Deployable, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random inputs shaped like the example inputs, with ``batch`` samples (random lengths for sequences)."""
    generator = torch.Generator().manual_seed(seed)
    x = deployable.example_inputs[0]
    sample = torch.rand(batch, *x.shape[1:], generator=generator)
    if not deployable.is_sequence:
        return (sample,)
    steps = x.shape[1]
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    frames = torch.randn(batch, *x.shape[1:], generator=generator)
    frames = frames * (torch.arange(steps)[None, :, None] < lengths[:, None, None])   # zero-padded
    return frames, lengths


def tolerance_for(deployable: Deployable) -> float:
    step = deployable.model.output_step()
    return step * (1 + 1e-4) if step else FLOAT_TOLERANCE


def _compare(path, deployable: Deployable, runtime: str, run: Callable, batches: tuple[int, ...]) -> dict:
    tolerance = tolerance_for(deployable)
    worst, agree, total = 0.0, 0, 0
    for i, batch in enumerate(batches):
        inputs = sample_inputs(deployable, batch, seed=i)
        with torch.no_grad():
            expected = deployable.model(*inputs).numpy()
        got = run({name: tensor.numpy() for name, tensor in zip(deployable.input_names, inputs)})
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += batch
    if not worst <= tolerance:
        raise ExportError(f"{path}: {runtime} output differs from PyTorch by {worst:.3g} (> {tolerance:.3g})")
    return {"runtime": runtime, "batch_sizes": list(batches), "max_abs_difference": worst,
            "tolerance": tolerance, "output_step": deployable.model.output_step(), "same_class": f"{agree}/{total}"}


def compare_onnxruntime(path: str | Path, deployable: Deployable, batches: tuple[int, ...] = (1, 7)) -> dict:
    """Run the file in onnxruntime and PyTorch on the same inputs; raise if they differ by more than the tolerance."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # Brevitas graphs list initialisers as inputs: a harmless warning per tensor
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _compare(path, deployable, f"onnxruntime {onnxruntime.__version__}",
                    lambda feeds: session.run(["logits"], feeds)[0], batches)


def compare_qonnx(path: str | Path, deployable: Deployable, samples: int = 8) -> dict:
    """Run a QONNX file with qonnx's executor (one sample at a time: the graph has batch 1)."""
    import qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(path)))
    names = [i.name for i in model.graph.input][:len(deployable.input_names)]
    output = model.graph.output[0].name

    def run(feeds: dict) -> np.ndarray:
        rows = next(iter(feeds.values())).shape[0]
        return np.concatenate([execute_onnx(model, {n: v[r:r + 1] for n, v in zip(names, feeds.values())})[output]
                               for r in range(rows)])

    return _compare(path, deployable, f"qonnx {getattr(qonnx, '__version__', '')}".strip(), run, (samples,))
