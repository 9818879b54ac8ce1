"""Back-propagation through time: the SCFF Bi-RNN's baseline (section 3.5, Fig. 6b; paper: 96 % on FSDD).

The same ``LocalBiRNN`` (standardised input and state at every step, ReLU, 500 units each way) with
a linear head on the final states of both directions, trained end to end with cross-entropy and
Adam; the gradient flows back through every step of both directions. Afterwards the head is
dropped and the frozen network is read out by the same linear probe as the local learner.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..config import BPTTConfig
from ..data.batching import epoch_batches
from ..nn.local_birnn import LocalBiRNN
from ..progress import progress_bar


def train_bptt(network: LocalBiRNN, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor, num_classes: int,
               config: BPTTConfig, seed: int = 0, show_progress: bool = True, batching: str = "random") -> float:
    """Train ``network`` (in place) end to end; returns the wall time in seconds.

    ``batching`` groups sequences into batches as the local learner does (``data/batching.py``).
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(2 * network.directions[0].hidden_size, num_classes)
    optimizer = torch.optim.Adam([*network.parameters(), *head.parameters()], lr=config.lr)
    network.train()
    for epoch in range(config.epochs):
        batches = progress_bar(epoch_batches(x.shape[0], config.batch_size, generator, batching, lengths), desc=f"BPTT epoch {epoch + 1}/{config.epochs}",
                               enabled=show_progress)
        for rows in batches:
            steps = int(lengths[rows].max())
            (features,) = network(x[rows, :steps], lengths[rows])
            loss = F.cross_entropy(head(features), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batches.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    network.eval()
    return time.perf_counter() - started
