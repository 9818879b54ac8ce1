"""The edge-accelerator check: convert a QONNX file with hls4ml, compile its C++ model, compare with PyTorch.

hls4ml (Vitis backend, ``io_parallel``) turns the cleaned QONNX graph into HLS C++ and
``compile()`` builds it with g++ into a library whose ``predict`` is bit-accurate to what the
FPGA would compute. Its quantised tensors come from the graph's ``Quant`` nodes; the rest
(batch-norm scale and shift, accumulators) use ``PRECISION``: with hls4ml's usual
``ap_fixed<16,6>`` or ``<32,16>`` the folded batch norm of the LAC encoders loses enough bits
that logits move by up to 8 output steps (measured), with ``<48,24>`` they stay within one.

Supported: fully connected graphs of Gemm/MatMul, BatchNormalization, ReLU and Quant nodes (the
LAC-MLP encoder). SCFF's per-sample standardisation (ReduceMean, Sqrt, Reciprocal) has no hls4ml layer,
so SCFF graphs are refused with a one-line error naming the operators.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ExportError
from ..registry import get_rule, rules
from .deployable import Deployable
from .verify import judge

PRECISION = "fixed<48,24>"
UNSUPPORTED = ("ReduceMean", "Sqrt", "Reciprocal", "Pow", "Div", "Where", "Gather")


@contextlib.contextmanager
def quiet():
    """hls4ml prints the whole topology and warns about ONNX versions; keep the terminal for results."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _prepare(path: Path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    with quiet():
        model = cleanup_model(ModelWrapper(str(path)))
    found = sorted({n.op_type for n in model.graph.node} & set(UNSUPPORTED))
    if found:
        raise ExportError(f"{path}: hls4ml has no layer for {', '.join(found)} (per-sample standardisation); "
                          f"the hls4ml check supports the LAC-MLP encoder")
    with quiet():
        model = model.transform(ConvertToChannelsLastAndClean())
        return cleanup_model(model.transform(GemmToMatMul()))


def check_hls4ml(path: str | Path, deployable: Deployable, inputs: torch.Tensor, workdir: str | Path | None = None,
                 precision: str = PRECISION) -> dict:
    """Convert and compile ``path`` (QONNX) with hls4ml; its logits on ``inputs`` must be within one
    output step of PyTorch's. Returns the comparison; raises ``ExportError`` if it fails."""
    try:
        import hls4ml
    except ImportError:
        raise ExportError("the hls4ml check needs hls4ml: pip install hls4ml") from None
    if not get_rule(deployable.learner).hls4ml:
        able = ", ".join(name for name, rule in rules().items() if rule.hls4ml)
        raise ExportError(f"the hls4ml check covers {able}; {deployable.learner} is not checked")
    if deployable.config.quant.per_channel:
        raise ExportError("the hls4ml check needs per-tensor weight scales (hls4ml 1.3's QONNX reader fails on "
                          "per-channel ones); train without --per-channel")
    if shutil.which("g++") is None:
        raise ExportError("the hls4ml check needs g++ to compile the C++ model")
    model = _prepare(Path(path))
    owned = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="fwdlearn-hls4ml-")) if owned else Path(workdir)
    try:
        with quiet():
            config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis",
                                                                default_precision=precision)
            hls_model = hls4ml.converters.convert_from_onnx_model(model, output_dir=str(workdir / "hls4ml_prj"),
                                                                  io_type="io_parallel", backend="Vitis",
                                                                  hls_config=config)
            hls_model.compile()
            x = inputs.detach().numpy().astype(np.float32)
            got = hls_model.predict(np.ascontiguousarray(x.reshape(x.shape[0], -1)))
    except ExportError:
        raise
    except Exception as exc:  # hls4ml raises many types
        raise ExportError(f"{path}: hls4ml could not convert or compile the model "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)
    with torch.no_grad():
        expected = deployable.model(inputs).numpy()
    step = deployable.model.output_step()
    runtime = f"hls4ml {hls4ml.__version__} C++ (Vitis, io_parallel, g++)"
    figures = judge(path, runtime, expected, np.asarray(got, dtype=expected.dtype).reshape(expected.shape), step)
    return {**figures, "precision": precision}
