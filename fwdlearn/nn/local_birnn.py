"""A bidirectional ReLU recurrent layer for SCFF (section 3.5, Appendix E).

Each direction computes, at every step ``t`` of a pair sequence ``[a, b]``,

    z_t = W_ih std([a_t, b_t]) + W_hh std(h_(t-1)) + bias,      h_t = ReLU(z_t)

with the two halves' input weights tied (``W_1 = W_2 = W_ih``, Appendix A). Both the input frame
and the previous hidden state are standardised per sample at every step (Appendix E). The tied
form is computed from per-frame projections ``W_ih a_t`` and the frame sums, so every distinct
sequence is projected once, whether it appears in a positive or a negative pair:

    W_ih std([a_t, b_t]) = (W_ih a_t + W_ih b_t - 2 mu_t W_ih 1) / sigma_t

where ``mu_t`` and ``sigma_t`` are the mean and standard deviation of the concatenated frame.
At inference a sample is its own positive pair ``[x, x]``. The backward direction reads each
pair sequence reversed within its own length; the read-out is the final state of both
directions (``H_T`` and ``H*_0``), concatenated.

With a ``QuantConfig`` (``nn/quant.py``) both weights are quantised and so are both standardised
inputs of every step: each half of the standardised pair frame and the standardised previous
state are rounded to ``act_bits`` (one learned scale each), so the analytic form above gives way
to the explicit one, ``W_ih,q (q(std_a) + q(std_b)) + W_hh,q q(std(h_(t-1))) + bias``.

This module is the network only. Which gradients flow is the learner's business: SCFF
(``learners/scff_rnn.py``) detaches the state between steps; the BPTT baseline does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import EPS, standardize
from .quant import QuantConfig, effective_weight, input_quantizer, quant_linear


@dataclass(frozen=True)
class FrameStats:
    """Per-frame projections ``W_ih x_t`` (float layers) or the frames themselves (quantised ones), and
    the sums of ``x_t`` and ``x_t^2``, for ``[V, T, ...]`` views."""

    projection: torch.Tensor   # [V, T, hidden], or the frames [V, T, F] when quantised
    total: torch.Tensor        # [V, T]
    total_sq: torch.Tensor     # [V, T]
    features: int


def reversed_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``[E, steps]`` time indices reading each sequence backwards within its length.

    Positions past a sequence's end point at ``steps`` (one past the last frame), which callers
    pad with a zero frame.
    """
    t = torch.arange(steps, device=lengths.device)
    index = lengths[:, None] - 1 - t[None, :]
    return torch.where(index >= 0, index, torch.full_like(index, steps))


def forward_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``[E, steps]`` time indices reading each sequence forwards; past its end they point at ``steps``."""
    t = torch.arange(steps, device=lengths.device).expand(lengths.shape[0], steps)
    return torch.where(t < lengths[:, None], t, torch.full_like(t, steps))


def _gather_steps(values: torch.Tensor, views: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[views[e], index[e, t]]`` with a zero frame appended at time ``T`` (padding)."""
    padded = torch.cat([values, values.new_zeros(values.shape[0], 1, *values.shape[2:])], dim=1)
    return padded[views[:, None], index]


def _pair_moments(stats: FrameStats, left, right, left_steps, right_steps) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``1 / sqrt(var + eps)`` of each concatenated pair frame ``[a_t, b_t]``, ``[E, T, 1]`` each."""
    total = _gather_steps(stats.total, left, left_steps) + _gather_steps(stats.total, right, right_steps)
    total_sq = _gather_steps(stats.total_sq, left, left_steps) + _gather_steps(stats.total_sq, right, right_steps)
    n = 2 * stats.features
    mean = (total / n)[..., None]
    inv_std = torch.rsqrt((total_sq / n - mean[..., 0].square()).clamp_min(0.0) + EPS)[..., None]
    return mean, inv_std


def _hooked(layer: nn.Module) -> bool:
    """Whether a forward hook (its own or a global one) would see a call of ``layer``."""
    from torch.nn.modules import module
    return bool(layer._forward_hooks or layer._forward_pre_hooks or module._global_forward_hooks
                or module._global_forward_pre_hooks)


class RecurrentDirection(nn.Module):
    """One direction of the layer: tied input weight, recurrent weight, one bias (and, if quantised,
    the rounding of its two standardised inputs)."""

    def __init__(self, input_size: int, hidden_size: int, quant: QuantConfig | None = None):
        super().__init__()
        self.input = quant_linear(input_size, hidden_size, quant, bias=False)   # W_ih, shared by both halves
        self.recurrent = quant_linear(hidden_size, hidden_size, quant)           # W_hh and the bias
        self.input_quant = input_quantizer(quant)    # each standardised half of the pair frame
        self.state_quant = input_quantizer(quant)    # the standardised previous state
        self.quantised = quant is not None and quant.enabled
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.RNN``'s initialisation, U(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight and bias.

        It sets the balance between input drive and recurrent memory of the untrained network (and
        so of the random-weights baseline); ``nn.Linear``'s fan-in rule would make the 39-wide
        input weights 3.6x larger and the network forget within a few steps.
        """
        bound = self.hidden_size ** -0.5
        for parameter in (self.input.weight, self.recurrent.weight, self.recurrent.bias):
            nn.init.uniform_(parameter, -bound, bound)

    @property
    def hidden_size(self) -> int:
        return self.recurrent.out_features

    def _linear(self, layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """``layer`` as a function. Training a quantised layer computes its weight once per call
        (``effective_weight``: the same values as Brevitas); so does evaluation, with Brevitas' own weight
        (bit-identical to calling the layer, and a sweep over 183 frames no longer quantises the weight 183
        times). ONNX export, and a layer with hooks (operation counters), call the module itself, so that
        Brevitas writes its quantisers and the counters see every step."""
        if not self.quantised or torch.onnx.is_in_onnx_export():
            return layer
        if not self.training:
            if _hooked(layer):
                return layer
            weight = layer.quant_weight().value if hasattr(layer, "quant_weight") else layer.weight
        else:
            weight = effective_weight(layer)
        return lambda v: F.linear(v, weight, layer.bias)

    def frame_stats(self, x: torch.Tensor) -> FrameStats:
        """Project every frame of ``x`` (``[V, T, F]``) once (float), or keep the frames (quantised)."""
        return FrameStats(x if self.quantised else self.input(x), x.sum(-1), x.square().sum(-1), x.shape[-1])

    def pair_input(self, stats: FrameStats, left: torch.Tensor, right: torch.Tensor,
                   left_steps: torch.Tensor, right_steps: torch.Tensor) -> torch.Tensor:
        """``W_ih std([a_t, b_t])`` for examples made of views ``left``/``right`` read at the given steps.

        ``left``, ``right``: ``[E]`` view indices; ``*_steps``: ``[E, T]`` time indices. Returns ``[E, T, hidden]``.
        """
        a = _gather_steps(stats.projection, left, left_steps)
        b = _gather_steps(stats.projection, right, right_steps)
        mean, inv_std = _pair_moments(stats, left, right, left_steps, right_steps)
        if self.quantised:          # a, b are frames: standardise each half, round it, one tied projection
            halves = self.input_quant((a - mean) * inv_std) + self.input_quant((b - mean) * inv_std)
            return self._linear(self.input)(halves)
        row_sum = self.input.weight.sum(dim=1)                               # W_ih 1
        return (a + b - 2.0 * mean * row_sum) * inv_std

    @staticmethod
    def pair_frames(x: torch.Tensor, stats: FrameStats, left: torch.Tensor, right: torch.Tensor,
                    left_steps: torch.Tensor, right_steps: torch.Tensor) -> torch.Tensor:
        """``std(a_t) + std(b_t)`` with the pair's own statistics, ``[E, T, F]``: the input the tied weight
        ``W_ih`` multiplies (``W_ih std([a_t, b_t])`` is ``W_ih`` times it). A closed-form update's weight gradient
        is ``R^T`` times it (methods section 6)."""
        mean, inv_std = _pair_moments(stats, left, right, left_steps, right_steps)
        halves = _gather_steps(x, left, left_steps) + _gather_steps(x, right, right_steps)
        return (halves - 2.0 * mean) * inv_std

    def recurrent_map(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``s -> W_hh q(s) + bias`` for standardised states ``s`` (``q`` the identity when float)."""
        linear = self._linear(self.recurrent)
        return lambda state: linear(self.state_quant(state))

    def step(self, drive: torch.Tensor, state: torch.Tensor,
             recurrent: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Pre-activation ``z_t`` from the input drive and the (already standardised) previous state."""
        return drive + (recurrent or self.recurrent_map())(state)

    def advance(self, drive: torch.Tensor, h: torch.Tensor, active: torch.Tensor,
                recurrent: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step from state ``h`` (``[E, hidden]``) with input drive ``drive`` (``[E, hidden]``): the
        standardised previous state ``s``, the pre-activation ``z_t`` and the new state, ``ReLU(z_t)`` where
        ``active`` (``[E]``, bool: the sequence has not ended) and ``h`` unchanged elsewhere. ONNX export traces
        this step once and repeats it (``export/recurrent.py``)."""
        s = standardize(h)
        z = self.step(drive, s, recurrent)
        return s, z, torch.where(active[:, None], torch.relu(z), h)

    def run(self, drive: torch.Tensor, lengths: torch.Tensor, keep_states: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run over ``drive`` (``[E, T, hidden]``). Returns the state at each example's last step and,
        if asked, the standardised previous state fed to every step (``[E, T, hidden]``).

        A state stops changing once its sequence has ended, so the returned state is ``h_(L-1)``.
        Gradients flow through time here unless the caller runs it under ``torch.no_grad``.
        """
        h, states, _ = self._sweep(drive, lengths, keep_states, False)
        return h, states

    def sweep(self, drive: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``run`` keeping, for every step, the standardised previous state and the pre-activation ``z_t``
        (``[E, T, hidden]`` each): everything a closed-form update needs, from one pass over the sequence."""
        _, states, preactivations = self._sweep(drive, lengths, True, True)
        return states, preactivations

    def _sweep(self, drive, lengths, keep_states: bool, keep_preactivations: bool):
        e, steps, _ = drive.shape
        h = drive.new_zeros(e, self.hidden_size)
        recurrent = self.recurrent_map()
        inputs, preactivations = [], []
        for t in range(steps):
            s, z, h = self.advance(drive[:, t], h, t < lengths, recurrent)
            if keep_states:
                inputs.append(s)
            if keep_preactivations:
                preactivations.append(z)
        return (h, torch.stack(inputs, dim=1) if keep_states else None,
                torch.stack(preactivations, dim=1) if keep_preactivations else None)


class LocalBiRNN(nn.Module):
    """The bidirectional SCFF layer as an ordinary ``nn.Module``.

    ``forward(x, lengths)`` on ``[N, T, F]`` zero-padded sequences returns ``[features]``, a list
    with one ``[N, 2 * hidden]`` tensor: the final states of both directions for the positive
    pair ``[x, x]`` (the shape the probe and the MLP network share), each standardised as it
    would be before being fed to a next step (what the authors' release reads out).
    """

    def __init__(self, input_size: int, hidden_size: int, quant: QuantConfig | None = None):
        super().__init__()
        self.directions = nn.ModuleList([RecurrentDirection(input_size, hidden_size, quant),
                                         RecurrentDirection(input_size, hidden_size, quant)])

    @property
    def input_dim(self) -> int:
        return self.directions[0].input.in_features

    def drive(self, which: int, x: torch.Tensor, lengths: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
              pair_lengths: torch.Tensor) -> torch.Tensor:
        """Input drive of direction ``which`` (0 forward, 1 backward) for pairs ``[x[left], x[right]]``.

        Returns ``[E, T, hidden]``. A half shorter than its pair reads zeros past its own end, as a
        zero-padded concatenation does.
        """
        direction = self.directions[which]
        steps = self.pair_steps(which, x.shape[1], lengths, left, right, pair_lengths)
        return direction.pair_input(direction.frame_stats(x), left, right, *steps)

    @staticmethod
    def pair_steps(which: int, steps: int, lengths: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                   pair_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[E, steps]`` time indices each half of a pair is read at (direction ``which``; ``steps``: past its end)."""
        index = (forward_index if which == 0 else reversed_index)(pair_lengths, steps)
        pad = torch.full_like(index, steps)
        return (torch.where(index < lengths[left][:, None], index, pad),
                torch.where(index < lengths[right][:, None], index, pad))

    def drive_and_frames(self, which: int, x: torch.Tensor, lengths: torch.Tensor, left: torch.Tensor,
                         right: torch.Tensor, pair_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``drive`` (float layers) and the standardised pair frames ``W_ih`` multiplies in it (``pair_frames``)."""
        direction = self.directions[which]
        steps = self.pair_steps(which, x.shape[1], lengths, left, right, pair_lengths)
        stats = direction.frame_stats(x)
        return (direction.pair_input(stats, left, right, *steps),
                direction.pair_frames(x, stats, left, right, *steps))

    def drives(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Input drive of each direction for the positive pairs ``[x, x]`` (``[N, T, hidden]`` each)."""
        k = torch.arange(x.shape[0], device=x.device)
        return [self.drive(which, x, lengths, k, k, lengths) for which in range(len(self.directions))]

    @staticmethod
    def features(finals: list[torch.Tensor]) -> list[torch.Tensor]:
        """The read-out's input from the final state of each direction: each standardised, concatenated."""
        return [torch.cat([standardize(h) for h in finals], dim=1)]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        check_sequences(x, lengths, self.input_dim)
        lengths = lengths.to(x.device)
        k = torch.arange(x.shape[0], device=x.device)
        finals = [direction.run(self.drive(which, x, lengths, k, k, lengths), lengths)[0]   # one drive at a time
                  for which, direction in enumerate(self.directions)]
        return self.features(finals)


def check_sequences(x: torch.Tensor, lengths: torch.Tensor, features: int) -> None:
    """Reject input a recurrent layer cannot read, with a one-line ``ValueError``."""
    if not torch.is_floating_point(x) or x.dim() != 3:
        raise ValueError(f"expected float sequences [N, T, {features}], got {x.dtype} of shape {tuple(x.shape)}")
    if x.shape[-1] != features:
        raise ValueError(f"expected {features} features per step, got {x.shape[-1]}")
    if lengths.shape != (x.shape[0],) or lengths.dtype != torch.int64:
        raise ValueError(f"lengths must be int64 of shape [{x.shape[0]}], got {lengths.dtype} {tuple(lengths.shape)}")
