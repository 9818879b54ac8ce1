"""Layers hls4ml 1.3 lacks for SCFF graphs, added through its extension API (custom layer class, ONNX parser,
config and function templates, C++ source), registered once per process by ``register()``.

- **Layer normalisation** from ONNX: hls4ml has the layer (``nnet_layernorm.h``, a 1/sqrt table) and a PyTorch
  parser for it, but no ONNX parser. ``_parse_layer_norm`` builds it for an ONNX ``LayerNormalization`` over all
  of a sample's values (``seq_len`` 1), scale 1, shift 0: SCFF's per-sample standardisation as traced by
  ``data.transforms.accelerator_tracing``.
- **Reflect padding** (``ReflectPadding2D``): the SCFF convolutions pad their standardised input by
  reflection (SCFF Appendix D, the authors' release); hls4ml's ONNX ``Pad`` parser accepts constant zero padding
  only. ``_parse_pad`` keeps hls4ml's parser for that and builds ``ReflectPadding2D`` for ``mode="reflect"``
  on channels-last maps; its C++ is ``hardware/hls4ml/nnet_reflect_padding.h``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parents[2] / "hardware" / "hls4ml" / "nnet_reflect_padding.h"
if not SOURCE.exists():                                  # installed: fwdlearn.hardware is the hardware folder
    from .. import hardware as _hardware_package
    SOURCE = Path(_hardware_package.__file__).parent / "hls4ml" / "nnet_reflect_padding.h"

_registered = False


def register() -> None:
    """Add the layer-normalisation parser and the reflect-padding layer to hls4ml (idempotent)."""
    global _registered
    if _registered:
        return
    import importlib

    import hls4ml
    from hls4ml.model.layers import register_layer

    onnx_to_hls = importlib.import_module("hls4ml.converters.onnx_to_hls")   # the package re-exports a function

    if "LayerNormalization" not in onnx_to_hls.get_supported_onnx_layers():
        onnx_to_hls.register_onnx_layer_handler("LayerNormalization", _parse_layer_norm)
    zero_padding = onnx_to_hls.layer_handlers["Pad"]
    onnx_to_hls.layer_handlers["Pad"] = lambda node, names, shapes, graph: _parse_pad(
        zero_padding, node, names, shapes, graph)
    layer_class = _reflect_padding_class()
    register_layer("ReflectPadding2D", layer_class)
    for name in ("Vivado", "Vitis"):
        backend = hls4ml.backends.get_backend(name)
        config_template, function_template = _templates(layer_class)
        backend.register_template(config_template)
        backend.register_template(function_template)
        backend.register_source(SOURCE)
    _registered = True


def _parse_layer_norm(node, input_names, input_shapes, graph):
    from hls4ml.converters.onnx_to_hls import get_onnx_attribute

    size = int(np.prod(input_shapes[0][1:]))
    eps = float(get_onnx_attribute(node, "epsilon", 1e-5))
    return {"class_name": "LayerNormalization", "name": node.name, "inputs": input_names[:1],
            "outputs": list(node.output), "n_in": size, "seq_len": 1, "axis": 2,
            "gamma_data": np.ones(size, np.float32), "beta_data": np.zeros(size, np.float32),
            "epsilon_power_of_10": max(1, round(-np.log10(eps)))}


def _parse_pad(zero_padding, node, input_names, input_shapes, graph):
    """hls4ml's parser for zero padding; for reflect padding of a 4-D channels-last map, ``ReflectPadding2D``, its
    pads read from the node's ``pads`` attribute (``hls4ml_check`` moves them there: a constant input would be
    left as a dangling layer)."""
    from hls4ml.converters.onnx_to_hls import get_onnx_attribute

    mode = get_onnx_attribute(node, "mode")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "reflect":
        return zero_padding(node, input_names, input_shapes, graph)
    pads = get_onnx_attribute(node, "pads")
    if pads is None or len(input_shapes[0]) != 4 or len(pads) != 8 or pads[0] or pads[3] or pads[4] or pads[7]:
        raise RuntimeError(f"reflect padding {node.name}: only the rows and columns of a channels-last map")
    _, height, width, channels = input_shapes[0]
    top, left, bottom, right = pads[1], pads[2], pads[5], pads[6]
    if max(top, bottom) >= height or max(left, right) >= width:
        raise RuntimeError(f"reflect padding {node.name}: the padding must be smaller than the map")
    return {"class_name": "ReflectPadding2D", "name": node.name, "inputs": input_names[:1],
            "outputs": list(node.output), "data_format": "channels_last", "n_chan": channels,
            "in_height": height, "in_width": width, "out_height": height + top + bottom,
            "out_width": width + left + right, "pad_top": top, "pad_bottom": bottom, "pad_left": left,
            "pad_right": right}


def _reflect_padding_class():
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer

    class ReflectPadding2D(Layer):
        """Reflect padding of a channels-last map (``nnet::reflectpad2d_cl``)."""

        _expected_attributes = [Attribute(name) for name in (
            "in_height", "in_width", "out_height", "out_width", "n_chan", "pad_top", "pad_bottom", "pad_left",
            "pad_right")]

        def initialize(self):
            inp = self.get_input_variable()
            shape = [self.attributes["out_height"], self.attributes["out_width"], self.attributes["n_chan"]]
            self.add_output_variable(shape, precision=inp.type.precision)

    return ReflectPadding2D


def _templates(layer_class):
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.backends.vivado.passes.reshaping_templates import zeropad2d_config_template

    class ReflectPaddingConfigTemplate(LayerConfigTemplate):
        def __init__(self):
            super().__init__(layer_class)
            self.template = zeropad2d_config_template       # the same geometry: nnet::padding2d_config

        def format(self, node):
            return self.template.format(**self._default_config_params(node))

    class ReflectPaddingFunctionTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(layer_class, include_header=[f"nnet_utils/{SOURCE.name}"])
            self.template = "nnet::reflectpad2d_cl<{input_t}, {output_t}, {config}>({input}, {output});"

        def format(self, node):
            return self.template.format(**self._default_function_params(node))

    return ReflectPaddingConfigTemplate, ReflectPaddingFunctionTemplate
