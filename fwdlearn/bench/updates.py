"""One training update of the same fully connected encoder under each rule, ready to be measured.

Every rule trains hidden layers of the given widths on ``input_dim`` inputs (MNIST-sized by
default) with one batch held fixed:

- ``scff``: the SCFF MLP learner with every layer trained on every batch (``simultaneous``
  schedule, Algorithm 1 between layers): each layer's update runs on the detached output of the
  layer below, and its graph is freed before the next layer's is built;
- ``lac``: the LAC learner on an autoencoder with these hidden layers and an output layer back to
  the input (Linear-BN-ReLU hidden layers, sigmoid output); two forward passes, every hidden layer
  trained by its own activity contrast and the output layer by the reconstruction error;
- ``bp``: the same hidden layers (Linear-ReLU) with a linear 10-class head, trained end to end by
  back-propagation of the cross-entropy (Adam).

``Update.step()`` is one update; ``Update.parameters`` are the trained tensors;
``Update.resident()`` lists what persists between updates (parameters, optimiser state, the batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DataConfig, LayerConfig, SCFFConfig
from ..errors import ConfigError
from .memory import optimizer_tensors

RULES = ("scff", "lac", "bp")
NUM_CLASSES = 10


@dataclass
class Update:
    step: Callable[[], object]
    parameters: list[torch.Tensor]
    resident: Callable[[], list[torch.Tensor]]


def _scff(widths: list[int], x: torch.Tensor) -> Update:
    from ..learners import SCFFMLPLearner

    layers = [LayerConfig(width=w, lr=1e-4, theta_pos=1.0, theta_neg=1.0, penalty=1e-4, activation="triangle")
              for w in widths]
    config = SCFFConfig(name="bench", layers=layers, batch_size=x.shape[0], schedule="simultaneous",
                        data=DataConfig(dataset="digits")).validate("bench")
    learner = SCFFMLPLearner(config, x.shape[1])
    learner.network.to(x.device)
    active = list(range(len(widths)))
    params = list(learner.network.parameters())
    optimizers = [t.optimizer for t in learner.trainers]
    return Update(lambda: learner.train_batch(x, active), params,
                  lambda: params + optimizer_tensors(optimizers) + [x])


def _lac(widths: list[int], x: torch.Tensor) -> Update:
    from ..lac.config import LACConfig
    from ..lac.learner import LACLearner

    config = LACConfig(name="bench", hidden=list(widths), learner="lac-mlp", batch_size=x.shape[0],
                       encoder_layers=len(widths)).validate("bench")
    learner = LACLearner(config, (x.shape[1],))
    learner.network.to(x.device).train()
    params = list(learner.network.parameters())
    optimizers = [learner.hidden_optimizer, learner.output_optimizer]
    buffers = list(learner.network.buffers())
    return Update(lambda: learner.train_batch(x), params,
                  lambda: params + buffers + optimizer_tensors(optimizers) + [x])


def _bp(widths: list[int], x: torch.Tensor) -> Update:
    dims = [x.shape[1], *widths]
    blocks: list[nn.Module] = []
    for i in range(len(widths)):
        blocks += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
    network = nn.Sequential(*blocks, nn.Linear(dims[-1], NUM_CLASSES)).to(x.device)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    labels = torch.randint(0, NUM_CLASSES, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(x.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(x), labels).backward()
        optimizer.step()

    params = list(network.parameters())
    return Update(step, params, lambda: params + optimizer_tensors([optimizer]) + [x, labels])


BUILDERS = {"scff": _scff, "lac": _lac, "bp": _bp}


def build_update(rule: str, widths: list[int], batch: int, input_dim: int = 784,
                 device: str | torch.device = "cpu", seed: int = 0) -> Update:
    """One update of ``rule`` on hidden layers ``widths`` with a fixed random batch in [0, 1]."""
    if rule not in BUILDERS:
        raise ConfigError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if not widths or min(widths) < 1:
        raise ConfigError(f"hidden widths must be positive and at least one, got {widths}")
    if batch < 2 or input_dim < 1:
        raise ConfigError(f"batch must be >= 2 and input_dim >= 1, got batch {batch}, input_dim {input_dim}")
    torch.manual_seed(seed)
    x = torch.rand(batch, input_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return BUILDERS[rule](list(widths), x)
