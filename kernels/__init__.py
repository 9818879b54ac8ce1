"""Fused kernels (``fwdlearn.kernels``; lives in the top-level ``kernels/`` folder).

- ``probe_gradients``: one linear-probe minibatch (gather, dropout, logits, cross-entropy
  gradient) in a single cache-resident pass (Numba, CPU).
- ``ProbeEpochRunner``: whole probe epochs (those gradients plus Adam) in one compiled call.
- ``dropout_mask``: the exact mask the kernels apply, for tests and reference.
- ``FakeQuantWeight`` (``fake_quant.py``): Brevitas' weight fake quantisation (per tensor or per
  row) with its exact gradient, in three passes instead of a chain of element-wise operations.
- ``relu_goodness`` (``goodness.py``): SCFF's goodness of ReLU activity as one autograd node that
  saves only the pre-activations.
- ``scff_pair_gradient``, ``scff_step_gradient`` (``scff_pairs.py``, CUDA in ``scff_pairs_cuda.py``): the
  element-wise part of a closed-form local step (goodness, loss, ``R = dL/dP``) in one kernel; the
  ``fused`` backend of the SCFF and FF rules.
- ``translate_into``, ``standardize_rows`` (``views.py``): a local step's inputs in one pass each.
"""

from .goodness import relu_goodness
from .probe import ProbeEpochRunner, dropout_mask, probe_gradients

__all__ = ["ProbeEpochRunner", "probe_gradients", "dropout_mask", "relu_goodness"]
