"""Local blocks: each computes its own output; nothing but activations leaves it."""

from .activations import triangle
from .paired_linear import PairedLinear

__all__ = ["PairedLinear", "triangle"]
