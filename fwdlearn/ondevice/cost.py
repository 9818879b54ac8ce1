"""The cost of one on-device update, read from its ONNX graph: multiply-accumulates and bytes moved.

MACs: every ``MatMul`` / ``Gemm`` (output elements times the shared dimension); element-wise work is not
counted (as ``fwdlearn bench`` counts an update). Bytes: ``bytes_in_out``, the graph's inputs read and outputs
written once (the batch, parameters and optimiser state: what any implementation must move), and
``bytes_moved``, every operator's inputs read and outputs written once at their inferred shapes (an upper bound:
a fused device kernel keeps intermediates on chip).
"""

from __future__ import annotations

import math

BYTES = {1: 4, 7: 8, 9: 1, 11: 8, 6: 4, 10: 2}   # onnx TensorProto: FLOAT, INT64, BOOL, DOUBLE, INT32, FLOAT16


def graph_cost(model) -> dict:
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = inferred.graph
    shapes = {}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        kind = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim]
        shapes[value.name] = (dims, kind.elem_type)
    for init in graph.initializer:
        shapes[init.name] = (list(init.dims), init.data_type)
    macs, moved, unknown = 0, 0, 0
    for node in graph.node:
        for name in list(node.input) + list(node.output):
            size = _bytes(shapes.get(name))
            if size is None:
                unknown += bool(name)
            else:
                moved += size
        if node.op_type in ("MatMul", "Gemm"):
            out, first = shapes.get(node.output[0]), shapes.get(node.input[0])
            if out is None or first is None or None in out[0] or None in first[0]:
                unknown += 1
                continue
            transposed = node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)
            inner = first[0][-2] if transposed else first[0][-1]
            macs += math.prod(out[0]) * inner
    ends = [v.name for v in list(graph.input) + list(graph.output)]
    in_out = sum(_bytes(shapes.get(name)) or 0 for name in ends)
    return {"macs": int(macs), "bytes_in_out": int(in_out), "bytes_moved": int(moved),
            "tensors_of_unknown_shape": int(unknown)}


def _bytes(entry) -> int | None:
    if entry is None or None in entry[0]:
        return None
    return math.prod(entry[0]) * BYTES.get(entry[1], 4)
