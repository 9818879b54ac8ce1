"""Self-supervised baselines' losses and building blocks (issue 18) against values worked out by hand.

Every expected number is written from the paper's equation with the arithmetic in a comment; the
embeddings are tiny unit-ish vectors so the dot products are 0, +-1 or 1/sqrt(2).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fwdlearn.errors import ConfigError
from fwdlearn.nn.memory_queue import MemoryQueue
from fwdlearn.nn.momentum import cosine_momentum, ema_update
from fwdlearn.nn.ssl_heads import PredictionHead, ProjectionHead
from fwdlearn.objectives.ssl import (barlow_twins_loss, byol_loss, infonce_loss, negative_cosine, nt_xent_loss,
                                     sce_loss, simsiam_loss, vicreg_loss)

E1, E2 = [1.0, 0.0], [0.0, 1.0]
NEG_E1 = [-1.0, 0.0]


def t(rows, grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


def close(value: torch.Tensor, expected: float, tol: float = 1e-6) -> bool:
    return abs(float(value.detach() if isinstance(value, torch.Tensor) else value) - expected) < tol


# ---------------------------------------------------------------- SimCLR NT-Xent
# Views a=e1, b=e2 (view1) and c=e1, d=e1 (view2); pairs (a, c) and (b, d).
# Dot products: a.b=0, a.c=1, a.d=1, b.c=0, b.d=0, c.d=1.
SIMCLR_VIEW1, SIMCLR_VIEW2 = [E1, E2], [E1, E1]


def test_nt_xent_every_view_is_an_anchor_hand_value():
    # tau = 1.  l(a) = -log(e^1 / (e^0 + e^1 + e^1)) = log(1+2e) - 1   (positive c, negatives b, d)
    #           l(b) = -log(e^0 / (e^0 + e^0 + e^0)) = log 3           (positive d, everything at 0)
    #           l(c) = log(1+2e) - 1  (positive a; others a:1, b:0, d:1)
    #           l(d) = log(1+2e)      (positive b at 0; others a:1, c:1)
    # mean over the 2N = 4 anchors = (3 log(1+2e) - 2 + log 3) / 4 = 1.171149
    expected = (3 * math.log(1 + 2 * math.e) - 2 + math.log(3)) / 4
    assert abs(expected - 1.171149) < 1e-6
    assert close(nt_xent_loss(t(SIMCLR_VIEW1), t(SIMCLR_VIEW2), tau=1.0), expected)
    # only the first views as anchors would give (l(a) + l(b)) / 2 = 0.980304: the symmetric form differs
    assert not close(nt_xent_loss(t(SIMCLR_VIEW1), t(SIMCLR_VIEW2), tau=1.0), 0.980304, tol=1e-3)


def test_nt_xent_temperature_scales_the_similarities():
    # tau = 0.5 doubles every logit: e^1 -> e^2, so (3 log(1+2e^2) - 4 + log 3) / 4 = 1.343621
    expected = (3 * math.log(1 + 2 * math.e ** 2) - 4 + math.log(3)) / 4
    assert close(nt_xent_loss(t(SIMCLR_VIEW1), t(SIMCLR_VIEW2), tau=0.5), expected)


def test_nt_xent_is_symmetric_in_the_views_and_uses_cosine_similarity():
    forward = nt_xent_loss(t(SIMCLR_VIEW1), t(SIMCLR_VIEW2), tau=1.0)
    assert close(nt_xent_loss(t(SIMCLR_VIEW2), t(SIMCLR_VIEW1), tau=1.0), float(forward))
    assert close(nt_xent_loss(3 * t(SIMCLR_VIEW1), t(SIMCLR_VIEW2), tau=1.0), float(forward))


# ---------------------------------------------------------------- MoCo InfoNCE
def test_infonce_against_a_queue_hand_value_and_keys_get_no_gradient():
    # tau = 1; queue rows e2, -e1 and (0, 2) -> e2 after normalisation.
    # q1 = e1, key e1: logits [1 | 0, -1, 0]  -> log(e + 1 + 1/e + 1) - 1 = 0.626523
    # q2 = e2, key e1: logits [0 | 1, 0, 1]   -> log(1 + e + 1 + e)       = 2.006409
    # mean = 1.316466
    expected = (math.log(math.e + 2 + 1 / math.e) - 1 + math.log(2 + 2 * math.e)) / 2
    assert abs(expected - 1.316466) < 1e-6
    query, key, queue = t([E1, E2], grad=True), t([E1, E1], grad=True), t([E2, NEG_E1, [0.0, 2.0]], grad=True)
    loss = infonce_loss(query, key, queue, tau=1.0)
    assert close(loss, expected)
    loss.backward()
    assert query.grad is not None and key.grad is None and queue.grad is None


# ---------------------------------------------------------------- BYOL / SimSiam
# p1 rows e1, (1,1); p2 rows e2, (2,0); z1 rows (0,3), e1; z2 rows (2,0), e2.
# cos(p1, z2) = [1, 1/sqrt(2)];  cos(p2, z1) = [1, 1];  (the wrong pairing cos(p1, z1) = [0, 1/sqrt(2)])
P1, P2, Z1, Z2 = [E1, [1.0, 1.0]], [E2, [2.0, 0.0]], [[0.0, 3.0], E1], [[2.0, 0.0], E2]


def test_negative_cosine_per_row():
    assert torch.allclose(negative_cosine(t(P1), t(Z2)), t([-1.0, -1 / math.sqrt(2)]))


def test_byol_sums_the_two_directions_of_2_minus_2cos():
    # L = mean(2 - 2cos(p1, z2)) = (0 + 2 - sqrt 2) / 2 = 0.292893;  L~ = mean(2 - 2cos(p2, z1)) = 0
    # L + L~ = 0.292893  (an average of the two would be 0.146447)
    assert close(byol_loss(t(P1), t(P2), t(Z1), t(Z2)), (2 - math.sqrt(2)) / 2)


def test_simsiam_averages_the_two_directions_of_negative_cosine():
    # 0.5 * mean(-[1, 1/sqrt 2]) + 0.5 * mean(-[1, 1]) = -(1 + 1/sqrt 2)/4 - 0.5 = -0.926777
    assert close(simsiam_loss(t(P1), t(P2), t(Z1), t(Z2)), -(1 + 1 / math.sqrt(2)) / 4 - 0.5)


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_stop_gradient_keeps_the_target_branch_out_of_the_backward_pass(loss):
    p1, p2, z1, z2 = t(P1, grad=True), t(P2, grad=True), t(Z1, grad=True), t(Z2, grad=True)
    loss(p1, p2, z1, z2).backward()
    assert p1.grad is not None and p2.grad is not None
    assert z1.grad is None and z2.grad is None


# ---------------------------------------------------------------- Barlow Twins
def test_barlow_twins_hand_value():
    # view1 columns [0,0,2,2] and [3,1,3,1] standardise to A0 = [-1,-1,1,1], A1 = [1,-1,1,-1] (mean 1 / 2, std 1);
    # view2 columns [3,3,7,7] and [0,0,2,2] standardise to B0 = [-1,-1,1,1], B1 = [-1,-1,1,1] (std 2 / 1).
    # C = A^T B / 4: C00 = 4/4 = 1, C01 = 4/4 = 1, C10 = (-1+1+1-1)/4 = 0, C11 = 0.
    # L = (1-1)^2 + (1-0)^2 + lambda (1^2 + 0^2) = 1 + lambda  (BatchNorm's eps 1e-5 moves it by < 1e-4)
    view1 = t([[0.0, 3.0], [0.0, 1.0], [2.0, 3.0], [2.0, 1.0]])
    view2 = t([[3.0, 0.0], [3.0, 0.0], [7.0, 2.0], [7.0, 2.0]])
    assert close(barlow_twins_loss(view1, view2, lam=0.5), 1.5, tol=1e-4)
    assert close(barlow_twins_loss(view1, view2), 1.005, tol=1e-4)


# ---------------------------------------------------------------- VICReg
def test_vicreg_terms_hand_values():
    # view1 = [[0,0],[2,1]], view2 = [[1,1],[1,3]].
    # invariance: differences [-1,-1],[1,-2] -> (1+1+1+4)/4 = 1.75
    # variance (unbiased, eps 1e-4): view1 columns var 2, 0.5 -> hinges 0, 1 - sqrt(0.5001); v = that / 2
    #                                view2 columns var 0, 2   -> hinges 1 - sqrt(0.0001) = 0.99, 0; v = 0.495
    #   term = (v(Z) + v(Z')) / 2
    # covariance: view1 centred [[-1,-0.5],[1,0.5]] -> C = [[2,1],[1,0.5]], off-diagonal 1^2 + 1^2 = 2, / d = 1;
    #             view2 centred [[0,-1],[0,1]] -> off-diagonal 0.  term = 1 + 0 = 1
    invariance = 1.75
    variance = ((1 - math.sqrt(0.5001)) / 2 + 0.495) / 2
    covariance = 1.0
    terms = vicreg_loss(t([[0.0, 0.0], [2.0, 1.0]]), t([[1.0, 1.0], [1.0, 3.0]]))
    assert close(terms.invariance, invariance) and close(terms.variance, variance)
    assert close(terms.covariance, covariance)
    assert close(terms.loss, 25 * invariance + 25 * variance + 1 * covariance)   # = 52.7676...


# ---------------------------------------------------------------- SCE
# Memory form: online z1 rows e2, e1; target z2 rows e1, e2; memory rows e2, -e1; tau = 1, tau_m = 0.5.
# Query 0 (z1 = e2, positive z2 = e1): online logits [0 | 1, 0], logZ0 = log(2 + e)
#   relations of z2_0 = e1 over the memory (positive excluded, Eq. 3): [0, -1]/0.5 -> s = [1, e^-2]/(1 + e^-2)
# Query 1 (z1 = e1, positive z2 = e2): online logits [0 | 0, -1], logZ1 = log(2 + 1/e)
#   relations of z2_1 = e2 over the memory: [1, 0]/0.5 -> s = [e^2, 1]/(e^2 + 1)
# With sum_k w_ik = 1, loss_i = logZ_i - sum_k w_ik logit_ik (Eq. 8).
SCE_ONLINE, SCE_TARGET, SCE_MEMORY = [E2, E1], [E1, E2], [E2, NEG_E1]
LOG_Z0, LOG_Z1 = math.log(2 + math.e), math.log(2 + 1 / math.e)
S0_FIRST = 1 / (1 + math.exp(-2))      # query 0's relation to memory row e2
S1_SECOND = 1 / (math.exp(2) + 1)      # query 1's relation to memory row -e1 (its logit is -1)


def sce(lam, **kwargs):
    return sce_loss(t(SCE_ONLINE), t(SCE_TARGET), t(SCE_MEMORY), lam=lam, tau=1.0, tau_m=0.5, **kwargs)


def test_sce_with_a_memory_hand_value():
    # lambda = 0.5: loss0 = logZ0 - 0.5 * s0[first] * 1 = 1.551445 - 0.440399 = 1.111046
    #               loss1 = logZ1 - 0.5 * s1[second] * (-1) = 0.861994 + 0.059601 = 0.921595;  mean = 1.016321
    expected = ((LOG_Z0 - 0.5 * S0_FIRST) + (LOG_Z1 + 0.5 * S1_SECOND)) / 2
    assert abs(expected - 1.016321) < 1e-6
    assert close(sce(0.5), expected)


def test_sce_lambda_one_is_moco_infonce():
    # lambda = 1: w is one-hot on the positive (logit 0 for both queries): mean(logZ0, logZ1) = 1.206720
    expected = (LOG_Z0 + LOG_Z1) / 2
    assert close(sce(1.0), expected)
    assert close(infonce_loss(t(SCE_ONLINE), t(SCE_TARGET), t(SCE_MEMORY), tau=1.0), expected)


def test_sce_lambda_zero_is_the_relational_loss():
    # lambda = 0: only the sharpened relations: loss0 = logZ0 - s0[first] = 0.670648,
    #             loss1 = logZ1 + s1[second] = 0.981197; mean = 0.825923
    assert close(sce(0.0), ((LOG_Z0 - S0_FIRST) + (LOG_Z1 + S1_SECOND)) / 2)


def _proposition_one_parts(online, target, memory, tau, tau_m):
    """L_InfoNCE (Eq. 1), L_ReSSL (Eqs. 2-4) and L_Ceil (Eq. 9) as explicit sums over the memory rows k."""
    info_nce = ressl = ceil = 0.0
    for z1, z2 in zip(online, target):
        positive = math.exp(float(z1 @ z2) / tau)
        others = [math.exp(float(z1 @ m) / tau) for m in memory]
        sharp = [math.exp(float(z2 @ m) / tau_m) for m in memory]
        s1 = [o / sum(others) for o in others]                          # Eq. 2
        s2 = [s / sum(sharp) for s in sharp]                            # Eq. 3
        info_nce += -math.log(positive / (positive + sum(others)))      # Eq. 1
        ressl += -sum(b * math.log(a) for a, b in zip(s1, s2))          # Eq. 4
        ceil += -math.log(sum(others) / (positive + sum(others)))       # L_Ceil
    count = len(online)
    return info_nce / count, ressl / count, ceil / count


def test_sce_decomposes_as_proposition_one():
    # Eq. 9: L_SCE = lambda L_InfoNCE + (1 - lambda)(L_ReSSL + L_Ceil), on random unit vectors in 3-d
    generator = torch.Generator().manual_seed(3)
    online, target, memory = (torch.randn(n, 3, generator=generator, dtype=torch.float64) for n in (4, 4, 5))
    online, target, memory = (nn.functional.normalize(x, dim=1) for x in (online, target, memory))
    info_nce, ressl, ceil = _proposition_one_parts(online, target, memory, tau=0.1, tau_m=0.07)
    for lam in (0.0, 0.3, 1.0):
        assert close(sce_loss(online, target, memory, lam=lam), lam * info_nce + (1 - lam) * (ressl + ceil))


def test_sce_in_batch_form_excludes_the_positive_from_the_relations():
    # No memory (Eqs. 3 and 7 as printed): online rows e1, e1, e2; target rows e1, e2, -e1; tau 1, tau_m 0.5.
    # q0: logits [1 | 0, -1], logZ = log(e + 1 + 1/e); relations of e1 to (e2, -e1): [0,-2] -> [1, e^-2]/(1+e^-2)
    #     loss0 = logZ - (0.5*1 + 0.5*(s*0 + s'*(-1))) = logZ - 0.5 + 0.5 e^-2/(1+e^-2) = 0.967208
    # q1: logits [0 | 1, -1], logZ the same; relations of e2 to (e1, -e1): [0, 0] -> [1/2, 1/2]
    #     loss1 = logZ - 0.5 (0.5*1 + 0.5*(-1)) = logZ = 1.407606
    # q2: logits [0 | 0, 1], logZ = log(2 + e); relations of -e1 to (e1, e2): [-2, 0] -> [e^-2, 1]/(1+e^-2)
    #     loss2 = logZ - 0.5 * 1/(1+e^-2) = 1.111046;   mean = 1.161953
    log_z = math.log(math.e + 1 + 1 / math.e)
    sharp = math.exp(-2) / (1 + math.exp(-2))
    expected = ((log_z - 0.5 + 0.5 * sharp) + log_z + (math.log(2 + math.e) - 0.5 * (1 - sharp))) / 3
    assert abs(expected - 1.161953) < 1e-6
    assert close(sce_loss(t([E1, E1, E2]), t([E1, E2, NEG_E1]), lam=0.5, tau=1.0, tau_m=0.5), expected)


def test_sce_sharper_relations_with_lower_tau_m():
    # tau_m -> 0 makes s2 one-hot on the most similar memory row: query 0 -> e2 (logit 1), query 1 -> e2 (logit 0)
    # lambda = 0: mean(logZ0 - 1, logZ1 - 0) = 0.706720
    sharpest = sce_loss(t(SCE_ONLINE), t(SCE_TARGET), t(SCE_MEMORY), lam=0.0, tau=1.0, tau_m=1e-3)
    assert close(sharpest, ((LOG_Z0 - 1) + LOG_Z1) / 2)


def test_sce_target_and_memory_get_no_gradient():
    online, target, memory = t(SCE_ONLINE, grad=True), t(SCE_TARGET, grad=True), t(SCE_MEMORY, grad=True)
    sce_loss(online, target, memory).backward()
    assert online.grad is not None and target.grad is None and memory.grad is None


# ---------------------------------------------------------------- memory queue
def test_memory_queue_fifo_order_and_wrap_around():
    queue = MemoryQueue(size=3, dim=2)
    assert torch.allclose(queue.embeddings.norm(dim=1), torch.ones(3))     # starts with random unit rows
    queue.enqueue(torch.tensor([[1.0, 0.0], [2.0, 0.0]]))                   # slots 0, 1; pointer -> 2
    assert int(queue.pointer) == 2
    queue.enqueue(torch.tensor([[3.0, 0.0], [4.0, 0.0]]))                   # slots 2, 0 (wraps); pointer -> 1
    assert int(queue.pointer) == 1
    assert queue.embeddings[:, 0].tolist() == [4.0, 2.0, 3.0]
    assert queue.oldest_first()[:, 0].tolist() == [2.0, 3.0, 4.0]


def test_memory_queue_lives_in_the_state_dict():
    queue = MemoryQueue(size=3, dim=2)
    queue.enqueue(torch.tensor([[5.0, 6.0]]))
    restored = MemoryQueue(size=3, dim=2, seed=1)
    restored.load_state_dict(queue.state_dict())
    assert torch.equal(restored.embeddings, queue.embeddings) and int(restored.pointer) == 1


def test_memory_queue_refuses_a_batch_larger_than_itself():
    with pytest.raises(ConfigError, match="smaller than the batch of 4") as error:
        MemoryQueue(size=3, dim=2).enqueue(torch.zeros(4, 2))
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- momentum target
def _linear(weight, bias):
    layer = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        layer[0].weight.copy_(torch.tensor([weight]))
        layer[0].bias.fill_(bias)
    return layer


def test_ema_step_moves_parameters_and_copies_buffers():
    online, target = _linear([1.0, 2.0], 0.0), _linear([3.0, 4.0], 1.0)
    online[1].running_mean.fill_(7.0)
    ema_update(target, online, momentum=0.75)
    # 0.75 * [3, 4] + 0.25 * [1, 2] = [2.5, 3.5];  0.75 * 1 + 0.25 * 0 = 0.75;  running mean copied: 7
    assert target[0].weight.tolist() == [[2.5, 3.5]] and target[0].bias.item() == 0.75
    assert target[1].running_mean.item() == 7.0
    assert online[0].weight.tolist() == [[1.0, 2.0]]                       # the online network is untouched


def test_cosine_momentum_schedule_endpoints_and_midpoint():
    assert cosine_momentum(0, 10, 0.996) == pytest.approx(0.996)          # cos 0 = 1   -> m_0
    assert cosine_momentum(10, 10, 0.996) == pytest.approx(1.0)           # cos pi = -1 -> 1
    assert cosine_momentum(5, 10, 0.996) == pytest.approx(0.998)          # cos pi/2 = 0 -> 1 - 0.004/2


# ---------------------------------------------------------------- heads
def test_heads_have_the_requested_widths_and_batch_norm_layout():
    byol = ProjectionHead(4, 8, 3)
    simsiam = ProjectionHead(4, 8, 3, depth=3, output_batch_norm=True)
    simclr = ProjectionHead(4, 8, 3, batch_norm=False)
    predictor = PredictionHead(3, 2, 3)
    count = lambda head: sum(isinstance(m, nn.BatchNorm1d) for m in head)   # noqa: E731
    assert (count(byol), count(simsiam), count(simclr), count(predictor)) == (1, 3, 0, 1)
    assert [m.out_features for m in simsiam if isinstance(m, nn.Linear)] == [8, 8, 3]
    assert byol(torch.randn(5, 4)).shape == (5, 3) and predictor(torch.randn(5, 3)).shape == (5, 3)


# ---------------------------------------------------------------- invalid arguments
TWO = torch.zeros(2, 2)
INVALID = {
    "nt_xent tau 0": (lambda: nt_xent_loss(TWO, TWO, tau=0.0), "tau"),
    "nt_xent shapes": (lambda: nt_xent_loss(TWO, torch.zeros(3, 2)), "view2 has shape"),
    "infonce tau negative": (lambda: infonce_loss(TWO, TWO, TWO, tau=-1.0), "tau"),
    "infonce queue width": (lambda: infonce_loss(TWO, TWO, torch.zeros(4, 3)), "queue"),
    "byol shapes": (lambda: byol_loss(TWO, TWO, torch.zeros(2, 3), TWO), "target has shape"),
    "simsiam 1-d": (lambda: simsiam_loss(torch.zeros(2), TWO, TWO, TWO), "(batch, dim)"),
    "barlow lambda": (lambda: barlow_twins_loss(TWO, TWO, lam=-1.0), "lam"),
    "barlow batch of 1": (lambda: barlow_twins_loss(torch.zeros(1, 2), torch.zeros(1, 2)), "at least 2"),
    "vicreg eps": (lambda: vicreg_loss(TWO, TWO, eps=0.0), "eps"),
    "sce lambda above 1": (lambda: sce_loss(TWO, TWO, TWO, lam=1.5), "lam"),
    "sce lambda below 0": (lambda: sce_loss(TWO, TWO, TWO, lam=-0.1), "lam"),
    "sce tau_m 0": (lambda: sce_loss(TWO, TWO, TWO, tau_m=0.0), "tau_m"),
    "sce shapes": (lambda: sce_loss(TWO, torch.zeros(3, 2), TWO), "target has shape"),
    "ema momentum": (lambda: ema_update(nn.Linear(2, 1), nn.Linear(2, 1), momentum=1.5), "momentum"),
    "ema mismatched": (lambda: ema_update(nn.Linear(2, 1), nn.Linear(3, 1), momentum=0.5), "shape"),
    "schedule base 1": (lambda: cosine_momentum(0, 10, 1.0), "base"),
    "schedule step past K": (lambda: cosine_momentum(11, 10, 0.9), "step"),
    "queue size 0": (lambda: MemoryQueue(size=0, dim=2), "size"),
    "head width 0": (lambda: ProjectionHead(4, 0, 3), "hidden_features"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_arguments_are_refused_in_one_line(name):
    call, fragment = INVALID[name]
    with pytest.raises(ConfigError) as error:
        call()
    assert fragment in str(error.value) and "\n" not in str(error.value)
