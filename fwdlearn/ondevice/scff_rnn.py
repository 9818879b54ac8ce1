"""SCFF's Bi-RNN update (``scff-rnn``) as an inference graph: one stage per direction (methods section 6, SCFF
section 3.5, Eq. 4, Appendix E).

Stage ``forward`` / ``backward`` takes a batch of ``B`` zero-padded sequences of ``T`` frames (``T`` fixed in the
graph), their lengths and the negative blocks' shifts, and does what ``SCFFRNNLearner.fused_update`` does for that
direction:

- pairs as ``pair_examples``: views ``left = [k, k, ...]``, ``right = [k, (k + s_1) mod B, ...]``, a pair lasting as
  long as its longer half; the backward direction reads each pair reversed within the pair's length
  (``reversed_index``), a half past its own end reads zeros;
- the tied input drive ``W_ih std([a_t, b_t]) = (W_ih a_t + W_ih b_t - 2 mu_t W_ih 1) / sigma_t`` and the
  standardised pair frame ``std(a_t) + std(b_t)`` it multiplies;
- the sweep unrolled over the ``T`` steps: ``z_t = drive_t + W_hh std(h_(t-1)) + b``, ``h_t = ReLU(z_t)`` while
  the pair lasts, ``h`` held past its end (no gradient through time: the states are constants of the update);
- per step ``G_t = mean_m ReLU(z_t)^2``; per pair ``e`` of ``L_e`` real steps, positives first:

      L = mean_pos [ 1/L_e sum_t softplus(theta_pos - G_t) + lambda ||G||_2 ]
          + mean_neg [ 1/L_e sum_t softplus(G_t - theta_neg) ]
      dL/dG_t = (-sigmoid(theta_pos - G_t) / L_e + lambda G_t / ||G||) / B            (positives)
      dL/dG_t = sigmoid(G_t - theta_neg) / L_e / (negatives B)                          (negatives)
      R_t = dL/dz_t = 2 dL/dG_t ReLU(z_t) / H  on real steps, 0 past the pair's end

- ``dW_hh = R^T std(h_(t-1))``, ``dW_ih = R^T (std(a_t) + std(b_t))``, ``db = sum R`` over every step and pair.

Every gather is a flat ``index_select`` with indices computed in the graph; the loop over ``T`` unrolls at export;
nothing depends on the data's values but through masks (``Where``), so the graph is static.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import EPS, standardize
from ..errors import ExportError
from ..objectives.scff import pair_examples
from ..rules.scff_rnn import SCFFRNNLearner
from .stage import DataInput, UpdateStage

DIRECTIONS = ("forward", "backward")     # the learner's parameter groups (rules.scff_rnn.DIRECTIONS)


def _name(which: int, what: str) -> str:
    return f"directions.{which}.{what}"


def _gather_steps(values: torch.Tensor, views: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[views[e], index[e, t]]`` (``[V, T, ...]`` values), with a zero frame at time ``T`` (padding), as
    ``nn.local_birnn._gather_steps`` but as one flat ``index_select``."""
    v, steps = values.shape[0], values.shape[1]
    padded = torch.cat([values, values.new_zeros(v, 1, *values.shape[2:])], dim=1)
    flat = padded.reshape(v * (steps + 1), *values.shape[2:])
    rows = views[:, None] * (steps + 1) + index                     # [E, T]
    picked = torch.index_select(flat, 0, rows.reshape(-1))
    return picked.reshape(*index.shape, *values.shape[2:])


class SCFFDirectionUpdate(UpdateStage):
    """Direction ``which`` (0 forward, 1 backward) of a float ``LocalBiRNN``."""

    def __init__(self, learner, which: int, steps: int, features: int):
        super().__init__()
        config = learner.config
        if config.quant.enabled:
            raise ExportError("the on-device update of a quantised scff-rnn is not available yet: export a float run")
        if steps < 1:
            raise ExportError(f"scff-rnn's on-device update needs at least one frame per sequence, got steps={steps}")
        self.which, self.name = which, DIRECTIONS[which]
        self.batch, self.steps, self.features = config.batch_size, int(steps), int(features)
        self.negatives = config.data.negatives
        if not 1 <= self.negatives <= self.batch - 1:
            raise ExportError(f"scff-rnn's on-device update: {self.negatives} negative shifts do not fit a batch "
                              f"of {self.batch}")
        c = config.layers[0]
        self.theta_pos, self.theta_neg, self.penalty = c.theta_pos, c.theta_neg, c.penalty
        self.hyper_parameters = {"theta_pos": c.theta_pos, "theta_neg": c.theta_neg, "penalty": c.penalty,
                                 "standardisation_eps": EPS, "direction": self.name, "steps": self.steps,
                                 "negatives": self.negatives}
        self.data_inputs = [DataInput("samples", (self.batch, self.steps, self.features), "float32", "samples"),
                            DataInput("lengths", (self.batch,), "int64", "lengths"),
                            DataInput("shifts", (self.negatives,), "int64", "shifts")]
        self.frozen: list[str] = []
        self.trained = [_name(which, "input.weight"), _name(which, "recurrent.weight"),
                        _name(which, "recurrent.bias")]

    # ----- the graph ------------------------------------------------------------------------------
    def pairs(self, lengths: torch.Tensor, shifts: torch.Tensor):
        """``left``, ``right`` (``[E]``, ``E = (1 + negatives) B``) and the pairs' lengths, as ``pair_examples``."""
        b = self.batch
        k = torch.arange(b)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), shifts.to(torch.int64)])     # [1 + negatives]
        left = k.repeat(1 + self.negatives)
        right = torch.remainder(k[None, :] + offsets[:, None], b).reshape(-1)
        len_left, len_right = torch.index_select(lengths, 0, left), torch.index_select(lengths, 0, right)
        return left, right, len_left, len_right, torch.maximum(len_left, len_right)

    def read_steps(self, len_left, len_right, pair_lengths):
        """``[E, T]`` time indices each half is read at (``T``: past its end), as ``LocalBiRNN.pair_steps``."""
        steps = self.steps
        t = torch.arange(steps)[None, :]
        if self.which == 0:
            index = torch.where(t < pair_lengths[:, None], t, torch.full_like(t, steps))
        else:
            index = pair_lengths[:, None] - 1 - t
            index = torch.where(index >= 0, index, torch.full_like(index, steps))
        pad = torch.full_like(index, steps)
        return (torch.where(index < len_left[:, None], index, pad),
                torch.where(index < len_right[:, None], index, pad))

    def drive_and_frames(self, x, w_ih, left, right, left_steps, right_steps):
        """``W_ih std([a_t, b_t])`` and ``std(a_t) + std(b_t)``, ``[E, T, H]`` and ``[E, T, F]``."""
        projection, total, total_sq = F.linear(x, w_ih), x.sum(-1), x.square().sum(-1)
        pair_total = _gather_steps(total, left, left_steps) + _gather_steps(total, right, right_steps)
        pair_sq = _gather_steps(total_sq, left, left_steps) + _gather_steps(total_sq, right, right_steps)
        n = 2 * self.features
        mean = (pair_total / n)[..., None]
        inv_std = torch.rsqrt((pair_sq / n - mean[..., 0].square()).clamp_min(0.0) + EPS)[..., None]
        a = _gather_steps(projection, left, left_steps)
        b = _gather_steps(projection, right, right_steps)
        row_sum = w_ih.sum(dim=1)
        drive = (a + b - 2.0 * mean * row_sum) * inv_std
        halves = _gather_steps(x, left, left_steps) + _gather_steps(x, right, right_steps)
        return drive, (halves - 2.0 * mean) * inv_std

    def sweep(self, drive, w_hh, bias, pair_lengths):
        """The standardised previous state and ``z_t`` of every step, ``[E, T, H]`` each (no graph through time)."""
        e, hidden = drive.shape[0], w_hh.shape[0]
        h = drive.new_zeros(e, hidden)
        states, pre = [], []
        for t in range(self.steps):
            s = standardize(h)
            z = drive[:, t] + F.linear(s, w_hh, bias)
            states.append(s)
            pre.append(z)
            h = torch.where((pair_lengths > t)[:, None], torch.relu(z), h)
        return torch.stack(states, dim=1), torch.stack(pre, dim=1)

    def gradients(self, data, frozen, params):
        x, lengths, shifts = data["samples"], data["lengths"].to(torch.int64), data["shifts"]
        w_ih, w_hh, bias = (params[n] for n in self.trained)
        x = x.to(w_ih.dtype)
        left, right, len_left, len_right, pair_lengths = self.pairs(lengths, shifts)
        left_steps, right_steps = self.read_steps(len_left, len_right, pair_lengths)
        drive, frames = self.drive_and_frames(x, w_ih, left, right, left_steps, right_steps)
        states, z = self.sweep(drive, w_hh, bias, pair_lengths)
        rows, loss = self.step_rows(z, pair_lengths)
        hidden = z.shape[-1]
        flat = rows.reshape(-1, hidden).t()
        grads = {self.trained[0]: flat @ frames.reshape(-1, self.features),
                 self.trained[1]: flat @ states.reshape(-1, hidden),
                 self.trained[2]: rows.sum(dim=(0, 1))}
        return grads, loss

    def step_rows(self, z: torch.Tensor, pair_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``R = dL/dz`` ``[E, T, H]`` (zero past each pair's end) and the loss (Eq. 4 with each pair's own length)."""
        b, hidden = self.batch, z.shape[-1]
        valid = (torch.arange(self.steps)[None, :] < pair_lengths[:, None]).to(z.dtype)      # [E, T]
        count = pair_lengths.to(z.dtype)[:, None]                                             # [E, 1]
        active = torch.relu(z)
        g = (active * active).mean(-1) * valid                                                # [E, T]
        g_pos, g_neg = g[:b], g[b:]
        v_pos, v_neg, c_pos, c_neg = valid[:b], valid[b:], count[:b], count[b:]
        soft_pos = (F.softplus(self.theta_pos - g_pos) * v_pos).sum(1) / c_pos[:, 0]
        soft_neg = (F.softplus(g_neg - self.theta_neg) * v_neg).sum(1) / c_neg[:, 0]
        loss = soft_pos.mean() + soft_neg.mean()
        slope_pos = -torch.sigmoid(self.theta_pos - g_pos) / c_pos
        if self.penalty:
            norm = torch.sqrt((g_pos * g_pos).sum(1, keepdim=True))                           # [B, 1]
            loss = loss + self.penalty * norm.mean()
            safe = torch.where(norm > 0, norm, torch.ones_like(norm))
            slope_pos = slope_pos + self.penalty * g_pos / safe
        slope_neg = torch.sigmoid(g_neg - self.theta_neg) / c_neg
        slope = torch.cat([slope_pos / b, slope_neg / (z.shape[0] - b)]) * valid * (2.0 / hidden)
        return slope[..., None] * active, loss

    # ----- the learner's side -----------------------------------------------------------------------
    def reference_step(self, learner, data):
        """``SCFFRNNLearner.train_batch`` for this direction alone, with the given shifts."""
        lengths = data["lengths"].to(torch.int64).cpu()
        left, right, pair_lengths = pair_examples(lengths, learner.generator, self.negatives, shifts=data["shifts"])
        steps = int(lengths.max())
        device = learner.device
        x = data["samples"][:, :steps].to(device)
        learner.update(self.which, x, lengths.to(device), left.to(device), right.to(device),
                       pair_lengths.to(device), lengths.shape[0])


LEARNERS = (SCFFRNNLearner,)


def update_stages(learner, sample_shape: tuple[int, ...] | None = None, steps: int | None = None
                  ) -> list[UpdateStage]:
    """One stage per direction. ``steps``: frames per sequence fixed in the graphs (by default ``sample_shape``'s
    first, ``(T, F)`` as the inference export takes one sample)."""
    if steps is None and sample_shape is not None and len(sample_shape) == 2:
        steps = int(sample_shape[0])
    if steps is None:
        raise ExportError("scff-rnn's on-device update needs the frames per sequence (steps=)")
    features = int(sample_shape[-1]) if sample_shape is not None else int(learner.input_dim)
    if features != learner.network.input_dim:
        raise ExportError(f"scff-rnn's on-device update: {features} features per frame, the network reads "
                          f"{learner.network.input_dim}")
    return [SCFFDirectionUpdate(learner, which, steps, features) for which in range(len(DIRECTIONS))]
