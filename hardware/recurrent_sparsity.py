"""Activation sparsity and synaptic operations of the SCFF Bi-RNN (``nn.local_birnn``), per real frame.

Each direction computes, at every step ``t`` of a sequence, ``h_t = ReLU(W_ih std(x_t) + W_hh std(h_(t-1)) + b)``
(at inference a sample is its own pair ``[x, x]``: the tied input weight's ``W_ih a + W_ih a`` is one product,
counted once). Counted over each sequence's real (unpadded) frames only, per direction and weight
(definitions: ``hardware.sparsity``, NeuroBench):

- input weights ``W_ih``: the MFCC frame (dense). A float layer's graph already folds the frame's
  standardisation (``W_ih std(x) = (W_ih x - mu W_ih 1) / sigma``), so its graph multiplies the raw frame;
- recurrent weights ``W_hh``: the previous state ``h_(t-1)`` (ReLU, sparse; zero at the first step),
  which the graph standardises (dense) before the weight; ``effective_macs`` counts the raw state with the
  standardisation folded, ``effective_macs_as_graph`` the standardised one;
- ``activation_sparsity``: the states ``h_t`` of every real step (both rows of a direction share them).

The raw states come from the direction's own ``sweep`` (pre-activations of every step, ``h_t = ReLU(z_t)``);
what the graph feeds each weight, from forward hooks on the two weight modules.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import DataError
from ..nn.local_birnn import LocalBiRNN, RecurrentDirection, check_sequences
from .synapses import SynapseTally, Tally, WeightRow, effective_products

DIRECTION_NAMES = ("forward", "backward")


def _folded(quantiser: nn.Module) -> str:
    """``folded`` unless the standardised input is rounded before the weight (``in graph``)."""
    return "folded" if isinstance(quantiser, nn.Identity) else "in graph"


class DirectionProbe:
    """Both weights of one direction: hooks count what the graph feeds them, ``measure`` the raw inputs."""

    def __init__(self, name: str, direction: RecurrentDirection):
        self.direction, states = direction, Tally()
        module = type(direction).__name__
        self.input = WeightRow(f"{name} direction, input weights", module, _folded(direction.input_quant),
                               Tally(), states, SynapseTally())
        self.recurrent = WeightRow(f"{name} direction, recurrent weights", module, _folded(direction.state_quant),
                                   Tally(), states, SynapseTally())
        self.real: torch.Tensor | None = None   # [N, T]: the batch's real frames
        self.step = 0

    def on_input(self, layer, args, output) -> None:
        """``W_ih`` on every frame of the batch at once ``[N, T, F]``: the real ones are counted."""
        self._graph(self.input, layer, args[0][self.real])

    def on_recurrent(self, layer, args, output) -> None:
        """``W_hh`` once per step on ``[N, hidden]``: the sequences still running are counted."""
        self._graph(self.recurrent, layer, args[0][self.real[:, self.step]])
        self.step += 1

    @staticmethod
    def _graph(row: WeightRow, layer: nn.Linear, inputs: torch.Tensor) -> None:
        as_graph = effective_products(layer, inputs)
        row.macs.dense += inputs.shape[0] * layer.in_features * layer.out_features
        row.macs.as_graph += as_graph
        if row.standardisation != "folded":     # folded: the raw input's count comes from ``measure``
            row.macs.effective += as_graph

    def attach(self) -> list:
        return [self.direction.input.register_forward_hook(self.on_input),
                self.direction.recurrent.register_forward_hook(self.on_recurrent)]

    def measure(self, network: LocalBiRNN, which: int, x: torch.Tensor, lengths: torch.Tensor) -> None:
        """Run the direction over a batch as ``LocalBiRNN.forward`` does, keeping every step's state."""
        steps = torch.arange(x.shape[1], device=x.device)
        self.real, self.step = steps[None, :] < lengths[:, None], 0
        k = torch.arange(x.shape[0], device=x.device)
        _, z = self.direction.sweep(network.drive(which, x, lengths, k, k, lengths), lengths)
        states = torch.relu(z)                                           # h_t at every real step
        previous = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)   # h_(t-1), h_(-1) = 0
        frames = x[self.real]                                            # the real frames, in either direction
        self.input.outputs.add(states[self.real])
        for row, weight, raw in ((self.input, self.direction.input, frames),
                                 (self.recurrent, self.direction.recurrent, previous[self.real])):
            row.inputs.add(raw)
            if row.standardisation == "folded":
                row.macs.effective += effective_products(weight, raw)
                row.macs.correction += raw.shape[0] * weight.out_features


def recurrent_rows(network: LocalBiRNN, x: torch.Tensor, lengths: torch.Tensor, batch_size: int) -> list[WeightRow]:
    """Two rows (input and recurrent weights) per direction, summed over ``x`` in batches, each batch cut to its
    longest sequence."""
    device = next(network.parameters()).device
    try:
        check_sequences(x, lengths, network.input_dim)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
        raise DataError(f"lengths must lie in 1..{x.shape[1]} (the frames given), got {int(lengths.min())}.."
                        f"{int(lengths.max())}")
    probes = [DirectionProbe(name, direction) for name, direction in zip(DIRECTION_NAMES, network.directions)]
    handles = [h for probe in probes for h in probe.attach()]
    try:
        for start in range(0, x.shape[0], batch_size):
            steps = lengths[start:start + batch_size]
            batch = x[start:start + batch_size, :int(steps.max())].to(device)
            for which, probe in enumerate(probes):
                probe.measure(network, which, batch, steps.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return [row for probe in probes for row in (probe.input, probe.recurrent)]
