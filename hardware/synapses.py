"""Synaptic operations of one weight layer on one input, and the tallies they add up in (NeuroBench).

NeuroBench (Yik et al., "The neurobench framework for benchmarking neuromorphic computing algorithms
and systems", Nature Communications 16, 1545, 2025; arXiv:2304.04640; the ``neurobench`` package's
``SynapticOperations`` and ``ActivationSparsity`` metrics) defines, for the layers of an ANN:

- ``Dense`` synaptic operations: every multiply-accumulate of a layer's weight with its input, zero
  or not: what hardware without sparsity support performs (here ``hardware.ops.layer_macs``, the
  count the export report's ``macs_per_inference`` is made of);
- ``Effective_MACs``: only the multiply-accumulates whose input activation is non-zero. NeuroBench
  counts them by running a binary copy of the layer (non-zero weights set to 1, bias dropped) on a
  binary copy of its input (non-zero values set to 1) and summing the output, so a product counts
  when its input *and* its weight are non-zero (float weights are never exactly zero; a quantised
  layer's rounded ones may be). ``effective_products`` does exactly that with the layer's own
  operation: a dense layer gives, per sample, (non-zero inputs) x (non-zero weights of their
  columns); a convolution, for every output position and channel, the non-zero inputs inside its
  receptive field, its own zero padding counting as the zeros it is;
- activation sparsity: the fraction of neuron outputs that are exactly zero, over all neurons and
  all samples (``Tally``).

One difference, for convolutions with zero padding only (LAC-conv; SCFF pads by reflection before
its kernel): NeuroBench's Dense runs an all-ones copy of the layer on an all-ones input, so the
zero padding's products drop out of it; ``layer_macs`` counts them, as an accelerator computing the
padded map performs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.quant import effective_weight


def nonzero(t: torch.Tensor) -> torch.Tensor:
    """NeuroBench's binary copy: 1.0 where ``t`` is non-zero, else 0.0 (float64, so that sums stay exact)."""
    return (t != 0).to(torch.float64)


@torch.no_grad()
def effective_products(layer: nn.Module, inputs: torch.Tensor) -> int:
    """NeuroBench's ``Effective_MACs`` of one call of ``layer`` on ``inputs``: the products of its weight
    (quantised layers: the rounded weight they compute with) and ``inputs`` whose two factors are non-zero."""
    x, w = nonzero(inputs), nonzero(effective_weight(layer).detach())
    if isinstance(layer, nn.Linear):          # each non-zero input meets the non-zero weights of its column
        return round(float(x.reshape(-1, x.shape[-1]).sum(0) @ w.sum(0)))
    if isinstance(layer, nn.Conv2d):          # the layer's own padding (mode, size), stride, dilation, groups
        return round(float(nn.Conv2d._conv_forward(layer, x, w, None).sum()))
    if isinstance(layer, nn.ConvTranspose2d):
        return round(float(F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding,
                                              layer.groups, layer.dilation).sum()))
    raise TypeError(f"{type(layer).__name__} has no synaptic weight to count")


@dataclass
class Tally:
    """Zeros among the values seen: NeuroBench's activation sparsity is ``zeros / values``."""

    zeros: int = 0
    values: int = 0

    def add(self, t: torch.Tensor) -> None:
        self.zeros += int((t == 0).sum())
        self.values += t.numel()

    @property
    def sparsity(self) -> float:
        return self.zeros / self.values if self.values else 0.0


@dataclass
class SynapseTally:
    """One weight's synaptic operations, summed over every sample measured (see ``hardware.sparsity``).

    ``dense``: every product; ``effective``: products with a non-zero *raw* input (the standardisation
    folded, where a layer standardises: ``correction`` counts what the fold adds); ``as_graph``: products
    with a non-zero input as the literal graph feeds the weight (after standardisation).
    """

    dense: int = 0
    effective: int = 0
    correction: int = 0
    as_graph: int = 0


@dataclass
class WeightRow:
    """One weight's figures over the samples measured: its layer's raw input and passed-on output (tallies a
    Bi-RNN direction's two weights share), its synaptic operations, and how its standardisation was counted."""

    name: str
    module: str
    standardisation: str     # folded, in graph, none (``hardware.sparsity``)
    inputs: Tally
    outputs: Tally
    macs: SynapseTally

    MAC_FIELDS = {"dense_macs": "dense", "effective_macs": "effective", "correction_macs": "correction",
                  "effective_macs_as_graph": "as_graph"}

    def per_inference(self, samples: int) -> dict:
        """The row as JSON: sparsities, and operations per inference (the mean per sample)."""
        return {"layer": self.name, "module": self.module, "standardisation": self.standardisation,
                "input_sparsity": self.inputs.sparsity, "activation_sparsity": self.outputs.sparsity,
                **{name: getattr(self.macs, field) / samples for name, field in self.MAC_FIELDS.items()}}
