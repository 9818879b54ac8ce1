"""The end-to-end back-propagation baselines (BPTT, supervised BP) as one rule with one parameter group.

A linear head on the features the probe reads, cross-entropy, Adam, the gradient norm clipped if
asked; the gradient reaches every layer of the network, which is what a local rule avoids. It
trains in the same loop as every local rule (``learner.Learner``). Afterwards the head is
dropped and the frozen network is read out by the same linear probe as the local learner, so the
two are compared on equal terms.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import BPTTConfig
from ..learner import Batch, Learner, ParamGroup
from ..data.batching import epoch_batches


class EndToEndLearner(Learner):
    """``features_of(batch)`` -> linear head -> cross-entropy; one group holding the network and the head."""

    needs_labels = True
    summed_stats = True   # loss_sum, correct, rows

    def __init__(self, network: torch.nn.Module, features_of: Callable[[Batch], torch.Tensor], feature_dim: int,
                 num_classes: int, config: BPTTConfig, seed: int = 0, batching: str = "random"):
        self.config, self.features_of, self.batching = config, features_of, batching
        self.head = torch.nn.Linear(feature_dim, num_classes)   # drawn from the global generator, after the network
        self.setup(network, seed)

    def make_groups(self) -> list[ParamGroup]:
        self.parameters = [*self.network.parameters(), *self.head.parameters()]
        return [ParamGroup("network", torch.optim.Adam(self.parameters, lr=self.config.lr), self.config.epochs)]

    def epoch_batches(self, n: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        return epoch_batches(n, self.config.batch_size, self.generator, self.batching, lengths)

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        logits = self.head(self.features_of(batch))
        loss = F.cross_entropy(logits, batch.y)
        optimizer = self.groups["network"].optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.data_parallel is not None and self.config.grad_clip:
            self.data_parallel.reduce_now(optimizer)   # clip the whole batch's gradient, as one process does
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        optimizer.step()
        rows = batch.size
        return {"network": {"loss_sum": float(loss.detach()) * rows,
                            "correct": float((logits.detach().argmax(1) == batch.y).sum()), "rows": float(rows)}}

    def end_epoch(self, record: dict[str, dict[str, float]]) -> None:
        """Per-sample means over the epoch: mean cross-entropy and training accuracy."""
        stats = record["network"]
        rows = stats.pop("rows")
        record["network"] = {"loss": round(stats["loss_sum"] / rows, 5), "train_accuracy": round(stats["correct"] / rows, 5)}


def train_end_to_end(network: torch.nn.Module, features_of: Callable[[Batch], torch.Tensor], feature_dim: int,
                     x: torch.Tensor, y: torch.Tensor, num_classes: int, config: BPTTConfig, seed: int = 0,
                     show_progress: bool = True, batching: str = "random", lengths: torch.Tensor | None = None
                     ) -> tuple[float, list[dict]]:
    """Train ``network`` in place; returns the wall time and, per epoch, mean cross-entropy and training accuracy."""
    started = time.perf_counter()
    learner = EndToEndLearner(network, features_of, feature_dim, num_classes, config, seed, batching)
    learner.train(x, lengths, y, show_progress=show_progress)
    history = [{"epoch": r["epoch"], "loss": r["loss"], "train_accuracy": r["train_accuracy"]} for r in learner.history]
    return time.perf_counter() - started, history
