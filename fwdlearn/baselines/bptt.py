"""Back-propagation through time: the SCFF Bi-RNN's baseline (section 3.5, Fig. 6b; paper: 96 % on FSDD).

The same ``LocalBiRNN`` (standardised input and state at every step, ReLU, 500 units each way) with
a linear head on the final states of both directions, trained end to end with cross-entropy and
Adam, the gradient norm clipped as usual for recurrent networks; the gradient flows back through
every step of both directions. Afterwards the head is
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
               config: BPTTConfig, seed: int = 0, show_progress: bool = True, batching: str = "random"
               ) -> tuple[float, list[dict]]:
    """Train ``network`` (in place) end to end; returns the wall time in seconds and, per epoch, the mean
    cross-entropy and training accuracy of the end-to-end classifier.

    ``batching`` groups sequences into batches as the local learner does (``data/batching.py``).
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(2 * network.directions[0].hidden_size, num_classes)
    parameters = [*network.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    network.train()
    history = []
    for epoch in range(config.epochs):
        batches = progress_bar(epoch_batches(x.shape[0], config.batch_size, generator, batching, lengths),
                               desc=f"BPTT epoch {epoch + 1}/{config.epochs}", enabled=show_progress)
        total_loss, correct = 0.0, 0
        for rows in batches:
            steps = int(lengths[rows].max())
            (features,) = network(x[rows, :steps], lengths[rows])
            logits = head(features)
            loss = F.cross_entropy(logits, y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            total_loss += float(loss.detach()) * rows.numel()
            correct += int((logits.detach().argmax(1) == y[rows]).sum())
            batches.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        history.append({"epoch": epoch + 1, "loss": round(total_loss / x.shape[0], 5),
                        "train_accuracy": round(correct / x.shape[0], 5)})
    network.eval()
    return time.perf_counter() - started, history
