"""Export a trained run (encoder plus its linear read-out) for deployment, verified in real runtimes.

``fwdlearn export CHECKPOINT`` (``cli.py``) calls ``load_deployable`` then ``export_onnx``.
"""

from .deployable import DeployedClassifier, Deployable, load_deployable
from .onnx_export import DEFAULT_OPSET, FORMATS, default_format, export_onnx, report_path
from .verify import FLOAT_TOLERANCE, check_onnx, compare_onnxruntime, compare_qonnx

__all__ = ["DeployedClassifier", "Deployable", "load_deployable", "export_onnx", "report_path",
           "DEFAULT_OPSET", "FORMATS", "default_format", "check_onnx", "compare_onnxruntime", "compare_qonnx",
           "FLOAT_TOLERANCE"]
