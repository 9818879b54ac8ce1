"""ONNX export of a trained run (float, QCDQ or QONNX), verified before it is written.

- ``float``: traced from the PyTorch module (TorchScript exporter) with a dynamic batch
  dimension; checked in onnxruntime to ``FLOAT_TOLERANCE``.
- ``qcdq`` (quantised models): Brevitas' QuantizeLinear / Clip / DequantizeLinear form, which
  standard runtimes execute, with the weights folded into int8 initialisers (``fold.py``);
  dynamic batch; checked in onnxruntime to one step of the output grid.
- ``qonnx`` (quantised models): Brevitas' QONNX form (``Quant`` nodes carrying scale, zero point
  and bit width, the input of FINN and hls4ml); batch 1; checked by qonnx's own executor to one
  step of the output grid.

Recurrent models are unrolled over a fixed number of frames (inputs zero-padded to it, the true
``lengths`` beside them), which every ONNX runtime and edge compiler accepts, unlike a
data-dependent loop. Tracing them whole took minutes (one traced step per frame); instead one step
is traced once, by the same exporter, and repeated in ONNX (``recurrent.py``): the same logits, bit
for bit, each weight stored once, in seconds. Each file is written to a temporary name, checked with ``onnx.checker``
(full check), run against PyTorch, and only then renamed into place; a report
(``<name>.report.json``) goes beside it.

The opset is checked before anything is traced (``opset_range``), and nothing the exporters print
(TorchScript's C++ log dumps the whole graph when it fails) reaches the terminal: a failure is the
one-line ``ExportError``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..atomic import atomic_write, save_json
from ..errors import ExportError
from .deployable import Deployable
from .fold import fold_weight_quantizers
from .metadata import model_metadata
from .report import export_report
from .verify import check_onnx, compare_onnxruntime, compare_qonnx, parity_inputs

DEFAULT_OPSET = 18
FORMATS = ("float", "qcdq", "qonnx")
# The oldest opset each format is written at. float: 13 (every rule's graph was checked from 13 to the
# TorchScript exporter's newest, 20; older ones are not offered, and the Bi-RNN's ``arange`` needs 9).
# qcdq: 18, the opset Brevitas' exporter (torch's dynamo exporter) writes; asked for less, its version
# converter fails on these graphs and the file silently stays at 18.
OLDEST_OPSET = {"float": 13, "qcdq": 18}


def opset_range(export_format: str) -> tuple[int, int] | None:
    """The opsets (inclusive) ``export_format`` can be written at; ``None`` for qonnx, whose opset Brevitas picks.

    The newest is the exporter's own (torch's TorchScript exporter for float, its dynamo exporter for
    qcdq; no public torch API states them), and never past what the installed onnx knows.
    """
    if export_format not in OLDEST_OPSET:
        return None
    import onnx
    from torch.onnx import _constants
    newest = _constants.ONNX_MAX_OPSET
    if export_format == "float":
        newest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", newest)
    return OLDEST_OPSET[export_format], min(newest, onnx.defs.onnx_opset_version())


def check_opset(export_format: str, opset: int | None) -> int | None:
    """The opset to export at (``DEFAULT_OPSET`` when ``None``), or a one-line ``ExportError`` naming the range."""
    supported = opset_range(export_format)
    if supported is None:
        if opset is not None:
            raise ExportError(f"{export_format} export takes no opset (Brevitas chooses it); got {opset}")
        return None
    opset = DEFAULT_OPSET if opset is None else opset
    oldest, newest = supported
    if not oldest <= opset <= newest:
        raise ExportError(f"opset {opset} is not supported for {export_format} export: "
                          f"choose one of {oldest}..{newest}")
    return opset


STANDARD_DESCRIPTORS = (1, 2)   # stdout, stderr


@contextlib.contextmanager
def _silenced():
    """Send everything printed inside to the null device: Python's streams, and file descriptors 1 and 2,
    which C++ code writes to directly (torch's ONNX log, onnx's version converter)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        _flush(stream)
    saved = {}
    with contextlib.suppress(OSError):           # a closed descriptor: nothing to redirect
        saved = {fd: os.dup(fd) for fd in STANDARD_DESCRIPTORS}
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(null, fd)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            _flush(stream)
        with contextlib.suppress(Exception):     # C stdio buffers filled inside go to the null device too
            ctypes.CDLL(None).fflush(None)
        for fd, original in saved.items():
            os.dup2(original, fd)
            os.close(original)
        os.close(null)


def _flush(stream) -> None:
    with contextlib.suppress(Exception):         # a stream may be None or already closed
        stream.flush()


def _dynamic_axes(deployable: Deployable) -> dict:
    return {name: {0: "batch"} for name in deployable.input_names + deployable.output_names}


def _trace_float(deployable: Deployable, path: Path, opset: int, fold: bool = True) -> None:
    """``fold = False`` keeps every weight an initialiser the graph reads under its parameter's name (no folded
    transposed copy), so that a device can run the graph with weights it learned (``ondevice.runtime``)."""
    torch.onnx.export(deployable.model, deployable.example_inputs, str(path), dynamo=False,
                      input_names=deployable.input_names, output_names=deployable.output_names,
                      dynamic_axes=_dynamic_axes(deployable), opset_version=opset, do_constant_folding=fold)


def _trace_qcdq(deployable: Deployable, path: Path, opset: int) -> None:
    from brevitas.export import export_onnx_qcdq
    export_onnx_qcdq(deployable.model, deployable.example_inputs, export_path=str(path), opset_version=opset,
                     input_names=deployable.input_names, output_names=deployable.output_names,
                     dynamic_axes=_dynamic_axes(deployable))


def _trace_qonnx(deployable: Deployable, path: Path, opset: None) -> None:
    from brevitas.export import export_qonnx
    one = tuple(t[:1] for t in deployable.example_inputs)
    export_qonnx(deployable.model, one, export_path=str(path), input_names=deployable.input_names,
                 output_names=deployable.output_names)


TRACERS: dict[str, Callable[[Deployable, Path, int | None], None]] = {
    "float": _trace_float, "qcdq": _trace_qcdq, "qonnx": _trace_qonnx}


def _write(deployable: Deployable, path: Path, export_format: str, opset: int | None, learnable: bool = False) -> None:
    """Trace to ``path``; then fold, add metadata and save it as one self-contained file."""
    side_file = path.with_name(path.name + ".data")   # the dynamo exporter (Brevitas) puts weights here
    try:
        _trace_and_finish(deployable, path, export_format, opset, learnable)
    finally:
        side_file.unlink(missing_ok=True)


@contextlib.contextmanager
def quiet_tracing(what: str):
    """Run an ONNX exporter inside: nothing it prints reaches the terminal, and any failure is one ``ExportError``
    line, ``"<what> failed (<type>: <first line>)"``."""
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)         # "torchvision is not installed" notices of the dynamo exporter
    try:
        with warnings.catch_warnings(), _silenced():   # and its step-by-step log; TorchScript's graph dump
            warnings.simplefilter("ignore")   # tracer warnings about Python-side shape checks
            yield
    except Exception as exc:  # noqa: BLE001 - the exporters raise many types
        raise ExportError(f"{what} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") \
            from None
    finally:
        quiet.setLevel(level)


def _trace_and_finish(deployable: Deployable, path: Path, export_format: str, opset: int | None,
                      learnable: bool = False) -> None:
    import onnx

    trace = functools.partial(_trace_float, fold=False) if learnable else TRACERS[export_format]
    with quiet_tracing(f"{export_format} export of the {deployable.learner} model"):
        if deployable.is_sequence:   # one step traced, repeated over the frames in ONNX: seconds, not minutes
            from .recurrent import trace_unrolled
            trace_unrolled(deployable, path, opset, trace)
        else:
            trace(deployable, path, opset)
    model = onnx.load(str(path))
    if export_format == "qcdq":
        fold_weight_quantizers(model)
    strip_trace_annotations(model)
    for key, value in model_metadata(deployable).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "fwdlearn"
    onnx.save(model, str(path))


def strip_trace_annotations(model) -> None:
    """Drop the exporter's per-node annotations (Python stack traces with local paths, FX names).

    They describe how the file was traced, not what it computes, and on an unrolled recurrent
    graph they outweigh the weights: 1.75 of a 1.88 MB file for a 46 k-parameter Bi-RNN.
    """
    for graph in [model.graph, *(f for f in model.functions)]:
        for node in graph.node:
            del node.metadata_props[:]


def report_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".report.json")


def default_format(deployable: Deployable) -> str:
    return "qcdq" if deployable.quantised else "float"


def export_onnx(deployable: Deployable, path: str | Path, export_format: str | None = None,
                opset: int | None = None, hls4ml: bool = False, learnable: bool = False) -> dict:
    """Write ``path`` and its report; return the report. Nothing is left behind on failure.

    Recurrent models (every format, ``learnable`` too) are unrolled over the example input's frames without
    tracing every frame (``recurrent.trace_unrolled``): the format's own exporter traces the prologue (every
    frame's input drive), one step of each direction and the read-out once, and the step's nodes are then
    repeated per frame in ONNX, each copy reading the same weight initialisers. The file computes what a
    whole-model trace computes (bit-identical logits in onnxruntime, float and QCDQ) and is checked the same
    way; a 183-frame FSDD Bi-RNN is built in seconds instead of minutes (``benchmarks/recurrent_export_time.py``).

    ``learnable`` (float): every weight stays an initialiser named as its parameter and read as such (no
    constant folding), so that on-device learning can run the graph with new weights (``export --update``).

    ``opset``: ``DEFAULT_OPSET`` when ``None``; it must lie in ``opset_range(export_format)`` (qonnx takes none).

    ``hls4ml`` (QONNX only): trace the graph with the layers hls4ml has (``data.transforms.accelerator_tracing``:
    each standardisation a ``LayerNormalization``, the triangle's mean a linear map), then also convert the file
    with hls4ml, compile its C++ model and compare it with PyTorch (``hls4ml_check.py``) before it is kept.
    """
    path = Path(path)
    export_format = export_format or default_format(deployable)
    if export_format not in FORMATS:
        raise ExportError(f"unknown export format {export_format!r} (choose from {', '.join(FORMATS)})")
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx")
    if deployable.quantised != (export_format != "float"):
        raise ExportError(f"{export_format} export is for {'float' if export_format == 'float' else 'quantised'} "
                          f"models; this one is {'quantised: use qcdq or qonnx' if deployable.quantised else 'float'}")
    if learnable and export_format != "float":
        raise ExportError("on-device learning (--update) is offered for float models only")
    if hls4ml and export_format != "qonnx":
        raise ExportError("the hls4ml check reads QONNX: use --format qonnx with --hls4ml")
    if hls4ml:
        from .hls4ml_check import check_supported
        check_supported(deployable)
    opset = check_opset(export_format, opset)
    verification: dict = {}

    def write(tmp: Path) -> None:
        try:
            checked(tmp)
        except ExportError as exc:   # name the file the user asked for, not the temporary one
            raise ExportError(str(exc).replace(str(tmp), str(path))) from None

    def checked(tmp: Path) -> None:
        if hls4ml:   # traced as layers hls4ml has: standardisation as layer normalisation, scaled into its table
            from ..data.transforms import accelerator_tracing
            from .hls4ml_check import layer_norm_scales
            with accelerator_tracing(layer_norm_scales(deployable)):
                _write(deployable, tmp, export_format, opset, learnable)
        else:
            _write(deployable, tmp, export_format, opset, learnable)
        check_onnx(tmp)
        verification["onnx_checker"] = "passed (full_check)"
        if export_format == "qonnx":
            verification["qonnx"] = compare_qonnx(tmp, deployable)
            if hls4ml:
                from .hls4ml_check import check_hls4ml
                verification["hls4ml"] = check_hls4ml(tmp, deployable, parity_inputs(deployable, 32)[0][0])
        else:
            verification["onnxruntime"] = compare_onnxruntime(tmp, deployable)

    atomic_write(path, write)
    report = export_report(path, deployable, export_format, verification)
    save_json(report, report_path(path))
    return report
