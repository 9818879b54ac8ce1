"""The edge-accelerator check: convert a QONNX file with hls4ml, compile its C++ model, compare with PyTorch.

hls4ml (Vitis backend, ``io_parallel``) turns the cleaned QONNX graph into HLS C++ and
``compile()`` builds it with g++ into a library whose ``predict`` is bit-accurate to what the
FPGA would compute. Its quantised tensors come from the graph's ``Quant`` nodes; the rest
(batch-norm scale and shift, accumulators) use ``PRECISION``: with hls4ml's usual
``ap_fixed<16,6>`` or ``<32,16>`` the folded batch norm of the LAC encoders loses enough bits
that logits move by up to 8 output steps (measured), with ``<48,24>`` they stay within one.

Supported: graphs of Gemm/MatMul, Conv, pooling, padding, BatchNormalization, ReLU, Quant and
LayerNormalization nodes: the LAC-MLP encoder, and the SCFF MLP and CNN traced for accelerators
(``data.transforms.accelerator_tracing``): each layer's per-sample standardisation becomes hls4ml's layer
normalisation (no scale or shift), the triangle's across-channel mean a dense map or a 1x1 convolution, the
reflect padding a layer added to hls4ml (``hls4ml_layers.py``, with the ONNX parser of layer normalisation hls4ml
lacks). hls4ml's layer normalisation (``nnet_layernorm.h``) reads ``1/sqrt`` of the
variance from a table over ``[0, 1)``: each standardisation's input is scaled by a power of two, measured on
training samples, that brings its largest variance to at most ``VARIANCE_HEADROOM`` (the result is unchanged:
``std(c x) = std(x)`` with ``eps`` scaled by ``c²``), and the table has ``LAYER_NORM_TABLE`` entries of
``LAYER_NORM_TABLE_PRECISION`` (chosen by measurement: hls4ml's default 4,096 entries of ``ufixed<8,5>`` move
logits by many output steps).
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ExportError
from ..registry import get_rule, rules
from .deployable import Deployable
from .hls4ml_layers import register as register_layers
from .verify import judge

PRECISION = "fixed<48,24>"
LAYER_NORM_TABLE = 1 << 18
LAYER_NORM_TABLE_PRECISION = "ufixed<32,12>"
VARIANCE_HEADROOM = 0.5
CALIBRATION_SAMPLES = 512
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
        raise ExportError(f"{path}: hls4ml has no layer for {', '.join(found)} (per-sample standardisation "
                          f"traced as reductions: export with accelerator_tracing)")
    _drop_unit_layer_norm_scales(model, path)
    with quiet():
        model = model.transform(ConvertToChannelsLastAndClean())
        _pad_channels_last(model)
        model = cleanup_model(model.transform(GemmToMatMul()))
    _reflect_pads_as_attribute(model)
    return model


def _reflect_pads_as_attribute(model) -> None:
    """Each reflect ``Pad`` keeps its pads as an attribute and loses the constant input (``hls4ml_layers``)."""
    from onnx import helper

    for pad in [n for n in model.graph.node if n.op_type == "Pad"]:
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        if mode == "reflect":
            constant = pad.input[1]
            pad.attribute.append(helper.make_attribute("pads", [int(v) for v in model.get_initializer(constant)]))
            del pad.input[1:]
            if not model.find_consumers(constant):
                model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == constant))


TO_CHANNELS_FIRST, TO_CHANNELS_LAST = [0, 3, 1, 2], [0, 2, 3, 1]


def _pad_channels_last(model) -> None:
    """``Transpose`` to channels-first, ``Pad``, ``Transpose`` back (qonnx moves no transpose through a padding)
    becomes one ``Pad`` of the channels-last map, its pads reordered: hls4ml reads padding channels-last only."""
    from onnx import numpy_helper

    def perm(node) -> list[int]:
        return [list(a.ints) for a in node.attribute if a.name == "perm"][0]

    for pad in [n for n in model.graph.node if n.op_type == "Pad"]:
        before, after = model.find_producer(pad.input[0]), model.find_consumers(pad.output[0]) or []
        if before is None or before.op_type != "Transpose" or perm(before) != TO_CHANNELS_FIRST or len(after) != 1 \
                or after[0].op_type != "Transpose" or perm(after[0]) != TO_CHANNELS_LAST:
            continue
        pads = model.get_initializer(pad.input[1])
        n, c, h, w, n_, c_, h_, w_ = (int(v) for v in pads)
        name = f"{pad.name}_channels_last_pads"
        model.graph.initializer.append(numpy_helper.from_array(np.array([n, h, w, c, n_, h_, w_, c_], np.int64),
                                                               name))
        pad.input[0], pad.input[1] = before.input[0], name
        for consumer in model.find_consumers(after[0].output[0]) or []:
            consumer.input[:] = [pad.output[0] if i == after[0].output[0] else i for i in consumer.input]
        model.set_tensor_shape(pad.output[0], model.get_tensor_shape(after[0].output[0]))
        if not model.find_consumers(before.output[0]):
            model.graph.node.remove(before)
        model.graph.node.remove(after[0])


def _drop_unit_layer_norm_scales(model, path: Path) -> None:
    """Remove each ``LayerNormalization``'s scale (all ones) and shift (zeros) inputs: hls4ml's layer takes one
    input, and these constants would be left as dangling layers. Anything but ones and zeros is refused."""
    for node in model.graph.node:
        if node.op_type != "LayerNormalization":
            continue
        extra = [model.get_initializer(name) for name in node.input[1:]]
        if any(value is None for value in extra) or not np.all(extra[0] == 1) or \
                (len(extra) > 1 and not np.all(extra[1] == 0)):
            raise ExportError(f"{path}: layer normalisation {node.name} has a learned scale or shift; the hls4ml "
                              f"check covers the per-sample standardisation only")
        del node.input[1:]


def check_hls4ml(path: str | Path, deployable: Deployable, inputs: torch.Tensor, workdir: str | Path | None = None,
                 precision: str = PRECISION) -> dict:
    """Convert and compile ``path`` (QONNX) with hls4ml; its logits on ``inputs`` must be within one
    output step of PyTorch's. Returns the comparison; raises ``ExportError`` if it fails."""
    got, expected, step, settings = hls4ml_logits(path, deployable, inputs, workdir, precision)
    import hls4ml
    runtime = f"hls4ml {hls4ml.__version__} C++ (Vitis, io_parallel, g++)"
    return {**judge(path, runtime, expected, got, step), **settings}


def check_supported(deployable: Deployable) -> None:
    """A one-line ``ExportError`` for a model the check cannot convert, before anything is traced."""
    try:
        import hls4ml  # noqa: F401
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


def hls4ml_logits(path: str | Path, deployable: Deployable, inputs: torch.Tensor, workdir: str | Path | None = None,
                  precision: str = PRECISION) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """The compiled C++ model's logits on ``inputs``, PyTorch's, the output step, and the settings used."""
    check_supported(deployable)
    import hls4ml
    model = _prepare(Path(path))
    register_layers()
    owned = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="fwdlearn-hls4ml-")) if owned else Path(workdir)
    try:
        with quiet():
            config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis",
                                                                default_precision=precision)
            _configure_layer_norms(config, model, precision)
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
    norms = [n.name for n in model.graph.node if n.op_type == "LayerNormalization"]
    settings = {"precision": precision,
                **({"layer_norm": {"layers": len(norms), "table_entries": LAYER_NORM_TABLE,
                                   "table_precision": LAYER_NORM_TABLE_PRECISION}} if norms else {})}
    return (np.asarray(got, dtype=expected.dtype).reshape(expected.shape), expected, deployable.model.output_step(),
            settings)


def layer_norm_scales(deployable: Deployable, samples: int = CALIBRATION_SAMPLES) -> list[float]:
    """One power of two per standardisation of a forward pass (``data.transforms.accelerator_tracing``) that
    brings the largest variance seen on ``samples`` training samples of the run's data set into
    ``(VARIANCE_HEADROOM / 4, VARIANCE_HEADROOM]``: inside hls4ml's 1/sqrt table, with room for unseen inputs."""
    from ..data import load_dataset
    from ..data.transforms import recorded_variances
    from .verify import fit_to_graph

    data = deployable.config.data
    try:
        split = load_dataset(data.dataset, None, holdout_speakers=data.holdout_speakers, unlabelled=False).train
        index = torch.linspace(0, len(split) - 1, min(samples, len(split))).round().long()
        inputs = fit_to_graph(deployable, split.x[index], None if split.lengths is None else split.lengths[index])
    except Exception as exc:  # noqa: BLE001 - an unreadable data set: say so in one line
        raise ExportError(f"the hls4ml check calibrates its layer normalisations on {data.dataset} training "
                          f"samples, which cannot be read here ({type(exc).__name__}: {exc})") from None
    with torch.no_grad(), recorded_variances() as variances:
        deployable.model(*inputs)
    return [2.0 ** math.floor(0.5 * math.log2(VARIANCE_HEADROOM / v)) if v > 0 else 1.0 for v in variances]


def _configure_layer_norms(config: dict, model, precision: str) -> None:
    """Every layer normalisation: the 1/sqrt table's size and precision, and wide accumulators."""
    for node in model.graph.node:
        if node.op_type != "LayerNormalization":
            continue
        layer = config["LayerName"].setdefault(node.name, {})
        layer["TableSize"] = LAYER_NORM_TABLE
        layer["TableRangePower2"] = 0
        layer["table_t"] = LAYER_NORM_TABLE_PRECISION      # the backend's attributes, read as they are named
        layer["accum_t"] = precision
