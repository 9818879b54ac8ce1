"""The report written beside every export: what the graph contains and what one inference costs.

``macs_per_inference`` counts every product of one inference on the fixed-size graph (random input: the
count does not depend on the values). ``sparsity`` measures the encoder on real samples of the run's test
split (``sparsity_on_test_data``): activation sparsity per layer and dense and effective synaptic
operations per inference, by NeuroBench's definitions (``hardware/sparsity.py``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..hardware.ops import count_macs, count_parameters
from ..hardware.sparsity import measure_sparsity
from .deployable import Deployable
from .verify import parity_inputs, sample_inputs

SPARSITY_SAMPLES = 256   # test samples, spread over the split, the sparsity is measured on


def graph_operators(path: str | Path) -> tuple[dict[str, int], int]:
    """How many nodes of each ONNX operator type the file holds, and its default-domain opset."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items())), opset


def sparsity_on_test_data(deployable: Deployable, samples: int = SPARSITY_SAMPLES) -> dict:
    """The encoder's activation sparsity and synaptic operations per inference (``hardware.sparsity``) on up to
    ``samples`` test samples of the run's data set as the graph takes them (``verify.parity_inputs``: sequences
    cut to the frames it is unrolled over); not measured (and why) where the data set cannot be read here, since
    random inputs have no zeros to count."""
    inputs, description = parity_inputs(deployable, samples)
    if description.startswith("random"):
        return {"measured": False, "reason": f"needs real samples: {description}"}
    return {"measured": True, "inputs": description, **measure_sparsity(deployable.model.encoder, *inputs)}


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
        "sparsity": sparsity_on_test_data(deployable),
        "readout_test_accuracy": deployable.readout.test_accuracy,
        "verification": verification,
    }
