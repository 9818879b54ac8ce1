"""The interface of a local block, declared: what a layer-local rule may ask of a layer.

A local block sees only its own (detached) input. ``LocalBlock`` is what every goodness-based rule
uses (SCFF, Forward-Forward): the inference output, the goodness of an output, the activity passed
on to the next block and the features the linear probe reads. ``PairedBlock`` adds what SCFF's tied
pairs need (SCFF Appendix A): project each distinct view once, then combine two views' projections
into a pair's pre-activation. ``tests/test_blocks.py`` runs every registered rule's blocks through
these protocols.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class LocalBlock(Protocol):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output at inference (what ``goodness`` and ``passed`` are applied to)."""

    def goodness(self, z: torch.Tensor) -> torch.Tensor:
        """One goodness value per sample (or a map per sample) of an output."""

    def passed(self, z: torch.Tensor) -> torch.Tensor:
        """The activity sent on to the next block."""

    def tap(self, passed: torch.Tensor) -> torch.Tensor:
        """The features the linear probe reads from the passed-on activity, ``[N, features]``."""


@runtime_checkable
class PairedBlock(LocalBlock, Protocol):
    def project(self, views: torch.Tensor) -> torch.Tensor:
        """``W x`` (no bias) of every distinct view, once."""

    def combine(self, projections: torch.Tensor, left: torch.Tensor, right: torch.Tensor | None) -> torch.Tensor:
        """Pre-activations of examples made of rows ``left`` (and ``right`` for pairs) of ``projections``."""
