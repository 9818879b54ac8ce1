"""Export a trained run (encoder plus its linear read-out) for deployment, verified in real runtimes.

``fwdlearn export CHECKPOINT`` (``cli.py``) calls ``load_deployable`` then ``export_float_onnx``.
"""

from .deployable import DeployedClassifier, Deployable, load_deployable
from .onnx_export import DEFAULT_OPSET, export_float_onnx, report_path
from .verify import FLOAT_TOLERANCE, check_onnx, compare_onnxruntime

__all__ = ["DeployedClassifier", "Deployable", "load_deployable", "export_float_onnx", "report_path",
           "DEFAULT_OPSET", "check_onnx", "compare_onnxruntime", "FLOAT_TOLERANCE"]
