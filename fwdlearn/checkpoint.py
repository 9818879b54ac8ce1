"""Checkpoints: one versioned layout for every rule, written atomically, read without executing code.

``{"format": "fwdlearn-checkpoint", "version": 2, "learner": NAME, "config": {...}, "input_dim": ...,
"finished": bool, "data": fingerprint, "state": Learner.state_dict()}`` where the learner state is
``{"network", "groups": {name: {"optimizer", "scheduler"}}, "generator", "history", "position", "extra"}``
(``learner.py``). A checkpoint of another version is refused in one line naming its version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomic import read_torch_dict, save_torch
from .errors import CheckpointError
from .presets import config_from_dict

FORMAT = "fwdlearn-checkpoint"
VERSION = 2


def save_checkpoint(path: str | Path, config, input_dim, learner_state: dict, finished: bool,
                    data: dict | None = None) -> Path:
    """Write a checkpoint to ``path`` (temporary file, then rename); ``data`` is the training data's
    ``LabelledDataset.fingerprint()``."""
    input_dim = list(input_dim) if isinstance(input_dim, (tuple, list)) else input_dim
    return save_torch({"format": FORMAT, "version": VERSION, "learner": config.learner, "config": config.to_dict(),
                       "input_dim": input_dim, "finished": finished, "state": learner_state, "data": data}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; its ``config`` entry comes back as the rule's validated config."""
    path = Path(path)
    payload = read_torch_dict(path, "checkpoint", "checkpoint not found", FORMAT)
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported "
                              f"(this fwdlearn reads version {VERSION}; retrain with --fresh)")
    payload["config"] = config_from_dict(payload["config"], f"{path}: config")
    if isinstance(payload["input_dim"], list):
        payload["input_dim"] = tuple(payload["input_dim"])
    return payload


def _what_is_trained(config) -> dict:
    """The configuration without ``backend``: how gradients are computed (fused or autograd, equal to rounding)
    does not change what a run trains, so a run may resume on either."""
    return {k: v for k, v in config.to_dict().items() if k != "backend"}


def resume_from_checkpoint(learner, path: str | Path, config, log, data: dict | None = None) -> None:
    """Load ``learner``'s state from ``path``, refusing a checkpoint of another configuration or, where both
    sides know it, one trained on other data (``data``: the fingerprint ``save_checkpoint`` was given)."""
    payload = load_checkpoint(path)
    if _what_is_trained(payload["config"]) != _what_is_trained(config):
        raise CheckpointError(f"{path}: holds a run with a different configuration; "
                              f"use another --out directory or --fresh to start over")
    saved = payload.get("data")
    if saved is not None and data is not None and "content" not in saved:   # written before content digests
        data = {k: v for k, v in data.items() if k != "content"}
    if saved is not None and data is not None and saved != data:
        differ = sorted(k for k in set(saved) | set(data) if saved.get(k) != data.get(k))
        if differ == ["meta"]:
            differ = [f"meta.{k}" for k in sorted(set(saved["meta"]) | set(data["meta"]))
                      if saved["meta"].get(k) != data["meta"].get(k)]
        raise CheckpointError(f"{path}: holds a run trained on other data ({', '.join(differ)} differ); "
                              f"use another --out directory or --fresh to start over")
    try:
        learner.load_state_dict(payload["state"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    log(f"resuming from {path} ({learner.completed_epochs}/{learner.total_epochs} epochs done)")
