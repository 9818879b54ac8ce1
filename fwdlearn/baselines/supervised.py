"""Supervised back-propagation: the SCFF MLP's end-to-end baseline, on the very same network.

The ``SCFFNetwork`` (per-sample standardised inputs, the same widths, activations and tied
positive-pair form at inference) with a linear head on the layers the probe reads, trained end to
end with cross-entropy and Adam (``end_to_end.py``): the error of the head reaches every layer,
which is what a local rule avoids. Afterwards the head is dropped and the frozen network is read
out by the same linear probe as the SCFF network, and its results sit beside it in results.json.
"""

from __future__ import annotations

import torch

from ..config import BPTTConfig
from ..eval.features import probe_inputs
from ..learner import Batch
from ..nn.scff_network import SCFFNetwork
from .end_to_end import train_end_to_end


def train_supervised(network: SCFFNetwork, x: torch.Tensor, y: torch.Tensor, num_classes: int, config: BPTTConfig,
                     probe_layers: list[int], standardized: bool = False, seed: int = 0, show_progress: bool = True
                     ) -> tuple[float, list[dict]]:
    """Train ``network`` (in place) end to end; returns the wall time in seconds and the per-epoch history.

    ``probe_layers``: the 1-based layers the head reads, as the probe does (empty: all of them).
    """
    probe_layers = list(probe_layers) or list(range(1, len(network.layers) + 1))

    def features_of(batch: Batch) -> torch.Tensor:
        return probe_inputs(network(batch.x), probe_layers, standardized)

    feature_dim = sum(network.layers[i - 1].linear.out_features for i in probe_layers)
    return train_end_to_end(network, features_of, feature_dim, x, y, num_classes, config, seed, show_progress)
