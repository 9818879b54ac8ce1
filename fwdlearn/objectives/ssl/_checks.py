"""Argument checks shared by the self-supervised losses: each failure is one ``ConfigError`` line."""

from __future__ import annotations

import torch

from ...errors import check


def check_temperature(value: float, name: str) -> None:
    """Refuse a temperature that is not a finite number above zero."""
    check(isinstance(value, (int, float)) and 0 < value < float("inf"),
          f"{name} must be a temperature above 0, got {value!r}")


def check_fraction(value: float, name: str) -> None:
    """Refuse a mixing weight outside ``[0, 1]``."""
    check(isinstance(value, (int, float)) and 0 <= value <= 1, f"{name} must lie in [0, 1], got {value!r}")


def check_embeddings(name: str, first: torch.Tensor, *others: tuple[str, torch.Tensor]) -> None:
    """Refuse embeddings that are not 2-D ``(batch, dim)`` or whose shapes differ from ``first``'s."""
    check(first.dim() == 2, f"{name} must be a (batch, dim) tensor, got shape {tuple(first.shape)}")
    for other_name, other in others:
        check(other.shape == first.shape,
              f"{other_name} has shape {tuple(other.shape)}, but {name} has shape {tuple(first.shape)}")


def check_memory(memory: torch.Tensor, name: str, dim: int) -> None:
    """Refuse a memory of embeddings that is not ``(size, dim)`` with at least one row."""
    check(memory.dim() == 2 and memory.shape[0] >= 1 and memory.shape[1] == dim,
          f"{name} must be a (size >= 1, {dim}) tensor, got shape {tuple(memory.shape)}")
