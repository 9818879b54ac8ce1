"""Checkpoints: everything needed to resume a run or to evaluate its network, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import save_torch
from .config import SCFFConfig, config_from_dict
from .errors import CheckpointError

FORMAT = "fwdlearn-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, config: SCFFConfig, input_dim: int, learner_state: dict, finished: bool,
                    data: dict | None = None) -> Path:
    """Write a checkpoint to ``path`` (temporary file, then rename); ``data`` is the training data's
    ``LabelledDataset.fingerprint()``."""
    return save_torch({"format": FORMAT, "version": VERSION, "learner": config.learner, "config": config.to_dict(),
                       "input_dim": input_dim, "finished": finished, "state": learner_state, "data": data}, path)


def read_torch_dict(path: str | Path, what: str, missing: str, file_format: str) -> dict[str, Any]:
    """A dict saved by ``torch.save`` whose ``format`` entry is ``file_format``, or a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {missing}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CheckpointError(f"{path}: not a fwdlearn {what}")
    return payload


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; its ``config`` entry comes back as a validated ``SCFFConfig``."""
    path = Path(path)
    payload = read_torch_dict(path, "checkpoint", "checkpoint not found", FORMAT)
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported "
                              f"(this fwdlearn reads version {VERSION})")
    payload["config"] = config_from_dict(payload["config"], f"{path}: config")
    return payload


def resume_from_checkpoint(learner, path: str | Path, config, log, data: dict | None = None) -> None:
    """Load ``learner``'s state from ``path``, refusing a checkpoint of another configuration or, where both
    sides know it, one trained on other data (``data``: the fingerprint ``save_checkpoint`` was given)."""
    payload = load_checkpoint(path)
    if payload["config"].to_dict() != config.to_dict():
        raise CheckpointError(f"{path}: holds a run with a different configuration; "
                              f"use another --out directory or --fresh to start over")
    saved = payload.get("data")
    if saved is not None and data is not None and saved != data:
        differ = sorted(k for k in set(saved) | set(data) if saved.get(k) != data.get(k))
        if differ == ["meta"]:
            differ = [f"meta.{k}" for k in sorted(set(saved["meta"]) | set(data["meta"]))
                      if saved["meta"].get(k) != data["meta"].get(k)]
        raise CheckpointError(f"{path}: holds a run trained on other data ({', '.join(differ)} differ); "
                              f"use another --out directory or --fresh to start over")
    learner.load_state_dict(payload["state"])
    log(f"resuming from {path} ({learner.completed_epochs}/{learner.total_epochs} epochs done)")
