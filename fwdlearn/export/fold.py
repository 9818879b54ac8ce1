"""Store a QCDQ graph's weights as integers: fold ``QuantizeLinear -> Clip`` of constant tensors.

Brevitas' QCDQ export keeps each weight in float32 and quantises it inside the graph
(``QuantizeLinear -> Clip -> DequantizeLinear``) at every inference. For a deployer the integer
weights are the model: this pass computes them once (same rounding as ONNX: half to even, then
the zero point, saturation, and the clip to the layer's narrow range) and leaves
``DequantizeLinear`` reading an int8 initialiser, which is how runtimes expect a quantised
weight. A 4-bit layer is stored in int8 containers (ONNX's int4 type needs opset 21).
"""

from __future__ import annotations

import numpy as np


def _constant(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim == 1 and scale.size > 1:   # per-axis
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    q = np.rint(x / scale) + zero_point.astype(np.int32)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def fold_weight_quantizers(model) -> int:
    """Rewrite ``model`` in place; returns how many weights now are integer initialisers."""
    from onnx import numpy_helper

    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded, removed, dropped_inputs = 0, [], set()
    for node in list(model.graph.node):
        if node.op_type != "QuantizeLinear":
            continue
        weight = _constant(model, node.input[0])
        scale = _constant(model, node.input[1])
        zero_point = _constant(model, node.input[2]) if len(node.input) > 2 else None
        if weight is None or scale is None or zero_point is None or weight.ndim < 2:
            continue   # an activation, or a weight the exporter computes: leave it
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        q = _quantize(weight, scale, zero_point, axis)
        tail = node.output[0]
        nexts = consumers.get(tail, [])
        if len(nexts) == 1 and nexts[0].op_type == "Clip":
            clip = nexts[0]
            low = _constant(model, clip.input[1]) if len(clip.input) > 1 and clip.input[1] else None
            high = _constant(model, clip.input[2]) if len(clip.input) > 2 and clip.input[2] else None
            q = np.clip(q, low if low is not None else q.min(), high if high is not None else q.max()).astype(q.dtype)
            removed.append(clip)
            tail = clip.output[0]
        name = node.input[0] + "_int"
        model.graph.initializer.append(numpy_helper.from_array(q, name))
        for consumer in consumers.get(tail, []):
            consumer.input[:] = [name if i == tail else i for i in consumer.input]
        removed.append(node)
        dropped_inputs.add(node.input[0])
        folded += 1
    for node in removed:
        model.graph.node.remove(node)
    still_used = {i for n in model.graph.node for i in n.input}
    for init in list(model.graph.initializer):
        if init.name in dropped_inputs and init.name not in still_used:
            model.graph.initializer.remove(init)
    for graph_input in list(model.graph.input):   # Brevitas lists initialisers as graph inputs too
        if graph_input.name in dropped_inputs and graph_input.name not in still_used:
            model.graph.input.remove(graph_input)
    return folded
