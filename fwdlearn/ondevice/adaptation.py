"""Adapting a deployed encoder to new, unlabelled data with its exported update, and the same adaptation in PyTorch.

``adapt_on_device`` drives the exported graphs with ``runtime.UpdateRunner`` (onnxruntime and numpy only);
``adapt_in_pytorch`` takes the learner's own steps (``UpdateStage.reference_step``) on the same batches with the
same draws (both draw with ``runtime.draw`` from a generator seeded alike, stage after stage), so the two end
at the same weights up to float rounding. The read-out stays as trained: what changes is the encoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .runtime import InferenceModel, UpdateRunner, draw, read_manifest


@dataclass
class Adapted:
    """The encoder's parameters after adaptation, the losses per step and the seconds per update (all stages)."""

    parameters: dict[str, np.ndarray]
    losses: list[dict[str, float]]
    seconds_per_update: float


def batch_order(n: int, batch_size: int, epochs: int, seed: int) -> list[np.ndarray]:
    """Full batches of a fresh permutation per epoch (a partial last batch is dropped: the graphs have a fixed
    batch size); fewer samples than one batch are drawn with replacement."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(epochs):
        if n < batch_size:
            batches.append(rng.choice(n, size=batch_size, replace=True))
            continue
        order = rng.permutation(n)
        batches += [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return batches


def adapt_on_device(manifest: str | Path, x: np.ndarray, lengths: np.ndarray | None, epochs: int, seed: int = 0,
                    lr: float | None = None) -> Adapted:
    runner = UpdateRunner(manifest, seed=seed)
    if lr is not None:
        runner.lr = {name: lr for name in runner.lr}
    losses, seconds = [], []
    for index in batch_order(x.shape[0], runner.batch_size, epochs, seed):
        started = time.perf_counter()
        losses.append(runner.step(x[index], None if lengths is None else lengths[index]))
        seconds.append(time.perf_counter() - started)
    return Adapted(dict(runner.parameters), losses, float(np.median(seconds)))


def adapt_in_pytorch(checkpoint: str | Path, manifest: str | Path, x: np.ndarray, lengths: np.ndarray | None,
                     epochs: int, seed: int = 0, lr: float | None = None) -> Adapted:
    """The learner's own updates on ``adapt_on_device``'s batches and draws, its optimiser continuing from the
    trained state as the device does (``export.continue_with``)."""
    from .export import continue_with, device_optimizer, load_learner
    from .offered import update_stages_for
    spec = read_manifest(manifest)
    _, rule, learner = load_learner(checkpoint)
    stages = update_stages_for(rule.name)(learner, sample_shape=tuple(x.shape[1:]), steps=spec["frames"])
    described = {s["name"]: s for s in spec["stages"]}
    for stage in stages:
        group = stage.group(learner)
        rate = lr if lr is not None else described[stage.name]["lr"]
        continue_with(group, device_optimizer(spec["optimizer"]["name"], group.optimizer), rate)
    rng = np.random.default_rng(seed)
    losses, seconds = [], []
    for index in batch_order(x.shape[0], spec["batch_size"], epochs, seed):
        feeds = [draw(described[s.name]["inputs"], rng, x[index], None if lengths is None else lengths[index])
                 for s in stages]
        started = time.perf_counter()
        # top stage first: each stage reads the stages below as they were when the batch arrived (as the device)
        for stage, batch in reversed(list(zip(stages, feeds))):
            stage.reference_step(learner, {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()})
        seconds.append(time.perf_counter() - started)
        losses.append({})
    parameters = {k: v.detach().float().numpy().copy() for k, v in learner.network.state_dict().items()}
    return Adapted(parameters, losses, float(np.median(seconds)))


def accuracy(model_path: str | Path, parameters: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
             y: np.ndarray) -> float:
    """Accuracy of the exported inference model with ``parameters`` as its encoder's weights."""
    model = InferenceModel(model_path, parameters)
    logits = model.run(x, lengths)
    return float((logits.argmax(1) == y).mean())
