"""Checks an exported model must pass before it is written: reusable from tests.

- ``check_onnx``: ``onnx.checker`` with ``full_check`` (shape inference included);
- ``compare_onnxruntime``: the graph run by onnxruntime on fresh inputs, at batch sizes other
  than the one it was traced with, against the PyTorch module's outputs.
"""

from __future__ import annotations

from pathlib import Path

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


def compare_onnxruntime(path: str | Path, deployable: Deployable, batches: tuple[int, ...] = (1, 7),
                        tolerance: float = FLOAT_TOLERANCE) -> dict:
    """Run the file in onnxruntime and PyTorch on the same inputs; raise if they differ by more than ``tolerance``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst, agree, total = 0.0, 0, 0
    for i, batch in enumerate(batches):
        inputs = sample_inputs(deployable, batch, seed=i)
        with torch.no_grad():
            expected = deployable.model(*inputs).numpy()
        feeds = {name: tensor.numpy() for name, tensor in zip(deployable.input_names, inputs)}
        (got,) = session.run(["logits"], feeds)
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += batch
    if not worst <= tolerance:
        raise ExportError(f"{path}: onnxruntime output differs from PyTorch by {worst:.3g} (> {tolerance:g})")
    return {"runtime": f"onnxruntime {onnxruntime.__version__}", "batch_sizes": list(batches),
            "max_abs_difference": worst, "tolerance": tolerance, "same_class": f"{agree}/{total}"}
