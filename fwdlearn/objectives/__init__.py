"""Per-layer objectives as pure functions of tensors."""

from .goodness import goodness
from .scff_loss import SCFFLossTerms, scff_loss

__all__ = ["goodness", "scff_loss", "SCFFLossTerms"]
