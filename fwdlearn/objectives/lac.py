"""LAC's hidden-layer objective (LAC paper, Eqs. 1 and 8) as a pure tensor function.

Pass 1 on ``x`` gives every hidden layer's reaction ``S_o``; pass 2 on the detached reconstruction
gives ``S_r``. Each layer's loss is its own activity contrast, summed over units and over the batch
(Algorithm 1's ``torch.sum``):

    L_hidden = sum_layers sum_ij (sg(S_o^ij) - S_r^ij)^2

With every layer's input detached, the gradient reaching layer ``i`` is that of its own term only
(Eq. 8). ``layer_contrast`` is one layer's term: the learner (``rules/lac.py``) takes its backward
as soon as the layer's second pass is done, so that only one layer's graph is alive at a time;
``hidden_contrast`` is their sum, the loss as the paper writes it.
"""

from __future__ import annotations

import torch


class _Contrast(torch.autograd.Function):
    """``sum (S_o - S_r)^2`` with ``S_o`` constant; its graph keeps the difference and nothing else.

    The same value and gradient as ``(S_o - S_r).square().sum()`` (bit for bit: ``-2 d`` is what autograd's
    square and subtraction give), without the temporaries autograd's square would allocate in backward.
    """

    @staticmethod
    def forward(ctx, s_o: torch.Tensor, s_r: torch.Tensor, overwrite: bool) -> torch.Tensor:
        difference = s_o.sub_(s_r) if overwrite else s_o - s_r
        ctx.save_for_backward(difference)
        return difference.square().sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (difference,) = ctx.saved_tensors
        # d/dS_r sum (S_o - S_r)^2 = -2 (S_o - S_r); S_o is the stop-gradient target
        return None, difference * (-2 * grad), None


def layer_contrast(s_o: torch.Tensor, s_r: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
    """Eq. 1 for one layer, over its units and the samples of the batch: ``sum (sg(S_o) - S_r)^2``.

    ``overwrite``: ``S_o - S_r`` is written over ``S_o`` (no copy), for a caller that has no further use
    for ``S_o``.

    >>> layer_contrast(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]))
    tensor(1.)
    """
    return _Contrast.apply(s_o.detach(), s_r, overwrite)


def hidden_contrast(first: list[torch.Tensor], second: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 1 over every layer, unit and sample of the batch: ``sum (sg(S_o) - S_r)^2``.

    >>> hidden_contrast([torch.tensor([1.0, 2.0])], [torch.tensor([0.0, 2.0])])
    tensor(1.)
    """
    return sum(layer_contrast(s_o, s_r) for s_o, s_r in zip(first, second))
