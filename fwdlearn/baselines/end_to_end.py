"""The training loop shared by the end-to-end back-propagation baselines (BPTT, supervised BP).

A linear head on the features the probe reads, cross-entropy, Adam, the gradient norm clipped if
asked; the gradient reaches every layer of the network. Afterwards the head is dropped and the
frozen network is read out by the same linear probe as the local learner, so the two are
compared on equal terms.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import BPTTConfig
from ..data.batching import epoch_batches
from ..progress import progress_bar


def train_end_to_end(network: torch.nn.Module, features_of: Callable[[torch.Tensor], torch.Tensor], feature_dim: int,
                     y: torch.Tensor, num_classes: int, config: BPTTConfig, seed: int = 0, show_progress: bool = True,
                     batching: str = "random", lengths: torch.Tensor | None = None, name: str = "BP"
                     ) -> tuple[float, list[dict]]:
    """Train ``network`` (in place) through ``features_of(rows)`` -> linear head -> cross-entropy.

    Returns the wall time in seconds and, per epoch, the mean cross-entropy and the training
    accuracy of the end-to-end classifier.
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(feature_dim, num_classes)
    parameters = [*network.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    network.train()
    n = y.shape[0]
    history = []
    for epoch in range(config.epochs):
        batches = progress_bar(epoch_batches(n, config.batch_size, generator, batching, lengths),
                               desc=f"{name} epoch {epoch + 1}/{config.epochs}", enabled=show_progress)
        total_loss, correct = 0.0, 0
        for rows in batches:
            logits = head(features_of(rows))
            loss = F.cross_entropy(logits, y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            total_loss += float(loss.detach()) * rows.numel()
            correct += int((logits.detach().argmax(1) == y[rows]).sum())
            batches.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        history.append({"epoch": epoch + 1, "loss": round(total_loss / n, 5), "train_accuracy": round(correct / n, 5)})
    network.eval()
    return time.perf_counter() - started, history
