"""The back-propagation autoencoder: LAC's baseline (LAC paper, Table 1, "BP pretraining").

The same autoencoder, trained end to end on the same reconstruction target with Adam; the
gradient of the reconstruction error flows back through every layer. Returns the wall time and
the test reconstruction error after each epoch, for the curve beside LAC's.
"""

from __future__ import annotations

import time

import torch

from ..data.batching import epoch_batches
from ..lac.learner import reconstruction_error, reconstruction_target
from ..lac.network import Autoencoder
from ..progress import progress_bar


def train_bp_autoencoder(network: Autoencoder, x: torch.Tensor, test_x: torch.Tensor, epochs: int, lr: float,
                         batch_size: int, target: str = "reconstruct", seed: int = 0,
                         show_progress: bool = True) -> tuple[float, list[float]]:
    """Train ``network`` in place; returns ``(seconds, test reconstruction error per epoch)``."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    errors = []
    for epoch in range(epochs):
        network.train()
        batches = progress_bar(epoch_batches(x.shape[0], batch_size, generator, min_size=2),
                               desc=f"BP autoencoder epoch {epoch + 1}/{epochs}", enabled=show_progress)
        for rows in batches:
            loss = (network(x[rows]) - reconstruction_target(x[rows], target)).square().flatten(1).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        errors.append(reconstruction_error(network, test_x, target))
    network.eval()
    return time.perf_counter() - started, errors
