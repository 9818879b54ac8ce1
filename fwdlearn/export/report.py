"""The report written beside every export: what the graph contains and what one inference costs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..hardware.ops import count_macs, count_parameters
from .deployable import Deployable
from .verify import sample_inputs


def graph_operators(path: str | Path) -> tuple[dict[str, int], int]:
    """How many nodes of each ONNX operator type the file holds, and its default-domain opset."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items())), opset


def export_report(path: str | Path, deployable: Deployable, export_format: str, verification: dict) -> dict:
    """Operators, parameters, bytes and MACs per inference (one sample) of an exported model."""
    operators, opset = graph_operators(path)
    one = sample_inputs(deployable, 1, seed=0)
    if deployable.is_sequence:   # the full unrolled length: the cost the fixed-length graph always pays
        one = (one[0], one[1].clone().fill_(one[0].shape[1]))
    return {
        "file": str(Path(path).name),
        "format": export_format,
        "quantisation": deployable.config.quant.label(),
        "opset": opset,
        "learner": deployable.learner,
        "dataset": deployable.readout.dataset,
        "inputs": {name: [None if i == 0 else int(d) for i, d in enumerate(t.shape)]
                   for name, t in zip(deployable.input_names, deployable.example_inputs)},
        "operators": operators,
        "parameters": count_parameters(deployable.model),
        "model_bytes": Path(path).stat().st_size,
        "macs_per_inference": count_macs(deployable.model, *one),
        "readout_test_accuracy": deployable.readout.test_accuracy,
        "verification": verification,
    }
