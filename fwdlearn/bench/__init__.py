"""What one learning update costs: time, tensor memory, operations and energy (``fwdlearn bench``)."""

from .measure import UpdateCost, measure_update
from .updates import RULES, build_update

__all__ = ["RULES", "UpdateCost", "build_update", "measure_update"]
