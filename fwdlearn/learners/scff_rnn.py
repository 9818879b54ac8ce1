"""SCFF for a bidirectional recurrent layer (section 3.5, Eq. 4, Appendix E), read against the paper.

For every batch of sequences:
  1. pairs along the feature axis at every step: positives ``[x_k, x_k]``, negatives
     ``[x_k, x_n]``, ``n = (k + s) mod N`` (section 3.1; ``data.negatives`` > 1 adds blocks with
     other shifts); a pair lasts as long as its longer half;
  2. each direction runs over the pairs once *without gradients*, collecting the standardised
     previous state ``std(h_(t-1))`` fed to every step;
  3. each direction takes one AdamW step on Eq. 4: per-step goodness
     ``G_t = mean_m ReLU(z_t)^2`` of ``z_t = W_ih std([a_t, b_t]) + W_hh std(h_(t-1)) + b`` with the
     collected states as constants, ``1/T sum_t`` of the thresholded terms, plus ``lambda ||G_pos||_F``.

Because step 2 holds no graph, the gradient of step ``t``'s loss reaches ``W_ih``, ``W_hh`` and
``b`` through ``z_t`` alone: nothing flows through time (no BPTT), and the two directions, each
with its own optimiser, never see each other's loss. Step 3 is one batched update over all valid
steps (two GEMMs), not one per step.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..config import LayerConfig, SCFFConfig
from ..data.batching import epoch_batches
from ..errors import ConfigError, DataError
from ..kernels.goodness import relu_goodness
from ..nn.local_birnn import LocalBiRNN, RecurrentDirection, check_sequences
from ..objectives import SCFFLossTerms, scff_loss
from ..progress import progress_bar
from .epochs import EpochCounter
from .pairs import random_shift
from .scff_mlp import EpochRecord, mean_seconds_per_epoch


class SCFFDirectionTrainer:
    """One direction of the layer and its own optimiser: everything that can change its weights."""

    def __init__(self, network: LocalBiRNN, which: int, config: LayerConfig):
        self.network, self.which, self.config = network, which, config
        self.direction: RecurrentDirection = network.directions[which]
        self.optimizer = torch.optim.AdamW(self.direction.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay, fused=True)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_decay)

    def drive(self, x, lengths, left, right, pair_lengths) -> torch.Tensor:
        """This direction's input drive ``W_ih std([a_t, b_t])`` for the pair examples (``[E, T, hidden]``)."""
        return self.network.drive(self.which, x, lengths, left, right, pair_lengths)

    def previous_states(self, drive: torch.Tensor, pair_lengths: torch.Tensor) -> torch.Tensor:
        """Step 2: ``std(h_(t-1))`` for every example and step, computed without any graph."""
        with torch.no_grad():
            return self.direction.run(drive.detach(), pair_lengths, keep_states=True)[1]

    def step_goodness(self, drive: torch.Tensor, pair_lengths: torch.Tensor, states: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step goodness ``[E, T]`` of ``z_t`` with ``states`` held constant, and the mask of real steps."""
        if states.requires_grad:
            raise RuntimeError("the recurrent state fed to a step must be detached (no gradient through time)")
        valid = torch.arange(drive.shape[1], device=drive.device)[None, :] < pair_lengths[:, None]
        z = self.direction.step(drive[valid], states[valid])          # only real steps: [n_valid, hidden]
        g = z.new_zeros(valid.shape).masked_scatter(valid, relu_goodness(z))
        return g, valid

    def update(self, x, lengths, left, right, pair_lengths, n_pos: int) -> SCFFLossTerms:
        """Steps 2 and 3 for this direction; the first ``n_pos`` examples are the positives.

        The drive is computed once: the sweep reads it detached, the update through its graph.
        """
        drive = self.drive(x, lengths, left, right, pair_lengths)
        states = self.previous_states(drive, pair_lengths)
        g, valid = self.step_goodness(drive, pair_lengths, states)
        c = self.config
        terms = scff_loss(g[:n_pos], g[n_pos:], c.theta_pos, c.theta_neg, c.penalty, valid[:n_pos], valid[n_pos:])
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)   # applied: the gradient buffers do not outlive the step
        return SCFFLossTerms(terms.loss.detach(), terms.goodness_pos, terms.goodness_neg)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def pair_examples(lengths: torch.Tensor, generator: torch.Generator, negatives: int = 1) -> tuple[torch.Tensor, ...]:
    """Views ``left``/``right`` of the ``N`` positives then ``negatives * N`` negatives, and each pair's length.

    One negative per positive is the paper's (section 3.1): ``[x_k, x_(k+s) mod N]``. With more,
    each block of ``N`` negatives has its own shift, all distinct (at most ``N - 1`` of them).
    """
    n = lengths.shape[0]
    k = torch.arange(n)
    if negatives == 1:               # the same random draw as before the option existed: recorded runs repeat
        shifts = [random_shift(n, generator)]
    else:
        shifts = (torch.randperm(n - 1, generator=generator)[:negatives] + 1).tolist()
    left = torch.cat([k] * (1 + len(shifts)))
    right = torch.cat([k] + [(k + s) % n for s in shifts])
    return left, right, torch.maximum(lengths[left], lengths[right])


class SCFFRNNLearner(EpochCounter):
    """Trains a ``LocalBiRNN`` with SCFF. ``state_dict`` captures everything needed to resume."""

    def __init__(self, config: SCFFConfig, input_dim: int, device: str | torch.device = "cpu"):
        if len(config.layers) != 1:
            raise ConfigError(f"scff-rnn trains one bidirectional layer; the preset lists {len(config.layers)}")
        self.config = config
        self.device = torch.device(device)
        self.network = self.build_network(config, input_dim).to(self.device)
        self.trainers = [SCFFDirectionTrainer(self.network, which, config.layers[0]) for which in (0, 1)]
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history: list[EpochRecord] = []
        self.next_epoch = 0

    @staticmethod
    def build_network(config: SCFFConfig, input_dim: int) -> LocalBiRNN:
        """The network exactly as a fresh learner initialises it (also the untrained baseline)."""
        torch.manual_seed(config.seed)
        return LocalBiRNN(input_dim, config.layers[0].width, config.quant)

    @property
    def total_epochs(self) -> int:
        return self.config.layers[0].epochs

    def train_batch(self, x: torch.Tensor, lengths: torch.Tensor) -> list[SCFFLossTerms]:
        """One batch of sequences: each direction takes its own local step."""
        steps = int(lengths.max())
        x = x[:, :steps].to(self.device)
        pairs = pair_examples(lengths.cpu(), self.generator, self.config.data.negatives)   # drawn on the CPU
        left, right, pair_lengths = (p.to(self.device) for p in pairs)
        lengths = lengths.to(self.device)
        return [trainer.update(x, lengths, left, right, pair_lengths, lengths.shape[0]) for trainer in self.trainers]

    def train(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
              on_epoch_end: Callable[["SCFFRNNLearner"], None] | None = None, show_progress: bool = True) -> None:
        """Train on zero-padded sequences ``x`` (``[N, T, F]``) with ``lengths`` from where the learner stands."""
        if lengths is None:
            raise DataError("scff-rnn needs sequences with lengths (a sequence data set such as fsdd or sequences)")
        check_sequences(x, lengths, self.network.input_dim)
        n, batch_size = x.shape[0], self.config.batch_size
        if n < 2:
            raise DataError(f"SCFF needs at least 2 training sequences to form negative pairs, got {n}")
        while not self.finished:
            batches = epoch_batches(n, batch_size, self.generator, self.config.data.batching, lengths, min_size=2)
            sums = [0.0, 0.0, 0.0]
            started = time.perf_counter()
            bar = progress_bar(batches, desc=f"Bi-RNN epoch {self.next_epoch + 1}/{self.total_epochs}",
                               enabled=show_progress)
            for rows in bar:
                terms = self.train_batch(x[rows], lengths[rows])
                values = [sum(float(getattr(t, name)) for t in terms) / len(terms)
                          for name in ("loss", "goodness_pos", "goodness_neg")]
                sums = [a + b for a, b in zip(sums, values)]
                bar.set_postfix(loss=f"{values[0]:.4f}", refresh=False)
            for trainer in self.trainers:
                trainer.scheduler.step()
            loss, g_pos, g_neg = (v / len(batches) for v in sums)
            self.history.append(EpochRecord(1, self.next_epoch + 1, loss, g_pos, g_neg,
                                            time.perf_counter() - started))
            self.next_epoch += 1
            if on_epoch_end is not None:
                on_epoch_end(self)

    def state_dict(self) -> dict:
        return {"network": self.network.state_dict(), "trainers": [t.state_dict() for t in self.trainers],
                "generator": self.generator.get_state(), "history": [vars(r) for r in self.history],
                "position": [0, self.next_epoch]}

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"])
        for trainer, trainer_state in zip(self.trainers, state["trainers"], strict=True):
            trainer.load_state_dict(trainer_state)
        self.generator.set_state(state["generator"])
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.next_epoch = state["position"][1]

    def seconds_per_epoch(self) -> dict[str, float]:
        return mean_seconds_per_epoch(self.history)
