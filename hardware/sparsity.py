"""Activation sparsity per layer and synaptic operations per inference, measured on real samples (NeuroBench).

``measure_sparsity(network, x[, lengths])`` runs the network whose ``forward`` returns per-layer
features (what ``eval.features.layer_features`` and the probe read: an SCFF MLP, SCFF CNN, the SCFF
Bi-RNN, a LAC encoder, an FF network) on the samples, with forward hooks on each layer and on its
weight module, and returns a JSON-ready dict: one row per weight and the totals, per inference (the
mean per sample). Definitions (NeuroBench, Yik et al. 2025; ``hardware/synapses.py``):

- ``activation_sparsity``: fraction of the layer's passed-on outputs that are exactly zero (what it
  sends to the next layer: SCFF's triangle or ReLU, pooled in a CNN; LAC's and FF's ReLU; the Bi-RNN's
  states at every real step); ``input_sparsity``: the same of its raw input, before any standardisation;
  ``total.activation_sparsity``: zeros over all neurons of all layers (each population once);
- ``dense_macs``: every multiply-accumulate of the weight with its input;
- ``effective_macs``: NeuroBench's ``Effective_MACs``, counted on the layer's **raw** input. An SCFF
  layer standardises every sample before its weight (``data.transforms.standardize``), and a
  standardised vector is dense, so the literal graph has no zero inputs. A chip computes the same
  thing from the raw, sparse input: ``W std(x) = (W x - mu (W 1)) / sigma``, the product with the raw
  ``x`` and a per-output correction (``W 1`` precomputed). ``correction_macs`` counts the products
  ``mu (W 1)``: one per output unit of a dense layer, one per channel of a convolution whose kernel
  never meets zero padding (SCFF pads by reflection before the kernel, so every window sums the same
  weights), else one per output value (``correction_products``). Subtracting them and scaling by
  ``1 / sigma`` are element-wise, like adding a bias (which NeuroBench does not count either) and the
  standardisation itself, and not counted.
  A paired layer's ``2 (W x + b)`` comes from one product, counted once. ``standardisation`` says how
  each row was counted: ``folded`` (as above), ``in graph`` (the standardised input is rounded before
  the weight, so the fold does not hold: the rounded input is what a chip multiplies, and
  ``effective_macs`` counts that) or ``none`` (LAC, FF: the input the weight sees, whose zeros are the
  raw input's; FF's length normalisation only scales a sample);
- ``effective_macs_as_graph``: NeuroBench's count on the input as the literal graph feeds the weight
  (standardised: about ``dense_macs`` for SCFF layers).

Recurrent networks are counted per frame over each sequence's real (unpadded) length
(``recurrent_sparsity.py``), so their ``dense_macs`` is less than the export report's
``macs_per_inference``, which counts every unrolled frame the fixed-length graph computes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DataError
from ..nn.blocks import LocalBlock
from ..nn.local_birnn import LocalBiRNN
from ..nn.paired_conv import PairedConv2d
from ..nn.paired_linear import PairedLinear
from .ops import WEIGHT_LAYERS, layer_macs
from .recurrent_sparsity import recurrent_rows
from .synapses import SynapseTally, Tally, WeightRow, effective_products

STANDARDISING = (PairedLinear, PairedConv2d)   # layers that standardise each sample before their weight (SCFF)
BATCH = 256


def standardisation(block: nn.Module) -> str:
    """``folded``, ``in graph`` or ``none`` (module docstring) for one layer."""
    if not isinstance(block, STANDARDISING):
        return "none"
    return "folded" if isinstance(block.input_quant, nn.Identity) else "in graph"


def raw_as_weighted(block: nn.Module, raw: torch.Tensor) -> torch.Tensor:
    """A standardising layer's raw input laid out as its weight multiplies the standardised one: flattened
    (``PairedLinear``), or reflect-padded like the standardised map (``PairedConv2d``: padding repeats values,
    so a padded copy of a zero is a zero)."""
    if isinstance(block, PairedConv2d):
        pad = block.spec.padding
        return F.pad(raw, (pad,) * 4, mode="reflect") if pad else raw
    return raw.flatten(1)


def correction_products(layer: nn.Module, output: torch.Tensor) -> int:
    """Products ``mu (W 1)`` the folded standardisation adds to one call: one per distinct ``W 1``, i.e. per output
    unit (dense), per channel (a convolution without zero padding: every window covers the whole kernel), or per
    output value (a zero-padded convolution, whose border windows cover less of it)."""
    unpadded = isinstance(layer, nn.Conv2d) and layer.padding in ("valid", (0, 0))
    return output.shape[0] * output.shape[1] if unpadded else output.numel()


def passed_on(block: nn.Module, output) -> torch.Tensor:
    """What a layer sends on: ``block.passed(output)`` for a local block (SCFF, FF: ``nn.blocks.LocalBlock``),
    the activity of a LAC hidden layer (the second item of its ``(reaction, activity)``)."""
    if isinstance(block, LocalBlock):
        return block.passed(output)
    return output[-1] if isinstance(output, tuple) else output


def weight_module(block: nn.Module, name: str) -> nn.Module:
    found = [m for m in block.modules() if isinstance(m, WEIGHT_LAYERS)]
    if len(found) != 1:
        raise DataError(f"{name} ({type(block).__name__}) holds {len(found)} weight layers; sparsity is counted for "
                        f"layers with one")
    return found[0]


class LayerProbe:
    """Hooks on one layer and its weight module that add each call to a ``WeightRow``."""

    def __init__(self, name: str, block: nn.Module):
        self.block, self.weight = block, weight_module(block, name)
        self.row = WeightRow(name, type(block).__name__, standardisation(block), Tally(), Tally(), SynapseTally())

    def on_weight(self, layer, args, output) -> None:
        macs, graph_input = self.row.macs, args[0]
        as_graph = effective_products(layer, graph_input)
        macs.dense += layer_macs(layer, graph_input, output)
        macs.as_graph += as_graph
        if self.row.standardisation == "folded":     # the raw input's count comes from the layer's hook
            macs.correction += correction_products(layer, output)
        else:
            macs.effective += as_graph

    def on_block(self, block, args, output) -> None:
        raw = args[0]
        self.row.inputs.add(raw)
        self.row.outputs.add(passed_on(block, output))
        if self.row.standardisation == "folded":
            self.row.macs.effective += effective_products(self.weight, raw_as_weighted(block, raw))

    def attach(self) -> list:
        return [self.weight.register_forward_hook(self.on_weight), self.block.register_forward_hook(self.on_block)]


def layer_rows(network: nn.Module, x: torch.Tensor, batch_size: int = BATCH) -> list[WeightRow]:
    """One row per layer of a feed-forward network (``network.layers``), summed over ``x`` in batches."""
    layers = getattr(network, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise DataError(f"{type(network).__name__} has no layers to measure (expected a network with .layers or "
                        f"a LocalBiRNN)")
    probes = [LayerProbe(f"layer {i + 1}", block) for i, block in enumerate(layers)]
    handles = [h for probe in probes for h in probe.attach()]
    device = next(network.parameters()).device
    try:
        for start in range(0, x.shape[0], batch_size):
            network(x[start:start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return [probe.row for probe in probes]


def _check_samples(network: nn.Module, x, lengths) -> None:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x) or x.dim() < 2 or not len(x):
        raise DataError(f"sparsity needs float samples [N, ...] with N >= 1, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}")
    recurrent = isinstance(network, LocalBiRNN)
    if recurrent and lengths is None:
        raise DataError("a recurrent network's sparsity needs the sequences' lengths")
    if not recurrent and lengths is not None:
        raise DataError(f"lengths apply to recurrent networks; {type(network).__name__} takes fixed-size samples")


@torch.no_grad()
def measure_sparsity(network: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None,
                     batch_size: int = BATCH) -> dict:
    """Per-layer activation sparsity and dense / effective synaptic operations per inference of ``network`` on
    samples ``x`` (``lengths`` for sequences), by NeuroBench's definitions (module docstring); JSON-ready."""
    _check_samples(network, x, lengths)
    was_training = network.training
    network.eval()
    try:
        if isinstance(network, LocalBiRNN):
            rows = recurrent_rows(network, x, lengths, batch_size)
        else:
            rows = layer_rows(network, x, batch_size)
    finally:
        network.train(was_training)
    return summary(rows, x.shape[0])


def summary(rows: list[WeightRow], samples: int) -> dict:
    """The rows per inference, and the totals: every population of neurons counted once."""
    populations = list({id(row.outputs): row.outputs for row in rows}.values())
    zeros, values = sum(p.zeros for p in populations), sum(p.values for p in populations)
    total = {name: sum(getattr(row.macs, field) for row in rows) / samples
             for name, field in WeightRow.MAC_FIELDS.items()}
    total["effective_plus_correction_macs"] = total["effective_macs"] + total["correction_macs"]
    total["effective_over_dense"] = total["effective_plus_correction_macs"] / total["dense_macs"] \
        if total["dense_macs"] else 0.0
    return {"samples": samples, "layers": [row.per_inference(samples) for row in rows],
            "total": {"activation_sparsity": zeros / values if values else 0.0, **total}}
