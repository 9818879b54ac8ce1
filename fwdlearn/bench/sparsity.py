"""A trained run's activation sparsity and synaptic operations on its real test split (``fwdlearn bench --checkpoint``).

The update-cost sweep builds untrained encoders on a uniform random batch: nothing in it is zero
but by chance, so its sparsity says nothing about a deployed model. This measures a checkpoint's
encoder instead, on the test split of the data set it was trained on, by NeuroBench's definitions
(``hardware/sparsity.py``): per layer the fraction of zero activations and the dense and effective
multiply-accumulates per inference. ``checkpoint_sparsity`` gives one model's entry;
``sparsity_document`` wraps entries as ``benchmarks/sparsity.py`` records them (``kind = "sparsity"``),
and ``sparsity_table`` prints one entry for people.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data import load_dataset
from ..errors import ConfigError
from ..export.deployable import build_encoder
from ..hardware.sparsity import measure_sparsity

DEFINITIONS = {
    "source": "NeuroBench (Yik et al., Nature Communications 16, 1545, 2025): ActivationSparsity, "
              "SynapticOperations (Dense, Effective_MACs) of ANN layers; fwdlearn.hardware.sparsity",
    "activation_sparsity": "fraction of the layer's passed-on outputs that are exactly zero, over all neurons "
                           "and samples (input_sparsity: the same of its raw input)",
    "dense_macs": "every multiply-accumulate of the weight with its input, per inference",
    "effective_macs": "those whose input and weight are both non-zero, counted on the raw input with an SCFF "
                      "layer's per-sample standardisation folded into a correction (correction_macs: mu (W 1), one per "
                      "output unit or channel)",
    "effective_macs_as_graph": "the same counted on the input as the literal graph feeds the weight "
                               "(standardised: about dense for SCFF)",
}


def spread_index(total: int, count: int | None) -> torch.Tensor:
    """``count`` indices spread evenly over ``0..total-1`` (every one if ``count`` is ``None`` or larger)."""
    if count is None or count >= total:
        return torch.arange(total)
    return torch.linspace(0, total - 1, count).round().long()


def checkpoint_sparsity(checkpoint: str | Path, data_dir: str | Path | None = None, samples: int | None = None) -> dict:
    """One model's entry: its run (preset, rule, data set) and ``measure_sparsity`` of its encoder on ``samples``
    test samples spread over the split (default: all of them)."""
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    checkpoint = Path(checkpoint)
    payload = load_checkpoint(checkpoint)
    config = payload["config"]
    encoder = build_encoder(payload, checkpoint)
    test = load_dataset(config.data.dataset, data_dir, holdout_speakers=tuple(config.data.holdout_speakers),
                        unlabelled=False).test
    index = spread_index(len(test), samples)
    lengths = None if test.lengths is None else test.lengths[index]
    quant = getattr(config, "quant", None)
    quantised = quant is not None and (quant.weight_bits or quant.act_bits)
    return {"preset": f"{config.name} ({quant.label()})" if quantised else config.name, "learner": config.learner,
            "dataset": config.data.dataset,
            "checkpoint": str(checkpoint), "finished": bool(payload["finished"]),
            "inputs": f"{config.data.dataset} test split, {len(index)} of {len(test)} samples",
            **measure_sparsity(encoder, test.x[index], lengths)}


def sparsity_document(models: list[dict], command: str = "") -> dict:
    """Entries as one results file (``kind = "sparsity"``), with the definitions they follow."""
    return {"kind": "sparsity", "command": command, "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "definitions": DEFINITIONS,
            "models": models}


def sparsity_table(entry: dict) -> str:
    """One model's rows and total, aligned for a terminal."""
    header = (f"{'layer':38s} {'standardisation':>15s} {'input 0s':>9s} {'output 0s':>9s} {'dense MAC':>13s} "
              f"{'effective MAC':>13s} {'+ correction':>12s} {'as graph':>13s} {'eff / dense':>11s}")

    def line(name: str, how: str, inputs: str, r: dict) -> str:
        with_correction = r["effective_macs"] + r["correction_macs"]
        ratio = with_correction / r["dense_macs"] if r["dense_macs"] else 0.0
        return (f"{name:38s} {how:>15s} {inputs:>9s} {r['activation_sparsity']:9.1%} {r['dense_macs']:13,.0f} "
                f"{r['effective_macs']:13,.0f} {r['correction_macs']:12,.0f} {r['effective_macs_as_graph']:13,.0f} "
                f"{ratio:11.3f}")

    lines = [f"{entry['preset']} ({entry['learner']}) on {entry['inputs']}; per inference, NeuroBench definitions",
             header]
    lines += [line(r["layer"], r["standardisation"], f"{r['input_sparsity']:.1%}", r) for r in entry["layers"]]
    lines.append(line("total", "", "", entry["total"]))
    return "\n".join(lines)
