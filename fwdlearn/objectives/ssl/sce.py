"""Similarity Contrastive Estimation (Denize et al., WACV 2023, "Similarity contrastive estimation for
self-supervised soft contrastive learning", Sec. 3.2, Eqs. 3 and 6-8).

``z1`` (online branch, view 1) and ``z2`` (momentum target branch, view 2) are l2-normalised. For query i
the instances ``k`` are its positive ``z2_i`` and the other instances (the other targets of the batch in
Eqs. 3/7 as printed, or the memory buffer "of size M >> N filled by z2" that replaces them in practice):

    s2_ik = 1[i!=k] exp(z2_i.z2_k / tau_m) / sum_j 1[i!=j] exp(z2_i.z2_j / tau_m)   (Eq. 3: relations)
    w2_ik = lambda 1[i=k] + (1 - lambda) s2_ik                                      (Eq. 6: target)
    p1_ik = exp(z1_i.z2_k / tau) / sum_j exp(z1_i.z2_j / tau)                      (Eq. 7: online)
    L_SCE = -1/N sum_i sum_k w2_ik log p1_ik                                         (Eq. 8)

The positive is excluded from the relations ``s2`` (the indicator ``1[i!=k]`` of Eq. 3) but included in
the online distribution ``p1`` ("including z_i^2 in opposition with ReSSL"). So ``lambda = 1`` is MoCo's
InfoNCE (Eq. 1) and ``lambda = 0`` is the relational part alone, which by Proposition 1 (Eq. 9) equals
``L_ReSSL + L_Ceil`` (not ReSSL alone: ReSSL's online distribution leaves the positive out).

Defaults ``lambda = 0.5, tau = 0.1, tau_m = 0.07``: the paper's ablation on ImageNet100 "found the best
values tau_m = 0.07 and tau = 0.1" (Table 6: 83.37 vs 82.94 for tau_m = 0.05), and for ImageNet "we keep
the best from ablation study: lambda = 0.5, tau = 0.1 and tau_m = 0.07". ``tau_m = 0.05`` is only the
setting of the lambda sweep (Table 1); the per-dataset values for CIFAR/STL/Tiny-ImageNet are in the
supplementary material, which is not in ``shared/papers``.

The targets and the memory get no gradient (they come from the momentum branch). The paper's optional
symmetrised loss is the mean of this function over both view orders, with each view through each branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import check
from ._checks import check_embeddings, check_fraction, check_memory, check_temperature


def _positive_and_others(query: torch.Tensor, target: torch.Tensor,
                         memory: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dot products of each query row with its positive target row ``(N, 1)`` and with the other instances.

    The others are the memory rows ``(N, M)``, or, without a memory, the batch's other targets ``(N, N-1)``.
    """
    positive = (query * target).sum(dim=1, keepdim=True)
    if memory is not None:
        return positive, query @ memory.T
    count = target.shape[0]
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=target.device)
    return positive, (query @ target.T)[off_diagonal].reshape(count, count - 1)


def sce_loss(online: torch.Tensor, target: torch.Tensor, memory: torch.Tensor | None = None,
             lam: float = 0.5, tau: float = 0.1, tau_m: float = 0.07) -> torch.Tensor:
    """Eq. 8: cross-entropy between the target ``w2`` (Eq. 6) and the online ``p1`` (Eq. 7).

    ``online`` is ``z1`` and ``target`` is ``z2``, both ``(N, dim)``; ``memory`` is ``(M, dim)`` past target
    embeddings, or ``None`` for the in-batch form printed in Eqs. 3 and 7 (needs N >= 2).
    """
    check_fraction(lam, "sce_loss lam")
    check_temperature(tau, "sce_loss tau")
    check_temperature(tau_m, "sce_loss tau_m")
    check_embeddings("sce_loss online", online, ("sce_loss target", target))
    if memory is None:
        check(online.shape[0] >= 2, f"sce_loss without a memory needs a batch of at least 2, got {online.shape[0]}")
    else:
        check_memory(memory, "sce_loss memory", online.shape[1])
        memory = F.normalize(memory.detach(), dim=1)
    query = F.normalize(online, dim=1)
    target = F.normalize(target.detach(), dim=1)
    online_positive, online_others = _positive_and_others(query, target, memory)
    _, target_others = _positive_and_others(target, target, memory)
    log_p = torch.log_softmax(torch.cat([online_positive, online_others], dim=1) / tau, dim=1)
    relations = torch.softmax(target_others / tau_m, dim=1)                       # Eq. 3, k != i
    weights = torch.cat([torch.full_like(online_positive, lam), (1 - lam) * relations], dim=1)  # Eq. 6
    return -(weights * log_p).sum(dim=1).mean()                                    # Eq. 8
