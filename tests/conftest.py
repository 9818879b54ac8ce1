"""Shared fixtures: small SCFF configurations that train in well under a second."""

from __future__ import annotations

import pytest
import torch

from fwdlearn.config import DataConfig, LayerConfig, ProbeConfig, SCFFConfig


def small_config(schedule: str = "sequential", algorithm: int = 1, epochs: int = 2, translate: int = 0,
                 widths: tuple[int, ...] = (32, 24), dataset: str = "digits") -> SCFFConfig:
    layers = [LayerConfig(width=widths[0], lr=3e-3, theta_pos=4.0, theta_neg=6.0, penalty=1e-4,
                          weight_decay=1e-5, lr_decay=0.9, epochs=epochs)]
    layers += [LayerConfig(width=w, lr=2e-3, theta_pos=1.0, theta_neg=1.0, lr_decay=0.8, epochs=epochs,
                           algorithm=algorithm) for w in widths[1:]]
    return SCFFConfig(name="small", layers=layers, batch_size=16, schedule=schedule,
                      data=DataConfig(dataset=dataset, translate=translate),
                      probe=ProbeConfig(epochs=2)).validate()


@pytest.fixture
def images() -> torch.Tensor:
    """A batch of 16 random 1x8x8 images in [0, 1]."""
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class GradientArrivals:
    """Counts the gradients computed for each of ``params`` while alive (a tensor hook fires when
    autograd computes a parameter's gradient, even if the learner releases ``.grad`` after its step)."""

    def __init__(self, params):
        self.params = [p for p in params if p.requires_grad]
        self.counts = [0] * len(self.params)
        self.handles = [p.register_hook(self._counter(i)) for i, p in enumerate(self.params)]

    def _counter(self, i):
        def hook(grad):
            self.counts[i] += 1
        return hook

    def none(self) -> bool:
        return len(self.params) > 0 and not any(self.counts)

    def all(self) -> bool:
        return len(self.params) > 0 and all(self.counts)
