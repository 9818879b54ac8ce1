"""LAC pretraining (LAC paper, Algorithm 1, Eqs. 1-8).

For every batch ``x``:
  1. pass 1 on ``x`` gives every hidden layer's reaction ``S_o`` and the reconstruction ``o_1``;
  2. pass 2 on ``sg(o_1)`` gives the reactions ``S_r`` (batch statistics of the reconstructions,
     running statistics untouched);
  3. hidden loss, Eq. 1 summed over layers and units: ``sum_ij (sg(S_o^ij) - S_r^ij)^2``; every
     layer's input is detached, so layer ``i``'s gradient is its own contrast only (Eq. 8), and
     RMSprop updates the hidden layers;
  4. output loss ``sum (o_1 - target)^2`` (target: ``x``, or ``x`` flipped left-right); the output
     layer's input is detached, so Adam updates the output layer alone.

Both losses are sums over units *and over the batch*, as in Algorithm 1 (``torch.sum``). The
scale matters with weight decay under RMSprop: the decay term is added to the loss gradient
before RMSprop normalises it, so with a batch mean it would be 128 times stronger relative to the
contrast, and on MNIST it shrinks the weights until every reaction is the batch-norm bias (the
contrast is then 0 and the output a constant image). Logged values are per sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..data.batching import epoch_batches
from ..errors import DataError
from ..progress import progress_bar
from ..learners.epochs import EpochCounter
from .config import LACConfig
from .network import Autoencoder, build_autoencoder


@dataclass
class LACEpochRecord:
    epoch: int
    hidden_loss: float                 # Eq. 1 summed over layers and units, per sample (epoch mean)
    reconstruction_loss: float         # sum (o_1 - target)^2 over pixels, per sample (epoch mean)
    test_reconstruction_error: float   # mean squared error per pixel on the test images, after the epoch
    seconds: float


def reconstruction_target(x: torch.Tensor, target: str) -> torch.Tensor:
    """What the output layer learns to produce: the image itself or its left-right mirror image."""
    return x.flip(-1) if target == "flip" else x


def hidden_contrast(first: list[torch.Tensor], second: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 1 over every layer, unit and sample of the batch: ``sum (sg(S_o) - S_r)^2``."""
    return sum((s_o.detach() - s_r).square().sum() for s_o, s_r in zip(first, second))


def reconstruction_error(network: Autoencoder, x: torch.Tensor, target: str, batch_size: int = 1000) -> float:
    """Mean squared error per pixel of the reconstructions of ``x`` (evaluation mode)."""
    was_training = network.training
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size]
            total += float((network(chunk) - reconstruction_target(chunk, target)).square().sum())
    network.train(was_training)
    return total / x.numel()


class LACLearner(EpochCounter):
    """Pretrains an autoencoder with LAC. ``state_dict`` captures everything needed to resume."""

    def __init__(self, config: LACConfig, sample_shape: tuple[int, ...]):
        self.config = config
        self.network = build_autoencoder(config, sample_shape)
        self.hidden_optimizer = torch.optim.RMSprop(self.network.hidden_parameters(), lr=config.hidden_lr,
                                                    weight_decay=config.weight_decay)
        self.output_optimizer = torch.optim.Adam(self.network.output.parameters(), lr=config.output_lr,
                                                 weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history: list[LACEpochRecord] = []
        self.initial_test_error: float | None = None
        self.next_epoch = 0

    @property
    def total_epochs(self) -> int:
        return self.config.epochs

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-4 up to the losses: ``(hidden_loss, output_loss)``, each reaching its own layers only."""
        first, reconstruction = self.network.passes(x, local=True)
        with self.network.frozen_norm_statistics():
            second, _ = self.network.passes(reconstruction.detach(), local=True)
        hidden_loss = hidden_contrast(first, second)
        target = reconstruction_target(x, self.config.target)
        output_loss = (reconstruction - target).square().sum()
        return hidden_loss, output_loss

    def train_batch(self, x: torch.Tensor) -> tuple[float, float]:
        hidden_loss, output_loss = self.losses(x)
        self.hidden_optimizer.zero_grad(set_to_none=True)
        self.output_optimizer.zero_grad(set_to_none=True)
        # The two losses share no parameter (every layer's input is detached), so one backward
        # pass gives each optimiser exactly the gradient of its own loss.
        (hidden_loss + output_loss).backward()
        self.hidden_optimizer.step()
        self.output_optimizer.step()
        return float(hidden_loss.detach()) / x.shape[0], float(output_loss.detach()) / x.shape[0]

    def train(self, x: torch.Tensor, test_x: torch.Tensor,
              on_epoch_end: Callable[["LACLearner"], None] | None = None, show_progress: bool = True) -> None:
        """Train on images ``x`` from where the learner stands; ``test_x`` tracks the reconstruction error."""
        if x.shape[0] < 2:
            raise DataError(f"LAC needs at least 2 training images (batch norm), got {x.shape[0]}")
        if self.initial_test_error is None:
            self.initial_test_error = reconstruction_error(self.network, test_x, self.config.target)
        self.network.train()
        while not self.finished:
            started = time.perf_counter()
            batches = epoch_batches(x.shape[0], self.config.batch_size, self.generator, min_size=2)
            bar = progress_bar(batches, desc=f"LAC epoch {self.next_epoch + 1}/{self.total_epochs}", enabled=show_progress)
            sums = [0.0, 0.0]
            for rows in bar:
                h, o = self.train_batch(x[rows])
                sums = [sums[0] + h, sums[1] + o]
                bar.set_postfix(hidden=f"{h:.1f}", reconstruction=f"{o:.2f}", refresh=False)
            seconds = time.perf_counter() - started
            error = reconstruction_error(self.network, test_x, self.config.target)
            self.history.append(LACEpochRecord(self.next_epoch + 1, sums[0] / len(batches), sums[1] / len(batches),
                                               error, seconds))
            self.next_epoch += 1
            if on_epoch_end is not None:
                on_epoch_end(self)

    def state_dict(self) -> dict:
        return {"network": self.network.state_dict(), "hidden_optimizer": self.hidden_optimizer.state_dict(),
                "output_optimizer": self.output_optimizer.state_dict(), "generator": self.generator.get_state(),
                "history": [vars(r) for r in self.history], "initial_test_error": self.initial_test_error,
                "next_epoch": self.next_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"])
        self.hidden_optimizer.load_state_dict(state["hidden_optimizer"])
        self.output_optimizer.load_state_dict(state["output_optimizer"])
        self.generator.set_state(state["generator"])
        self.history = [LACEpochRecord(**r) for r in state["history"]]
        self.initial_test_error = state["initial_test_error"]
        self.next_epoch = state["next_epoch"]
