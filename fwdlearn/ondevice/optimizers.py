"""Optimiser steps written with inference operators only, so that they export to ONNX as part of an update graph.

Both follow ``torch.optim`` exactly (the verification of ``export.py`` compares them with it), written
out-of-place:

- ``adamw`` (Loshchilov and Hutter, decoupled weight decay; ``torch.optim.AdamW``, amsgrad off):
  ``p <- p (1 - lr wd)``, ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
  ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` with ``t`` the step count after this step.
- ``sgd`` (``torch.optim.SGD``, dampening 0, not Nesterov): ``g <- g + wd p``; with momentum ``mu``,
  ``u <- mu u + g`` (``u`` starts at zero, which equals torch's first-step copy) and ``p <- p - lr u``.

The step count and the learning rate are graph inputs (a schedule is the caller's); the other
hyper-parameters are constants of the graph, listed in its metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

NAMES = ("adamw", "sgd")


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimiser an update graph applies and its constant hyper-parameters."""

    name: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0

    @property
    def state_names(self) -> tuple[str, ...]:
        """The per-parameter state tensors, in graph order."""
        if self.name == "adamw":
            return ("exp_avg", "exp_avg_sq")
        return ("momentum_buffer",) if self.momentum else ()

    def hyper_parameters(self) -> dict:
        values = asdict(self)
        if self.name == "sgd":
            values.pop("betas"), values.pop("eps")
        else:
            values.pop("momentum")
        return values

    def torch_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        """The ``torch.optim`` optimiser the graph reproduces (the verification's reference)."""
        if self.name == "adamw":
            return torch.optim.AdamW(params, lr=lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> OptimizerSpec:
        """The spec of a learner's own AdamW group (its hyper-parameters, not its learning rate)."""
        group = optimizer.param_groups[0]
        if isinstance(optimizer, torch.optim.AdamW):
            return cls("adamw", tuple(group["betas"]), group["eps"], group["weight_decay"])
        if isinstance(optimizer, torch.optim.SGD):
            return cls("sgd", weight_decay=group["weight_decay"], momentum=group["momentum"])
        raise ValueError(f"no on-device form of {type(optimizer).__name__}")


def apply(spec: OptimizerSpec, param: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor],
          step: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The new parameter and state after one step; ``step`` counts the steps taken before this one."""
    if spec.name == "adamw":
        return _adamw(spec, param, grad, state, step, lr)
    return _sgd(spec, param, grad, state, lr)


def _adamw(spec, param, grad, state, step, lr):
    beta1, beta2 = spec.betas
    exp_avg, exp_avg_sq = state
    t = step + 1.0
    decayed = param * (1.0 - lr * spec.weight_decay)
    exp_avg = exp_avg + (grad - exp_avg) * (1.0 - beta1)           # torch: exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq = exp_avg_sq * beta2 + grad * grad * (1.0 - beta2)
    correction1 = 1.0 - torch.pow(torch.full_like(t, beta1), t)
    correction2 = 1.0 - torch.pow(torch.full_like(t, beta2), t)
    denom = torch.sqrt(exp_avg_sq) / torch.sqrt(correction2) + spec.eps
    return decayed - (lr / correction1) * exp_avg / denom, [exp_avg, exp_avg_sq]


def _sgd(spec, param, grad, state, lr):
    if spec.weight_decay:
        grad = grad + param * spec.weight_decay
    if spec.momentum:
        buffer = state[0] * spec.momentum + grad
        return param - lr * buffer, [buffer]
    return param - lr * grad, []
