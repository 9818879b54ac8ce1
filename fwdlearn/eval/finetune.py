"""Fine-tuning a pretrained encoder with a linear classifier, end to end (LAC paper, section 4.1, Table 1).

Encoder and classifier learn together by back-propagation, in the same loop as every rule (one
parameter group): SGD with momentum and weight decay, a linear warm-up over the first epochs, and
step decays of the rate (the paper: x0.2 at epochs 60/120/160 of 200; here at the same fractions
of the configured epochs), set at every optimiser step.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..learner import Batch, Learner, ParamGroup
from ..data.batching import epoch_batches
from ..errors import check


@dataclass
class FinetuneConfig:
    """SGD with momentum, warm-up over ``warmup_epochs``, the rate times ``gamma`` at each fraction in ``decay_at``."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    warmup_epochs: int = 2
    decay_at: list[float] = field(default_factory=lambda: [0.3, 0.6, 0.8])
    gamma: float = 0.2
    weight_decay: float = 5e-4
    batch_size: int = 128

    def validate(self, where: str) -> None:
        check(self.epochs >= 0, f"{where}.epochs must be >= 0, got {self.epochs}")
        check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        check(0 <= self.momentum < 1, f"{where}.momentum must lie in [0, 1), got {self.momentum}")
        check(self.warmup_epochs >= 0, f"{where}.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        check(all(0 < f < 1 for f in self.decay_at), f"{where}.decay_at fractions must lie in (0, 1)")
        check(0 < self.gamma <= 1, f"{where}.gamma must lie in (0, 1], got {self.gamma}")
        check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")


def learning_rate(config: FinetuneConfig, step: int, steps_per_epoch: int) -> float:
    """The rate at optimiser step ``step``: linear warm-up, then ``gamma`` per passed decay point."""
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    epoch = step // steps_per_epoch
    return config.lr * config.gamma ** sum(epoch >= round(f * config.epochs) for f in config.decay_at)


class FinetuneLearner(Learner):
    """``model`` (encoder then linear classifier) trained on cross-entropy; the rate set at every step."""

    min_batch = 2
    needs_labels = True

    def __init__(self, model: torch.nn.Module, config: FinetuneConfig, n: int, seed: int = 0):
        self.config = config
        self.steps_per_epoch = len(epoch_batches(n, config.batch_size, torch.Generator(), min_size=2))
        self.step = 0
        self.setup(model, seed)

    def make_groups(self) -> list[ParamGroup]:
        c = self.config
        optimizer = torch.optim.SGD(self.network.parameters(), lr=c.lr, momentum=c.momentum,
                                    weight_decay=c.weight_decay)
        return [ParamGroup("network", optimizer, c.epochs)]

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        optimizer = self.groups["network"].optimizer
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step, self.steps_per_epoch)
        loss = F.cross_entropy(self.network(batch.x), batch.y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.step += 1
        return {"network": {"loss": float(loss.detach())}}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
                      for s in range(0, x.shape[0], batch_size))
    return correct / x.shape[0]


def fine_tune(encoder: torch.nn.Module, dataset, config: FinetuneConfig, seed: int = 0,
              show_progress: bool = True) -> dict:
    """A copy of ``encoder`` (a module returning ``[N, features]``) and a linear classifier trained together
    end to end. Returns accuracies and seconds."""
    started = time.perf_counter()
    encoder = copy.deepcopy(encoder)
    with torch.no_grad():
        width = encoder(dataset.train.x[:2]).shape[1]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(width, dataset.num_classes))
    FinetuneLearner(model, config, dataset.train.x.shape[0], seed).train(
        dataset.train.x, y=dataset.train.y, show_progress=show_progress)
    return {"train_accuracy": round(accuracy(model, dataset.train.x, dataset.train.y), 5),
            "test_accuracy": round(accuracy(model, dataset.test.x, dataset.test.y), 5),
            "seconds": round(time.perf_counter() - started, 2)}
