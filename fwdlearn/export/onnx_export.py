"""Float ONNX export of a trained run, verified before it is written.

The graph is traced from the PyTorch module (TorchScript exporter) with a dynamic batch
dimension. Recurrent models are unrolled over a fixed number of frames (the inputs are
zero-padded to it and the true ``lengths`` passed beside them), which every ONNX runtime and
edge compiler accepts, unlike a data-dependent loop. The file is written to a temporary name,
checked (``verify.check_onnx``), run in onnxruntime against PyTorch
(``verify.compare_onnxruntime``), and only then renamed into place; a report
(``<name>.report.json``) goes beside it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..atomic import atomic_write, save_json
from ..errors import ExportError
from .deployable import Deployable
from .metadata import model_metadata
from .report import export_report
from .verify import check_onnx, compare_onnxruntime

DEFAULT_OPSET = 18


def _trace_to_onnx(deployable: Deployable, path: Path, opset: int) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer warnings about Python-side shape checks
        try:
            torch.onnx.export(deployable.model, deployable.example_inputs, str(path), dynamo=False,
                              input_names=deployable.input_names, output_names=["logits"],
                              dynamic_axes={name: {0: "batch"} for name in deployable.input_names + ["logits"]},
                              opset_version=opset)
        except Exception as exc:  # the exporter raises many types
            raise ExportError(f"ONNX export of the {deployable.learner} model failed "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    model = onnx.load(str(path))
    for key, value in model_metadata(deployable).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "fwdlearn"
    onnx.save(model, str(path))


def report_path(path: Path) -> Path:
    return path.with_name(path.stem + ".report.json")


def export_float_onnx(deployable: Deployable, path: str | Path, opset: int = DEFAULT_OPSET) -> dict:
    """Write ``path`` (float32 ONNX) and its report; return the report. Nothing is left behind on failure."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx")
    verification: dict = {}

    def write(tmp: Path) -> None:
        _trace_to_onnx(deployable, tmp, opset)
        check_onnx(tmp)
        verification["onnx_checker"] = "passed (full_check)"
        verification["onnxruntime"] = compare_onnxruntime(tmp, deployable)

    atomic_write(path, write)
    report = export_report(path, deployable, "onnx-float32", opset, verification)
    save_json(report, report_path(path))
    return report
