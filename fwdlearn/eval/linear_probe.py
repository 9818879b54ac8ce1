"""The linear read-out on frozen features (SCFF Appendix G).

Dropout, then one linear layer trained with cross-entropy and Adam; batch 64, 50 epochs, the
learning rate starting at 1e-3 and halved at 20, 35, 50, 60, 70, 80 and 90 % of the epochs.
Features are computed once and kept in memory; a whole epoch (per minibatch: gather, dropout,
forward, cross-entropy gradient, Adam step) runs in one compiled call
(``fwdlearn.kernels.ProbeEpochRunner``), reading the feature matrix once per epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ProbeConfig
from ..kernels import ProbeEpochRunner
from ..progress import progress_bar


@dataclass(frozen=True)
class ProbeResult:
    train_accuracy: float
    test_accuracy: float
    seconds: float
    num_features: int
    weight: torch.Tensor | None = None    # the trained read-out, [classes, features]
    bias: torch.Tensor | None = None
    logit_bound: float = 0.0              # largest |logit| on the training set


def accuracy(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((F.linear(x, weight, bias).argmax(1) == y).float().mean())


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                       config: ProbeConfig, num_classes: int, seed: int = 0, desc: str = "probe",
                       show_progress: bool = True) -> ProbeResult:
    """Train the read-out on ``train_x`` and report its accuracy on both splits."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(train_x.shape[1], num_classes)
    with torch.no_grad():   # PyTorch's default initialisation, drawn from the probe's own generator
        bound = train_x.shape[1] ** -0.5
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    runner = ProbeEpochRunner(layer.weight, layer.bias)
    milestones = sorted({max(1, round(f * config.epochs)) for f in config.halve_at})
    n_batches = -(-train_x.shape[0] // config.batch_size)
    train_x = train_x.contiguous()
    for epoch in progress_bar(range(config.epochs), desc=desc, enabled=show_progress):
        lr = config.lr * 0.5 ** sum(epoch >= m for m in milestones)     # halved at each milestone
        order = torch.randperm(train_x.shape[0], generator=generator)
        seeds = torch.randint(0, 2**32, (n_batches,), generator=generator)
        runner.run_epoch(train_x, train_y, order, config.batch_size, lr, config.dropout, seeds)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(runner.weight))
        layer.bias.copy_(torch.from_numpy(runner.bias))
    with torch.no_grad():
        bound = float(F.linear(train_x, layer.weight, layer.bias).abs().max()) if train_x.shape[0] else 0.0
    return ProbeResult(accuracy(layer.weight, layer.bias, train_x, train_y),
                       accuracy(layer.weight, layer.bias, test_x, test_y),
                       time.perf_counter() - started, int(train_x.shape[1]),
                       layer.weight.detach().clone(), layer.bias.detach().clone(), bound)
