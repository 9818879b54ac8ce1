"""Back-propagation through time: the SCFF Bi-RNN's baseline (section 3.5, Fig. 6b; paper: 96 % on FSDD).

The same ``LocalBiRNN`` (standardised input and state at every step, ReLU, 500 units each way) with
a linear head on the final states of both directions, trained end to end with cross-entropy and
Adam, the gradient norm clipped as usual for recurrent networks; the gradient flows back through
every step of both directions (``end_to_end.py``). Afterwards the head is dropped and the frozen
network is read out by the same linear probe as the local learner.
"""

from __future__ import annotations

import torch

from ..config import BPTTConfig
from ..learner import Batch
from ..nn.local_birnn import LocalBiRNN
from .end_to_end import train_end_to_end


def train_bptt(network: LocalBiRNN, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor, num_classes: int,
               config: BPTTConfig, seed: int = 0, show_progress: bool = True, batching: str = "random"
               ) -> tuple[float, list[dict]]:
    """Train ``network`` (in place) end to end; returns the wall time in seconds and the per-epoch history.

    ``batching`` groups sequences into batches as the local learner does (``data/batching.py``).
    """
    def features_of(batch: Batch) -> torch.Tensor:
        steps = int(batch.lengths.max())
        return network(batch.x[:, :steps], batch.lengths)[0]

    return train_end_to_end(network, features_of, 2 * network.directions[0].hidden_size, x, y, num_classes, config,
                            seed, show_progress, batching, lengths)
