"""Back-propagation self-supervised learning on the same encoder a local rule trains (issue 18), in the one loop.

Two augmented views of each batch (``fwdlearn.views``) pass through the encoder (its probe features,
concatenated), a projection head and, for BYOL and SimSiam, a prediction head; the method's loss
(``objectives/ssl``) is back-propagated through every encoder layer, which is what a local rule avoids.
A method is a thin definition (``Method``): which heads and target it needs and how its loss reads the
branches. Methods with a momentum target (MoCo v2, BYOL, SCE) keep an EMA copy of encoder and projector,
moved after every step on BYOL's cosine schedule (``nn/momentum.py``); MoCo v2 and SCE keep a queue of past
target embeddings (``nn/memory_queue.py``), written after the loss of the batch that produced them (the
current keys are never their own negatives). Afterwards the heads are dropped and the encoder is read by
the same linear probe as the local rules'.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import check
from ..learner import Batch, Learner, ParamGroup, take_step
from ..nn.memory_queue import MemoryQueue
from ..nn.momentum import cosine_momentum, ema_update
from ..nn.ssl_heads import PredictionHead, ProjectionHead
from ..objectives.ssl import (barlow_twins_loss, byol_loss, infonce_loss, nt_xent_loss, sce_loss, simsiam_loss,
                              vicreg_loss)


@dataclass
class SelfSupervisedConfig:
    """One method's settings. ``temperature``: NT-Xent, InfoNCE and SCE's online ``tau``; ``momentum``: the EMA
    target's base ``m_0``; ``queue_size``: MoCo v2's and SCE's memory of target embeddings."""

    method: str = "simclr"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 256
    projection_dim: int = 128
    hidden_dim: int = 512
    temperature: float = 0.1
    momentum: float = 0.99
    queue_size: int = 4096
    sce_lambda: float = 0.5
    sce_tau_m: float = 0.07

    def validate(self, where: str = "ssl") -> "SelfSupervisedConfig":
        """One-line ``ConfigError`` for a setting no method can train with, before any training starts."""
        check(self.method in METHODS, f"{where}.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        check(self.epochs >= 1, f"{where}.epochs must be >= 1, got {self.epochs}")
        check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        check(self.batch_size >= 2, f"{where}.batch_size must be >= 2 (two views, batch statistics), "
                                    f"got {self.batch_size}")
        check(self.projection_dim >= 1 and self.hidden_dim >= 1,
              f"{where}.projection_dim and hidden_dim must be >= 1, got {self.projection_dim}, {self.hidden_dim}")
        check(self.temperature > 0, f"{where}.temperature must be > 0, got {self.temperature}")
        check(self.sce_tau_m > 0, f"{where}.sce_tau_m must be > 0, got {self.sce_tau_m}")
        check(0 <= self.sce_lambda <= 1, f"{where}.sce_lambda must lie in [0, 1], got {self.sce_lambda}")
        method = METHODS[self.method]
        if method.target:
            check(0 <= self.momentum < 1, f"{where}.momentum must lie in [0, 1), got {self.momentum}")
        if method.queue:
            check(self.queue_size >= self.batch_size, f"{where}.queue_size {self.queue_size} is smaller than a "
                                                      f"batch ({self.batch_size})")
        return self


@dataclass
class Branches:
    """What a method's loss reads: online projections ``z`` and predictions ``p`` of both views, the target
    branch's projections ``t`` (detached), the queue of past targets."""

    z1: torch.Tensor
    z2: torch.Tensor
    p1: torch.Tensor | None
    p2: torch.Tensor | None
    t1: torch.Tensor | None
    t2: torch.Tensor | None
    queue: torch.Tensor | None


@dataclass(frozen=True)
class Method:
    """``predictor``: a prediction head on the online branch; ``target``: an EMA target network; ``queue``: a
    memory of past target embeddings; ``loss(branches, config)``."""

    predictor: bool
    target: bool
    queue: bool
    loss: Callable[[Branches, SelfSupervisedConfig], torch.Tensor]


METHODS: dict[str, Method] = {
    "simclr": Method(False, False, False, lambda b, c: nt_xent_loss(b.z1, b.z2, c.temperature)),
    "moco": Method(False, True, True, lambda b, c: infonce_loss(b.z1, b.t2, b.queue, c.temperature)),
    "byol": Method(True, True, False, lambda b, c: byol_loss(b.p1, b.p2, b.t1, b.t2)),
    "simsiam": Method(True, False, False, lambda b, c: simsiam_loss(b.p1, b.p2, b.z1, b.z2)),
    "barlow_twins": Method(False, False, False, lambda b, c: barlow_twins_loss(b.z1, b.z2)),
    "vicreg": Method(False, False, False, lambda b, c: vicreg_loss(b.z1, b.z2).loss),
    "sce": Method(False, True, True, lambda b, c: sce_loss(b.z1, b.t2, b.queue, c.sce_lambda, c.temperature,
                                                           c.sce_tau_m)),
}


class Online(torch.nn.Module):
    """Encoder features -> projection (the part an EMA target copies)."""

    def __init__(self, encoder: torch.nn.Module, features_of: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
                 feature_dim: int, config: SelfSupervisedConfig):
        super().__init__()
        self.encoder, self.features_of = encoder, features_of
        self.projector = ProjectionHead(feature_dim, config.hidden_dim, config.projection_dim)

    def forward(self, view: Batch) -> torch.Tensor:
        return self.projector(self.features_of(self.encoder, view))


def on_device(view: Batch, device: torch.device) -> Batch:
    return Batch(view.x.to(device), None if view.lengths is None else view.lengths.to(device))


class SelfSupervisedLearner(Learner):
    """One group (encoder, projector, predictor) trained end to end on ``METHODS[config.method]``'s loss.

    ``encoder``: the network exactly as the local rule builds it; ``features_of(encoder, view)``: the
    representation the heads read (the probe's features) of a ``Batch``; ``views(batch, generator)``: two
    augmented views of a ``Batch``, each a ``Batch`` (images: ``x``; sequences: ``x`` and ``lengths``).
    """

    min_batch = 2

    def __init__(self, encoder: torch.nn.Module, features_of, feature_dim: int, views, config: SelfSupervisedConfig,
                 seed: int = 0, device: str | torch.device = "cpu"):
        self.config, self.method, self.views = config.validate(), METHODS[config.method], views
        torch.manual_seed(seed)                        # the heads' initialisation, after the encoder's
        self.online = Online(encoder, features_of, feature_dim, config)
        self.predictor = (PredictionHead(config.projection_dim, config.hidden_dim, config.projection_dim)
                          if self.method.predictor else None)
        self.target = copy.deepcopy(self.online).requires_grad_(False) if self.method.target else None
        self.queue = MemoryQueue(config.queue_size, config.projection_dim, seed) if self.method.queue else None
        self.steps = 0
        self.setup(encoder, seed, device)
        for module in (self.online, self.predictor, self.target, self.queue):
            if module is not None:
                module.to(self.device)

    def make_groups(self) -> list[ParamGroup]:
        modules = [self.online] + ([self.predictor] if self.predictor is not None else [])
        parameters = [p for module in modules for p in module.parameters()]
        return [ParamGroup("network", torch.optim.Adam(parameters, lr=self.config.lr), self.config.epochs)]

    def batch_size(self) -> int:
        return self.config.batch_size

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        views = self.views(batch, self.generator)          # drawn over the whole batch, as one process draws them
        if self.data_parallel is not None:                 # then this process's rows (its own negatives: see docs)
            rows = self.data_parallel.rows(batch.size)
            views = [Batch(v.x[rows], None if v.lengths is None else v.lengths[rows]) for v in views]
        view1, view2 = (on_device(view, self.device) for view in views)
        self.online.train()
        z1, z2 = self.online(view1), self.online(view2)
        p1, p2 = (self.predictor(z1), self.predictor(z2)) if self.predictor is not None else (None, None)
        t1 = t2 = None
        if self.target is not None:
            with torch.no_grad():
                t1, t2 = self.target(view1), self.target(view2)
        branches = Branches(z1, z2, p1, p2, t1, t2, None if self.queue is None else self.queue.embeddings.clone())
        loss = self.method.loss(branches, self.config)
        take_step([self.groups["network"]], loss)
        self.steps += 1
        if self.target is not None:
            total = max(1, self.config.epochs * self._batches_per_epoch)
            ema_update(self.target, self.online, cosine_momentum(min(self.steps, total), total, self.config.momentum))
        if self.queue is not None:
            self.queue.enqueue(F.normalize(t2, dim=1))
        return {"network": {"loss": float(loss.detach())}}

    def epoch_batches(self, n: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        batches = self.draw_batches(n, lengths)
        self._batches_per_epoch = len(batches)   # the momentum schedule's length
        return batches

    def draw_batches(self, n: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        """Row indices of each batch of the next epoch (default: random batches)."""
        return super().epoch_batches(n, lengths)

    def _heads(self) -> list[tuple[str, torch.nn.Module]]:
        """What the checkpoint holds beside the encoder (``state_dict``'s ``network``): heads, target, queue."""
        return [(name, module) for name, module in (("projector", self.online.projector), ("predictor", self.predictor),
                                                     ("target", self.target), ("queue", self.queue))
                if module is not None]

    def state_tensors(self) -> list[torch.Tensor]:
        return [t for name, module in self._heads() if name in ("target", "queue")
                for t in (*module.parameters(), *module.buffers())]

    def extra_state(self) -> dict:
        return {"steps": self.steps, **{name: module.state_dict() for name, module in self._heads()}}

    def load_extra_state(self, state: dict) -> None:
        self.steps = state["steps"]
        for name, module in self._heads():
            module.load_state_dict(state[name])
