"""SCFF for multilayer perceptrons and convolutional networks: the schedule, read against Algorithms 1 and 2.

One learner for both: ``scff-mlp`` builds an ``SCFFNetwork`` (``PairedLinear`` layers),
``scff-cnn`` an ``SCFFConvNetwork`` (``PairedConv2d`` layers, pairs concatenated along channels,
goodness maps per position); the layers offer the same interface, so the schedule below is shared.

For every batch (Algorithm 1/2, inner loop):
  1. build the first layer's pairs from the data (``data_pairs``);
  2. for each layer below the one(s) being trained, compute its pre-activations without
     gradients and build the next layer's examples: Algorithm 1 carries the positive and
     negative outputs on (``carry_pairs``), Algorithm 2 re-pairs the positive outputs (``repair``);
  3. the trained layer takes one local step on its own loss (``SCFFLayerTrainer.update``).

Schedules: ``sequential`` trains each layer for its epochs and freezes it before the next
(section 3.2); ``simultaneous`` trains every layer on every batch, each on the detached output
of the layer below. All randomness (shuffling, shifts, translations) comes from one generator
whose state is checkpointed, so a resumed run repeats an uninterrupted one exactly. Training
images are augmented first when the preset asks (``data.flip``, ``data.crop_pad``: Appendix F).

``device``: where the network, its optimisers and every batch live (the data stay on the CPU and
are moved batch by batch; random numbers are drawn on the CPU either way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import SCFFConfig
from ..data.augment import augment
from ..errors import DataError
from ..progress import progress_bar
from .pairs import PairBatch, carry_pairs, data_pairs, repair
from .scff_conv_network import SCFFConvNetwork
from .scff_layer import SCFFLayerTrainer
from .scff_network import SCFFNetwork


@dataclass
class EpochRecord:
    """One layer's training statistics for one epoch (for learning curves and results)."""

    layer: int
    epoch: int
    loss: float
    goodness_pos: float
    goodness_neg: float
    seconds: float


class SCFFMLPLearner:
    """Trains an ``SCFFNetwork`` or ``SCFFConvNetwork`` layer-locally. ``state_dict`` captures everything
    needed to resume. ``input_dim``: features per sample (scff-mlp) or the image shape ``[C, H, W]`` (scff-cnn)."""

    def __init__(self, config: SCFFConfig, input_dim: int | tuple[int, ...], device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.network = self.build_network(config, input_dim).to(self.device)
        self.trainers = [SCFFLayerTrainer(layer, cfg) for layer, cfg in zip(self.network.layers, config.layers)]
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history: list[EpochRecord] = []
        self.next_stage, self.next_epoch = 0, 0

    @staticmethod
    def build_network(config: SCFFConfig, input_dim: int | tuple[int, ...]) -> SCFFNetwork | SCFFConvNetwork:
        """The network exactly as a fresh learner initialises it (also the untrained baseline), on the CPU."""
        torch.manual_seed(config.seed)
        if config.learner == "scff-cnn":
            return SCFFConvNetwork(input_dim, config.layers)
        return SCFFNetwork(input_dim, config.layers, config.quant)

    @property
    def stages(self) -> list[list[int]]:
        """Groups of layers trained together: one per layer, or all at once."""
        n = len(self.config.layers)
        return [[i] for i in range(n)] if self.config.schedule == "sequential" else [list(range(n))]

    @property
    def finished(self) -> bool:
        return self.next_stage >= len(self.stages)

    @property
    def total_epochs(self) -> int:
        return sum(max(self.config.layers[i].epochs for i in stage) for stage in self.stages)

    @property
    def completed_epochs(self) -> int:
        done = sum(max(self.config.layers[i].epochs for i in stage) for stage in self.stages[:self.next_stage])
        return done + (0 if self.finished else self.next_epoch)

    def next_layer_batch(self, index: int, z_pos: torch.Tensor, z_neg: torch.Tensor) -> PairBatch:
        """Examples for layer ``index + 1`` from layer ``index``'s detached pre-activations."""
        layer = self.network.layers[index]
        y_pos, y_neg = layer.passed(z_pos), layer.passed(z_neg)
        if self.config.layers[index + 1].algorithm == 1:
            return carry_pairs(y_pos, y_neg)
        return repair(y_pos, self.generator)

    def train_batch(self, x: torch.Tensor, active: list[int]) -> dict[int, tuple[float, float, float]]:
        """One batch: frozen layers run forward only; each active layer takes its own step."""
        x = augment(x, self.config.data, self.generator)
        batch = data_pairs(x, self.generator, self.config.data.translate)
        stats = {}
        for index in range(max(active) + 1):
            trainer = self.trainers[index]
            if index in active:
                z_pos, z_neg, terms = trainer.update(batch)
                stats[index] = (float(terms.loss.detach()), float(terms.goodness_pos), float(terms.goodness_neg))
            else:
                with torch.no_grad():
                    z_pos, z_neg = trainer.preactivations(batch)
            if index < max(active):
                batch = self.next_layer_batch(index, z_pos, z_neg)
        return stats

    def train(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
              on_epoch_end: Callable[["SCFFMLPLearner"], None] | None = None, show_progress: bool = True) -> None:
        """Train on samples ``x`` from wherever the learner stands (fresh or resumed)."""
        if lengths is not None:
            raise DataError("scff-mlp trains on fixed-size samples; for sequences use scff-rnn")
        n, batch_size = x.shape[0], self.config.batch_size
        if n < 2:
            raise DataError(f"SCFF needs at least 2 training samples to form negative pairs, got {n}")
        while not self.finished:
            stage = self.stages[self.next_stage]
            active = [i for i in stage if self.next_epoch < self.config.layers[i].epochs]
            if not active:
                self._advance()
                continue
            order = torch.randperm(n, generator=self.generator)
            starts = [s for s in range(0, n, batch_size) if min(batch_size, n - s) >= 2]
            sums = {i: [0.0, 0.0, 0.0] for i in active}
            names = "+".join(str(i + 1) for i in active)
            epochs = max(self.config.layers[i].epochs for i in stage)
            started = time.perf_counter()
            bar = progress_bar(starts, desc=f"layer {names} epoch {self.next_epoch + 1}/{epochs}",
                               enabled=show_progress)
            for start in bar:
                stats = self.train_batch(x[order[start:start + batch_size]].to(self.device), active)
                for i, values in stats.items():
                    sums[i] = [a + b for a, b in zip(sums[i], values)]
                bar.set_postfix(loss=f"{stats[active[0]][0]:.4f}", refresh=False)
            seconds = time.perf_counter() - started
            for i in active:
                self.trainers[i].end_epoch()
                loss, g_pos, g_neg = (v / len(starts) for v in sums[i])
                self.history.append(EpochRecord(i + 1, self.next_epoch + 1, loss, g_pos, g_neg, seconds))
            self.next_epoch += 1
            if self.next_epoch >= epochs:
                self._advance()
            if on_epoch_end is not None:
                on_epoch_end(self)

    def _advance(self) -> None:
        self.next_stage, self.next_epoch = self.next_stage + 1, 0

    def state_dict(self) -> dict:
        return {
            "network": self.network.state_dict(),
            "trainers": [t.state_dict() for t in self.trainers],
            "generator": self.generator.get_state(),
            "history": [vars(r) for r in self.history],
            "position": [self.next_stage, self.next_epoch],
        }

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"])
        for trainer, trainer_state in zip(self.trainers, state["trainers"], strict=True):
            trainer.load_state_dict(trainer_state)
        self.generator.set_state(state["generator"])
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.next_stage, self.next_epoch = state["position"]

    def seconds_per_epoch(self) -> dict[str, float]:
        return mean_seconds_per_epoch(self.history)


def mean_seconds_per_epoch(history: list[EpochRecord]) -> dict[str, float]:
    """Mean wall time of one training epoch, per layer (``layer1``, ``layer2``, ...)."""
    per_layer: dict[str, list[float]] = {}
    for record in history:
        per_layer.setdefault(f"layer{record.layer}", []).append(record.seconds)
    return {k: round(sum(v) / len(v), 3) for k, v in per_layer.items()}
