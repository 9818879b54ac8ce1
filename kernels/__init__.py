"""Fused kernels (``fwdlearn.kernels``; lives in the top-level ``kernels/`` folder).

- ``probe_gradients``: one linear-probe minibatch (gather, dropout, logits, cross-entropy
  gradient) in a single cache-resident pass (Numba, CPU).
- ``dropout_mask``: the exact mask that kernel applies, for tests and reference.
"""

from .probe import dropout_mask, probe_gradients

__all__ = ["probe_gradients", "dropout_mask"]
