"""Momentum (exponential moving average) target network of MoCo, BYOL and SCE.

Update (He et al. 2020, MoCo Eq. 2; BYOL Grill et al. 2020 Sec. 3.1 Eq. 1; Silva 2022 thesis Eq. 3.14):

    target = m * target + (1 - m) * online           for every parameter; buffers are copied.

BYOL's schedule (Grill et al. 2020, Sec. 3.2; SCE uses it from 0.996 to 1):

    m_k = 1 - (1 - m_0) * (cos(pi k / K) + 1) / 2    so m_0 at k = 0 and 1 at k = K.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import check


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """``m_k`` of BYOL's cosine schedule at ``step`` k of ``total_steps`` K, from ``base`` m_0 up to 1."""
    check(isinstance(base, (int, float)) and 0 <= base < 1, f"cosine_momentum base must lie in [0, 1), got {base!r}")
    check(isinstance(total_steps, int) and total_steps >= 1,
          f"cosine_momentum total_steps must be an integer >= 1, got {total_steps!r}")
    check(isinstance(step, int) and 0 <= step <= total_steps,
          f"cosine_momentum step must lie in [0, {total_steps}], got {step!r}")
    return 1 - (1 - base) * (math.cos(math.pi * step / total_steps) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """Move ``target``'s parameters towards ``online``'s by ``1 - momentum``; copy its buffers.

    ``momentum`` must lie in ``[0, 1)`` as a base value; 1 itself (a frozen target) is accepted because the
    cosine schedule reaches it at its last step. The two modules must have the same parameter and buffer
    names and shapes (the target is a copy of the online network).
    """
    check(isinstance(momentum, (int, float)) and 0 <= momentum <= 1,
          f"ema_update momentum must lie in [0, 1], got {momentum!r}")
    pairs = (("parameters", dict(target.named_parameters()), dict(online.named_parameters())),
             ("buffers", dict(target.named_buffers()), dict(online.named_buffers())))
    for kind, target_tensors, online_tensors in pairs:
        check(target_tensors.keys() == online_tensors.keys(),
              f"ema_update target and online {kind} differ: {sorted(target_tensors.keys() ^ online_tensors.keys())}")
        for name, tensor in target_tensors.items():
            source = online_tensors[name]
            check(tensor.shape == source.shape,
                  f"ema_update {name} has shape {tuple(tensor.shape)} in target, {tuple(source.shape)} online")
            if kind == "buffers":
                tensor.copy_(source)
            else:
                tensor.mul_(momentum).add_(source, alpha=1 - momentum)
