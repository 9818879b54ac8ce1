"""Checks an exported model must pass before it is written: reusable from tests.

- ``check_onnx``: ``onnx.checker`` with ``full_check`` (shape inference included);
- ``compare_onnxruntime``: the graph run by onnxruntime, at batch sizes other than the one it was
  traced with, against the PyTorch module's outputs;
- ``compare_qonnx``: a QONNX graph run by qonnx's executor, sample by sample, against PyTorch.

Inputs (``parity_inputs``): samples of the run's own test split, spread over it, where the
deployable can get them: the embedded data sets (``digits``, ``sequences``) always, the others
from ``$FWDLEARN_DATA_DIR`` when it is set and readable, or given by the caller (``inputs=``).
Only where no data can be had are the inputs random (``sample_inputs``); the report says which.

What must hold (``judge``):

- every output, PyTorch's and the runtime's, is finite (a NaN would compare as no difference:
  ``max(0.0, nan)`` is 0.0), else ``ExportError`` naming the file;
- float models: no logit differs by more than ``FLOAT_TOLERANCE`` times the largest logit's size (at least 1):
  float32 carries about 7 digits, so a model whose logits reach tens differs from another runtime's by more
  than an absolute 1e-4 through summation order alone;
- quantised models (logits on an 8-bit grid of step ``s``): the logits sit on PyTorch's level of the
  grid but for at most ``MAX_DIFFERING`` of them, and none of those is more than one step off (a
  value on the boundary between two levels may round either way in another runtime);
- quantised recurrent models: the state is rounded at every frame and fed back, so a level that rounds the other
  way at one frame (two runtimes' float arithmetic differs in the last bits: a standardisation computed as
  separate ONNX operators, a summation order) moves every later frame. PyTorch itself disagrees with itself when
  only its summation order changes (the same samples one at a time instead of in batches, ``reference``: on the
  8-bit FSDD Bi-RNN 0.5-2.0 % of the logits, one step each; 4 bits: 0-1.25 %, up to 2 steps), and onnxruntime
  differs from PyTorch on 0.8-1.7 % of the logits by one step at 8 bits, 1.2-2.3 % by up to 4 steps at 4 bits,
  none at 2 bits (the 183-frame FSDD models of ``quant-fsdd-paper.json``, 3 seeds). There at most
  ``max(RECURRENT_DIFFERING, 2 x PyTorch's own fraction)`` of the logits may leave PyTorch's level, none by more
  than ``max(RECURRENT_STEPS, 2 x PyTorch's own farthest)`` steps (a third summation order lies within twice the
  distance between two). A wrong graph moves far more: a wrong weight or bias shows on every sample;
- the predicted class is the same on every sample but those where PyTorch's two largest logits lie
  within the tolerance of each other (a tie the allowed difference may break the other way), and on
  at least ``MIN_SAME_CLASS`` of the samples.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import load_dataset
from ..errors import ExportError, FwdlearnError
from .deployable import Deployable

FLOAT_TOLERANCE = 1e-4    # max abs difference of the logits, float export, per unit of the largest logit (>= 1)
MAX_DIFFERING = 0.01      # quantised: largest fraction of logits not bit-identical to PyTorch's
RECURRENT_DIFFERING = 0.05  # quantised recurrent models: fraction of logits that may leave PyTorch's level ...
RECURRENT_STEPS = 3         # ... and by how many output steps at most (module docstring)
MIN_SAME_CLASS = 0.98     # smallest fraction of samples whose predicted class agrees (near-ties aside)
EMBEDDED = ("digits", "sequences")   # data sets shipped with the package: always available for the check
ONNXRUNTIME_BATCHES = (1, 7, 56)     # 64 samples; 1 and 7 are not the traced batch size (2)
QONNX_SAMPLES = 16                   # qonnx's executor runs one sample at a time


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


@cache
def _test_split(dataset: str, holdout_speakers: tuple[str, ...]):
    return load_dataset(dataset, None, holdout_speakers=holdout_speakers, unlabelled=False).test


def fit_to_graph(deployable: Deployable, x: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, ...]:
    """Samples of a data set as the exported graph takes them: sequences cut or zero-padded to the frames
    it is unrolled over (a cut sequence keeps its first frames and that many as its length)."""
    if not deployable.is_sequence:
        return (x.float(),)
    steps = deployable.example_inputs[0].shape[1]
    if x.shape[1] >= steps:
        x = x[:, :steps]
    else:
        x = torch.cat([x, x.new_zeros(x.shape[0], steps - x.shape[1], *x.shape[2:])], dim=1)
    return x.float(), lengths.clamp(max=steps).to(torch.int64)


def parity_inputs(deployable: Deployable, count: int) -> tuple[tuple[torch.Tensor, ...], str]:
    """``count`` samples spread over the run's test split, and what they are; random inputs (and why) if the
    data set cannot be read here."""
    data = deployable.config.data
    try:
        split = _test_split(data.dataset, tuple(data.holdout_speakers))
    except FwdlearnError as exc:
        return sample_inputs(deployable, count, seed=0), f"random ({data.dataset} not readable here: {exc})"
    shape = tuple(deployable.example_inputs[0].shape[2 if deployable.is_sequence else 1:])
    if tuple(split.x.shape[2 if split.is_sequence else 1:]) != shape or split.is_sequence != deployable.is_sequence:
        return sample_inputs(deployable, count, seed=0), f"random ({data.dataset} samples are not shaped {shape})"
    index = torch.linspace(0, len(split) - 1, min(count, len(split))).round().long()
    lengths = None if split.lengths is None else split.lengths[index]
    return fit_to_graph(deployable, split.x[index], lengths), f"{data.dataset} test split, {len(index)} samples"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _not_finite(path, who: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise ExportError(f"{path}: {who} output is not finite ({int(bad.sum())} of {values.size} logits NaN or "
                          f"infinite); the model cannot be verified")


def _distance(got: np.ndarray, expected: np.ndarray, step: float) -> tuple[float, float]:
    """The largest difference, and the fraction of logits that differ: quantised, those on another level of the
    grid (a fixed-point runtime such as hls4ml's C++ gives the level to its own precision, not bit-identical
    floats); float, any difference."""
    difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    return float(difference.max()), float((difference > step / 2).mean() if step else (got != expected).mean())


def judge(path, runtime: str, expected: np.ndarray, got: np.ndarray, step: float,
          reference: np.ndarray | None = None) -> dict:
    """Compare a runtime's logits ``got`` with PyTorch's ``expected`` (``[N, classes]``) by the criteria in the
    module docstring; ``step`` is the output grid (0: float); ``reference`` (given for a quantised recurrent
    model: PyTorch's logits of the same samples in another summation order) sets the recurrent bounds. Returns
    the figures; raises ``ExportError``."""
    _not_finite(path, "PyTorch's", expected)
    _not_finite(path, f"{runtime}'s", got)
    if got.shape != expected.shape:
        raise ExportError(f"{path}: {runtime} gives logits of shape {got.shape}, PyTorch {expected.shape}")
    tolerance = step * (1 + 1e-4) if step else FLOAT_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    worst, differing = _distance(got, expected, step)
    allowed = MAX_DIFFERING
    own = None
    if step and reference is not None:
        own_worst, own_differing = _distance(reference, expected, step)
        own = {"differing_fraction": own_differing, "max_output_steps": round(own_worst / step, 3)}
        tolerance = max(RECURRENT_STEPS * step, 2 * own_worst) * (1 + 1e-4)
        allowed = max(RECURRENT_DIFFERING, 2 * own_differing)
    top_two = np.sort(expected, axis=1)[:, -2:]
    near_tie = (top_two[:, 1] - top_two[:, 0]) <= tolerance
    same = got.argmax(1) == expected.argmax(1)
    figures = {"runtime": runtime, "samples": int(expected.shape[0]), "max_abs_difference": worst,
               "tolerance": tolerance, "output_step": step, "differing_fraction": differing,
               "same_class": f"{int(same.sum())}/{same.size}"}
    if own is not None:
        figures.update(max_output_steps=round(worst / step, 3), pytorch_one_at_a_time=own, allowed_fraction=allowed)
    if not worst <= tolerance:
        unit = f" ({worst / step:.2f} output steps)" if step else ""
        raise ExportError(f"{path}: {runtime} output differs from PyTorch by {worst:.3g}{unit} (> {tolerance:.3g})")
    if step and differing > allowed:
        raise ExportError(f"{path}: {runtime} output is off PyTorch's level in {differing:.1%} of the "
                          f"logits (at most {allowed:.1%} may be)")
    if (~same & ~near_tie).any() or same.mean() < MIN_SAME_CLASS:
        raise ExportError(f"{path}: {runtime} predicts another class than PyTorch on {int((~same).sum())} of "
                          f"{same.size} samples ({int((~same & ~near_tie).sum())} of them without a near-tie)")
    return figures


def _compare(path, deployable: Deployable, runtime: str, run: Callable, batches: tuple[int, ...],
             inputs: tuple[torch.Tensor, ...] | None) -> dict:
    if inputs is None:
        inputs, description = parity_inputs(deployable, sum(batches))
    else:
        inputs, description = fit_to_graph(deployable, *inputs), "given by the caller"
    expected, got, start = [], [], 0
    for batch in batches:
        chunk = tuple(t[start:start + batch] for t in inputs)
        start += batch
        if not len(chunk[0]):
            break
        with torch.no_grad():
            expected.append(deployable.model(*chunk).numpy())
        try:
            got.append(np.asarray(run({name: t.numpy() for name, t in zip(deployable.input_names, chunk)})))
        except Exception as exc:  # runtimes raise many types
            raise ExportError(f"{path}: {runtime} could not run the model ({_first_line(exc)})") from None
    batch_sizes, expected = [len(e) for e in expected], np.concatenate(expected)
    reference = None
    if deployable.quantised and deployable.is_sequence:          # PyTorch's own spread (module docstring)
        with torch.no_grad():
            reference = np.concatenate([deployable.model(*(t[i:i + 1] for t in inputs)).numpy()
                                        for i in range(len(expected))])
    figures = judge(path, runtime, expected, np.concatenate(got), deployable.model.output_step(), reference)
    return {**figures, "inputs": description, "batch_sizes": batch_sizes}


def compare_onnxruntime(path: str | Path, deployable: Deployable, batches: tuple[int, ...] = ONNXRUNTIME_BATCHES,
                        inputs: tuple[torch.Tensor, ...] | None = None) -> dict:
    """Run the file in onnxruntime and PyTorch on the same inputs (``parity_inputs`` unless given) in batches of
    ``batches``; raise ``ExportError`` unless ``judge`` accepts the outputs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3   # Brevitas graphs list initialisers as inputs: a harmless warning per tensor
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ExportError(f"{path}: onnxruntime {onnxruntime.__version__} cannot load the model "
                          f"({_first_line(exc)})") from None
    return _compare(path, deployable, f"onnxruntime {onnxruntime.__version__}",
                    lambda feeds: session.run(["logits"], feeds)[0], batches, inputs)


def compare_qonnx(path: str | Path, deployable: Deployable, samples: int = QONNX_SAMPLES,
                  inputs: tuple[torch.Tensor, ...] | None = None) -> dict:
    """Run a QONNX file with qonnx's executor (one sample at a time: the graph has batch 1)."""
    import qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    try:
        model = cleanup_model(ModelWrapper(str(path)))
    except Exception as exc:  # qonnx raises many types
        raise ExportError(f"{path}: qonnx cannot load the model ({_first_line(exc)})") from None
    names = [i.name for i in model.graph.input][:len(deployable.input_names)]
    output = model.graph.output[0].name

    def run(feeds: dict) -> np.ndarray:
        rows = next(iter(feeds.values())).shape[0]
        return np.concatenate([execute_onnx(model, {n: v[r:r + 1] for n, v in zip(names, feeds.values())})[output]
                               for r in range(rows)])

    return _compare(path, deployable, f"qonnx {getattr(qonnx, '__version__', '')}".strip(), run,
                    (samples if inputs is None else len(inputs[0]),), inputs)
