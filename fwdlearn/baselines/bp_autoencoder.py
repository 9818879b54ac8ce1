"""The back-propagation autoencoder: LAC's baseline (LAC paper, Table 1, "BP pretraining").

The same autoencoder, trained end to end on the same reconstruction target with Adam in the same
loop as every rule (one parameter group); the gradient of the reconstruction error flows back
through every layer. Returns the wall time and the test reconstruction error after each epoch, for
the curve beside LAC's.
"""

from __future__ import annotations

import time

import torch

from ..learner import Batch, Learner, ParamGroup
from ..nn.autoencoder import Autoencoder, reconstruction_error, reconstruction_target


class BPAutoencoderLearner(Learner):
    """One group (every layer), Adam on the per-sample summed squared reconstruction error."""

    min_batch = 2   # batch norm

    def __init__(self, network: Autoencoder, test_x: torch.Tensor, epochs: int, lr: float, batch_size: int,
                 target: str = "reconstruct", seed: int = 0):
        self.epochs, self.lr, self.size, self.target, self.test_x = epochs, lr, batch_size, target, test_x
        self.setup(network, seed)

    def make_groups(self) -> list[ParamGroup]:
        return [ParamGroup("network", torch.optim.Adam(self.network.parameters(), lr=self.lr), self.epochs)]

    def batch_size(self) -> int:
        return self.size

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        x = batch.x
        loss = (self.network(x) - reconstruction_target(x, self.target)).square().flatten(1).sum(1).mean()
        optimizer = self.groups["network"].optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"network": {"loss": float(loss.detach())}}

    def end_epoch(self, record: dict[str, dict[str, float]]) -> None:
        record["network"]["test_reconstruction_error"] = reconstruction_error(self.network, self.test_x, self.target)


def train_bp_autoencoder(network: Autoencoder, x: torch.Tensor, test_x: torch.Tensor, epochs: int, lr: float,
                         batch_size: int, target: str = "reconstruct", seed: int = 0,
                         show_progress: bool = True) -> tuple[float, list[float]]:
    """Train ``network`` in place; returns ``(seconds, test reconstruction error per epoch)``."""
    started = time.perf_counter()
    learner = BPAutoencoderLearner(network, test_x, epochs, lr, batch_size, target, seed)
    learner.train(x, show_progress=show_progress)
    return time.perf_counter() - started, [r["test_reconstruction_error"] for r in learner.history]
