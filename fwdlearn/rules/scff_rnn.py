"""SCFF for a bidirectional recurrent layer (section 3.5, Eq. 4, Appendix E), read against the paper.

For every batch of sequences:
  1. pairs along the feature axis at every step: positives ``[x_k, x_k]``, negatives
     ``[x_k, x_n]``, ``n = (k + s) mod N`` (section 3.1; ``data.negatives`` > 1 adds blocks with
     other shifts; ``pair_examples``); a pair lasts as long as its longer half;
  2. each direction runs over the pairs once *without gradients*, collecting the standardised
     previous state ``std(h_(t-1))`` fed to every step;
  3. each direction takes one AdamW step on Eq. 4: per-step goodness
     ``G_t = mean_m ReLU(z_t)^2`` of ``z_t = W_ih std([a_t, b_t]) + W_hh std(h_(t-1)) + b`` with the
     collected states as constants, ``1/T sum_t`` of the thresholded terms, plus ``lambda ||G_pos||_F``.

Because step 2 holds no graph, the gradient of step ``t``'s loss reaches ``W_ih``, ``W_hh`` and
``b`` through ``z_t`` alone: nothing flows through time (no BPTT), and the two directions (the
parameter groups ``forward`` and ``backward``, each with its own optimiser) never see each other's
loss. Step 3 is one batched update over all valid steps (two GEMMs), not one per step.
"""

from __future__ import annotations

import torch

from ..baselines.bptt import train_bptt
from ..config import SCFFConfig
from ..kernels.scff_pairs import scff_step_gradient
from ..learner import Batch, Learner, ParamGroup, TrainedBaseline, adamw_group, take_fused_step, take_step
from ..data.batching import epoch_batches
from ..data.transforms import EPS
from ..errors import DataError, check
from ..kernels.goodness import relu_goodness
from ..nn.local_birnn import LocalBiRNN, check_sequences
from ..objectives.scff import pair_examples, scff_loss
from ..rule import Rule

DIRECTIONS = ("forward", "backward")


class SCFFRNNLearner(Learner):
    """Trains a ``LocalBiRNN`` with SCFF; one parameter group per direction."""

    min_batch = 2
    shards_itself = True   # data parallel: pairs drawn over the whole batch, then the own pair rows kept

    @classmethod
    def check_config(cls, config, where: str) -> None:
        check(config.data.is_sequence, f"{where}.data.dataset {config.data.dataset!r} does not suit learner "
                                       f"scff-rnn (sequence data sets: fsdd, sequences)")
        check(len(config.layers) == 1, f"{where}.layers: scff-rnn trains one bidirectional layer, "
                                       f"got {len(config.layers)}")
        check(not config.layers[0].conv.enabled, f"{where}.layers[0].conv applies to scff-cnn only")
        check(config.bp.epochs == 0, f"{where}.bp applies to scff-mlp only (scff-rnn's end-to-end baseline is [bptt])")

    @staticmethod
    def build_network(config, input_dim) -> torch.nn.Module:
        """The network exactly as a fresh learner initialises it (also the untrained baseline)."""
        torch.manual_seed(config.seed)
        return LocalBiRNN(input_dim, config.layers[0].width, config.quant)

    @staticmethod
    def describe(config, input_dim) -> str:
        return f"{input_dim}-{config.layers[0].width}x2"

    def make_groups(self) -> list[ParamGroup]:
        c = self.config.layers[0]
        return [adamw_group(name, direction, c.lr, c.weight_decay, c.lr_decay, c.epochs)
                for name, direction in zip(DIRECTIONS, self.network.directions)]

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if lengths is None:
            raise DataError("scff-rnn needs sequences with lengths (a sequence data set such as fsdd or sequences)")
        check_sequences(x, lengths, self.network.input_dim)
        if x.shape[0] < 2:
            raise DataError(f"SCFF needs at least 2 training sequences to form negative pairs, got {x.shape[0]}")

    def epoch_batches(self, n: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        return epoch_batches(n, self.batch_size(), self.generator, self.config.data.batching, lengths,
                             min_size=self.min_batch)

    def previous_states(self, which: int, drive: torch.Tensor, pair_lengths: torch.Tensor) -> torch.Tensor:
        """Step 2: ``std(h_(t-1))`` for every example and step, computed without any graph."""
        with torch.no_grad():
            return self.network.directions[which].run(drive.detach(), pair_lengths, keep_states=True)[1]

    def step_goodness(self, which: int, drive: torch.Tensor, pair_lengths: torch.Tensor, states: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step goodness ``[E, T]`` of ``z_t`` with ``states`` held constant, and the mask of real steps."""
        if states.requires_grad:
            raise RuntimeError("the recurrent state fed to a step must be detached (no gradient through time)")
        valid = torch.arange(drive.shape[1], device=drive.device)[None, :] < pair_lengths[:, None]
        z = self.network.directions[which].step(drive[valid], states[valid])   # only real steps: [n_valid, hidden]
        g = z.new_zeros(valid.shape).masked_scatter(valid, relu_goodness(z))
        return g, valid

    def update(self, which: int, x, lengths, left, right, pair_lengths, n_pos: int) -> dict[str, float]:
        """Steps 2 and 3 for direction ``which``; the first ``n_pos`` examples are the positives.

        The drive ``W_ih std([a_t, b_t])`` is computed once: the sweep reads it detached, the update
        through its graph.
        """
        if self.config.backend == "fused":
            return self.fused_update(which, x, lengths, left, right, pair_lengths, n_pos)
        drive = self.network.drive(which, x, lengths, left, right, pair_lengths)
        states = self.previous_states(which, drive, pair_lengths)
        g, valid = self.step_goodness(which, drive, pair_lengths, states)
        c = self.config.layers[0]
        terms = scff_loss(g[:n_pos], g[n_pos:], c.theta_pos, c.theta_neg, c.penalty, valid[:n_pos], valid[n_pos:])
        take_step([self.groups[DIRECTIONS[which]]], terms.loss)
        return {"loss": float(terms.loss.detach()), "goodness_pos": float(terms.goodness_pos),
                "goodness_neg": float(terms.goodness_neg)}

    def fused_update(self, which: int, x, lengths, left, right, pair_lengths, n_pos: int) -> dict[str, float]:
        """``update`` in closed form (methods section 6, per step): one sweep without a graph keeps, for every
        step, the state fed to it and its pre-activation ``z_t = W_ih std([a_t, b_t]) + W_hh std(h_(t-1)) + b``
        (the reference computes ``z_t`` again with a graph); the step kernel (``scff_step_gradient``: goodness,
        Eq. 4 with each sequence's own length, ``R = dL/dz``) on the real steps; ``dW_hh = R^T std(h)``,
        ``dW_ih = R^T (std(a_t) + std(b_t))`` (two products), ``db = sum R``; one AdamW step. A quantised
        direction hands ``R`` to the straight-through graph of its quantised products instead (weights, inputs
        and the quantisers' scales), as ``PairedLinear`` does."""
        direction, c = self.network.directions[which], self.config.layers[0]
        with torch.no_grad():
            drive, frames = self.network.drive_and_frames(which, x, lengths, left, right, pair_lengths)
            states, z = direction.sweep(drive, pair_lengths)
            valid = torch.arange(z.shape[1], device=z.device)[None, :] < pair_lengths[:, None]
            states, frames, z = states[valid], frames[valid], z[valid]
        bias = direction.recurrent.bias
        out = scff_step_gradient(z, torch.zeros_like(bias.detach()), valid.sum(1), n_pos, c.theta_pos, c.theta_neg,
                                 c.penalty)            # z holds the bias already

        def set_gradients() -> None:
            if direction.quantised:
                drive_graph = self.network.drive(which, x, lengths, left, right, pair_lengths)
                direction.step(drive_graph[valid], states).backward(out.rows)
                return
            direction.recurrent.weight.grad = torch.mm(out.rows.t(), states)
            direction.input.weight.grad = torch.mm(out.rows.t(), frames)
            direction.recurrent.bias.grad = out.rows.sum(0)
        del drive
        take_fused_step(self.groups[DIRECTIONS[which]], set_gradients)
        return {"loss": out.loss, "goodness_pos": out.goodness_pos, "goodness_neg": out.goodness_neg}

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        """One batch of sequences: each direction takes its own local step."""
        steps = int(batch.lengths.max())
        x = batch.x[:, :steps].to(self.device)
        pairs = pair_examples(batch.lengths.cpu(), self.generator, self.config.data.negatives)   # drawn on the CPU
        n_pos = batch.size
        if self.data_parallel is not None:   # pairs drawn over the whole batch; this process's rows of each block
            pairs = tuple(self.data_parallel.own(p, n_pos, p.shape[0] // n_pos) for p in pairs)
            n_pos = len(range(n_pos)[self.data_parallel.rows(n_pos)])
        left, right, pair_lengths = (p.to(self.device) for p in pairs)
        lengths = batch.lengths.to(self.device)
        return {name: self.update(which, x, lengths, left, right, pair_lengths, n_pos)
                for which, name in enumerate(DIRECTIONS) if name in active}

    @classmethod
    def baselines(cls, config, dataset, input_dim, show_progress, log) -> dict:
        """The same network trained end to end by back-propagation through time (``[bptt]``; 0 epochs skips it)."""
        if not config.bptt.epochs:
            return {}
        network = cls.build_network(config, input_dim)
        log(f"BPTT baseline: the same network trained end to end for {config.bptt.epochs} epochs")
        train = dataset.train
        seconds, history = train_bptt(network, train.x, train.lengths, train.y, dataset.num_classes, config.bptt,
                                      config.seed, show_progress, config.data.batching)
        return {"bptt": TrainedBaseline(network, seconds, history)}


RULES = (
    Rule(name="scff-rnn", label="SCFF", learner=SCFFRNNLearner, config=SCFFConfig,
         summary="the same rule on a bidirectional recurrent layer (no BPTT)",
         presets={None: "sequences", "fsdd": "fsdd-paper"}, sequence=True,
         in_graph=f"per-step standardisation of each frame and hidden state (eps {EPS}); both recurrent directions "
                  "on the pair [x, x]; final states of both directions, standardised; linear read-out"),
)
