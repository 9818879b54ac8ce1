"""Down-stream classification with a pretrained encoder (LAC paper, section 4.1 and Table 1).

The decoder is dropped and a linear classifier put on the encoder's output. *Linear
evaluation*: the encoder is frozen (evaluation mode), its features computed once, and only the
classifier learns. *Fine-tuning*: encoder and classifier learn together by back-propagation.
Both use SGD with momentum and weight decay, a linear warm-up over the first epochs, and step
decays of the rate (the paper: x0.2 at epochs 60/120/160 of 200; here at the same fractions of
the configured epochs).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import LabelledDataset
from ..eval.readout import Readout
from ..data.batching import epoch_batches
from ..progress import progress_bar
from .config import DownstreamConfig
from .network import Autoencoder, Encoder


def learning_rate(config: DownstreamConfig, epochs: int, step: int, steps_per_epoch: int) -> float:
    """The rate at optimiser step ``step``: linear warm-up, then ``gamma`` per passed decay point."""
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    epoch = step // steps_per_epoch
    return config.lr * config.gamma ** sum(epoch >= round(f * epochs) for f in config.decay_at)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
                      for s in range(0, x.shape[0], batch_size))
    return correct / x.shape[0]


def _train_classifier(model: torch.nn.Module, parameters, x: torch.Tensor, y: torch.Tensor, config: DownstreamConfig,
                      epochs: int, seed: int, desc: str, show_progress: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    steps_per_epoch = len(epoch_batches(x.shape[0], config.batch_size, torch.Generator(), min_size=2))
    step = 0
    for epoch in progress_bar(range(epochs), desc=desc, enabled=show_progress):
        model.train()
        for rows in epoch_batches(x.shape[0], config.batch_size, generator, min_size=2):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epochs, step, steps_per_epoch)
            loss = F.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1


def _features(encoder: Encoder, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return torch.cat([encoder(x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)])


def linear_evaluation(autoencoder: Autoencoder, dataset: LabelledDataset, config: DownstreamConfig, seed: int = 0,
                      show_progress: bool = True, readout_to: str | Path | None = None) -> dict:
    """Frozen encoder, linear classifier on its cached features. Returns accuracies and seconds.

    ``readout_to``: where to save the trained classifier (``Readout``) for export.
    """
    started = time.perf_counter()
    encoder = Encoder(copy.deepcopy(autoencoder))
    train_f, test_f = _features(encoder, dataset.train.x), _features(encoder, dataset.test.x)
    torch.manual_seed(seed)
    head = torch.nn.Linear(train_f.shape[1], dataset.num_classes)
    _train_classifier(head, head.parameters(), train_f, dataset.train.y, config, config.linear_epochs, seed,
                      "linear evaluation", show_progress)
    test_accuracy = round(_accuracy(head, test_f, dataset.test.y), 5)
    if readout_to is not None:
        with torch.no_grad():
            bound = float(head(train_f).abs().max())
        Readout(head.weight.detach().clone(), head.bias.detach().clone(), [1], False, dataset.name,
                dataset.class_names, dataset.sample_shape, test_accuracy, dataset.meta, bound).save(readout_to)
    return {"train_accuracy": round(_accuracy(head, train_f, dataset.train.y), 5), "test_accuracy": test_accuracy,
            "num_features": int(train_f.shape[1]), "seconds": round(time.perf_counter() - started, 2)}


def fine_tune(autoencoder: Autoencoder, dataset: LabelledDataset, config: DownstreamConfig, seed: int = 0,
              show_progress: bool = True) -> dict:
    """Encoder and linear classifier trained together end to end. Returns accuracies and seconds."""
    started = time.perf_counter()
    encoder = Encoder(copy.deepcopy(autoencoder))
    with torch.no_grad():
        width = encoder(dataset.train.x[:2]).shape[1]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(width, dataset.num_classes))
    _train_classifier(model, model.parameters(), dataset.train.x, dataset.train.y, config, config.finetune_epochs,
                      seed, "fine-tuning", show_progress)
    return {"train_accuracy": round(_accuracy(model, dataset.train.x, dataset.train.y), 5),
            "test_accuracy": round(_accuracy(model, dataset.test.x, dataset.test.y), 5),
            "seconds": round(time.perf_counter() - started, 2)}


def downstream(autoencoder: Autoencoder, dataset: LabelledDataset, config: DownstreamConfig, seed: int = 0,
               show_progress: bool = True, readout_to: str | Path | None = None) -> dict:
    """Both protocols (fine-tuning skipped when ``finetune_epochs`` is 0); the linear one's read-out
    is saved to ``readout_to`` if given."""
    result = {"linear_evaluation": linear_evaluation(autoencoder, dataset, config, seed, show_progress, readout_to)}
    if config.finetune_epochs:
        result["fine_tuning"] = fine_tune(autoencoder, dataset, config, seed, show_progress)
    return result
