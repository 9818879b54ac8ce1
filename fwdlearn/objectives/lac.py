"""LAC's hidden-layer objective (LAC paper, Eqs. 1 and 8) as a pure tensor function.

Pass 1 on ``x`` gives every hidden layer's reaction ``S_o``; pass 2 on the detached reconstruction
gives ``S_r``. Each layer's loss is its own activity contrast, summed over units and over the batch
(Algorithm 1's ``torch.sum``):

    L_hidden = sum_layers sum_ij (sg(S_o^ij) - S_r^ij)^2

With every layer's input detached, the gradient reaching layer ``i`` is that of its own term only
(Eq. 8).
"""

from __future__ import annotations

import torch


def hidden_contrast(first: list[torch.Tensor], second: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 1 over every layer, unit and sample of the batch: ``sum (sg(S_o) - S_r)^2``.

    >>> hidden_contrast([torch.tensor([1.0, 2.0])], [torch.tensor([0.0, 2.0])])
    tensor(1.)
    """
    return sum((s_o.detach() - s_r).square().sum() for s_o, s_r in zip(first, second))
