"""Evaluation of frozen representations."""

from .features import layer_features, probe_inputs
from .linear_probe import ProbeResult, train_linear_probe

__all__ = ["layer_features", "probe_inputs", "train_linear_probe", "ProbeResult"]
