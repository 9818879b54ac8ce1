"""A closed-form linear read-out: ridge regression onto one-hot labels, solved in one linear system.

The linear probe (``linear_probe.py``, SCFF Appendix G) takes tens of epochs; a study that wants a score after
every training epoch (``tune/pruning.py``) needs one in about a second. Ridge regression of the one-hot labels
on the features (Hoerl & Kennard 1970), ``W = (XᵀX + αI)⁻¹ XᵀY``, read by the largest output, is that: one
Gram matrix and one Cholesky solve, no epochs, no learning rate, deterministic. Features are centred and scaled
per unit on the fitting samples (the same shift and scale applied to the scored ones); ``α`` is ``ridge`` times
``XᵀX``'s mean diagonal, so it does not depend on the features' size. With fewer samples than features the dual
form ``W = Xᵀ(XXᵀ + αI)⁻¹Y`` solves the smaller system (the same ``W``, the same ``α``).

It ranks read-outs, it does not replace the probe: it is fitted on at most a few thousand samples and has no
dropout, so its accuracy sits below the probe's.
"""

from __future__ import annotations

import torch


def ridge_readout_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                           test_y: torch.Tensor, num_classes: int, ridge: float = 1e-2) -> float:
    """Accuracy on ``(test_x, test_y)`` of the ridge read-out fitted on ``(train_x, train_y)`` (2-D features)."""
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"ridge read-out: features must be 2-D with the same width, got {tuple(train_x.shape)} "
                         f"and {tuple(test_x.shape)}")
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError("ridge read-out: no samples to fit or to score")
    x = train_x.double()
    mean, scale = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-8)
    x = (x - mean) / scale
    targets = torch.nn.functional.one_hot(train_y.long(), num_classes).double()
    bias = targets.mean(0)                                       # centred features: the bias is the targets' mean
    targets = targets - bias
    n, d = x.shape
    gram = x.T @ x if d <= n else x @ x.T
    alpha = ridge * gram.diagonal().sum().clamp_min(1e-12) / d      # XᵀX's mean diagonal, in either form
    system = gram + alpha * torch.eye(len(gram), dtype=gram.dtype)
    factor = torch.linalg.cholesky(system)
    if d <= n:
        weight = torch.cholesky_solve(x.T @ targets, factor)
    else:
        weight = x.T @ torch.cholesky_solve(targets, factor)
    scores = ((test_x.double() - mean) / scale) @ weight + bias
    return float((scores.argmax(1) == test_y.long()).double().mean())
