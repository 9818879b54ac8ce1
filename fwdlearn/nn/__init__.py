"""Local blocks: each computes its own output; nothing but activations leaves it. Constructors take plain
arguments (sizes, flags, ``QuantConfig``/``ConvConfig`` value objects declared here), never a run config."""

from .activations import triangle
from .blocks import LocalBlock, PairedBlock
from .paired_linear import PairedLinear

__all__ = ["LocalBlock", "PairedBlock", "PairedLinear", "triangle"]
