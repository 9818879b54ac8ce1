"""The fused backend: closed-form local updates (methods section 6) equal autograd's, on the CPU and in the CUDA simulator.

``kernels/scff_pairs.py`` computes SCFF's loss and ``dL/dP`` between two products without a graph; the learners'
``backend = "fused"`` uses it with ``dW = R^T x``. Every check compares against autograd through the rule's own
reference path (``backend = "torch"``: ``combine``, ``relu_goodness``, ``scff_loss``, ``backward``), never against
the kernel's own formulas.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import small_config

import fwdlearn.registry
from test_quant import quantised_config
from test_scff_cnn import conv_config

from fwdlearn.kernels.goodness import relu_goodness
from fwdlearn.kernels.lac_contrast import lac_contrast
from fwdlearn.kernels.scff_pairs import scff_pair_gradient, scff_step_gradient
from fwdlearn.learner import Batch
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.objectives.ff import ff_goodness, ff_loss
from fwdlearn.objectives.scff import scff_loss
from fwdlearn.rules.ff import FFLearner
from fwdlearn.rules.scff import SCFFConvLearner, SCFFLearner

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
K = torch.arange(6)
# (pos_left, pos_right, neg_left, neg_right) over 12 projection rows, as the pair builders make them
PAIRINGS = {
    "paper [x_k, x_k] / [x_k, x_k+s]": (K, K, K, (K + 2) % 6),
    "two views (translate)": (K, K + 6, K, 6 + (K + 1) % 6),
    "Algorithm 1 (single views)": (K, None, K + 6, None),
}


def autograd_reference(P, bias, pairing, theta_pos, theta_neg, penalty):
    """Loss, ``dL/dP`` and ``dL/db`` by autograd through the reference path's own operations."""
    P, bias = P.detach().requires_grad_(), bias.detach().requires_grad_()
    shaped = bias.view(1, -1, *[1] * (P.dim() - 2))

    def combine(left, right):
        return P[left] + shaped if right is None else P[left] + P[right] + 2 * shaped
    pos_left, pos_right, neg_left, neg_right = pairing
    terms = scff_loss(relu_goodness(combine(pos_left, pos_right)), relu_goodness(combine(neg_left, neg_right)),
                      theta_pos, theta_neg, penalty)
    grad_P, grad_b = torch.autograd.grad(terms.loss, [P, bias])
    return dataclasses.replace(terms, loss=terms.loss.detach()), grad_P, grad_b


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(12, 40), (12, 5, 3, 4)], ids=["dense", "maps"])
@pytest.mark.parametrize("pairing", list(PAIRINGS))
def test_pair_kernel_equals_autograd(pairing, shape, dtype):
    generator = torch.Generator().manual_seed(3)
    P = torch.randn(*shape, generator=generator, dtype=dtype)
    bias = 0.3 * torch.randn(shape[1], generator=generator, dtype=dtype)
    terms, grad_P, grad_b = autograd_reference(P, bias, PAIRINGS[pairing], 1.0, 1.5, 0.05)
    out = scff_pair_gradient(P, bias, *PAIRINGS[pairing], theta_pos=1.0, theta_neg=1.5, penalty=0.05)
    assert out.rows.shape == P.shape and out.rows.dtype == dtype
    assert relative(out.rows, grad_P) < TOLERANCE[dtype]
    assert relative(out.bias_gradient(), grad_b) < TOLERANCE[dtype]
    assert out.loss == pytest.approx(float(terms.loss), rel=TOLERANCE[dtype])
    assert out.goodness_pos == pytest.approx(float(terms.goodness_pos), rel=TOLERANCE[dtype])
    assert out.goodness_neg == pytest.approx(float(terms.goodness_neg), rel=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pair_kernel_with_summed_goodness_equals_forward_forwards_loss(dtype):
    """Forward-Forward (Hinton section 2): goodness the sum of squared ReLU activities, one threshold, each example
    a single row (positives first, negatives after), no penalty."""
    generator = torch.Generator().manual_seed(4)
    P = torch.randn(12, 30, generator=generator, dtype=dtype, requires_grad=True)
    bias = (0.3 * torch.randn(30, generator=generator, dtype=dtype)).requires_grad_()
    y = torch.relu(P + bias)
    terms = ff_loss(ff_goodness(y[:6]), ff_goodness(y[6:]), 25.0)
    grad_P, grad_b = torch.autograd.grad(terms.loss, [P, bias])
    out = scff_pair_gradient(P, bias, K, None, K + 6, None, 25.0, 25.0, 0.0, goodness="sum")
    assert relative(out.rows, grad_P) < TOLERANCE[dtype] and relative(out.bias_gradient(), grad_b) < TOLERANCE[dtype]
    assert out.loss == pytest.approx(float(terms.loss.detach()), rel=TOLERANCE[dtype])


def step_reference(Z, bias, lengths, num_pos, theta_pos, theta_neg, penalty):
    """Autograd through the recurrent learner's own loss: goodness of every real step, the masked ``scff_loss``."""
    Z, bias = Z.detach().requires_grad_(), bias.detach().requires_grad_()
    valid = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    g = Z.new_zeros(valid.shape).masked_scatter(valid, relu_goodness(Z + bias))
    terms = scff_loss(g[:num_pos], g[num_pos:], theta_pos, theta_neg, penalty, valid[:num_pos], valid[num_pos:])
    grad_Z, grad_b = torch.autograd.grad(terms.loss, [Z, bias])
    return dataclasses.replace(terms, loss=terms.loss.detach()), grad_Z, grad_b


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_kernel_equals_autograd_on_sequences_of_different_lengths(dtype):
    lengths = torch.tensor([5, 3, 4, 1, 5, 2, 2])
    Z = torch.randn(int(lengths.sum()), 9, generator=torch.Generator().manual_seed(2), dtype=dtype)
    bias = torch.linspace(-0.5, 0.5, 9, dtype=dtype)
    terms, grad_Z, grad_b = step_reference(Z, bias, lengths, 3, 1.0, 1.5, 0.05)
    out = scff_step_gradient(Z, bias, lengths, 3, 1.0, 1.5, 0.05)
    assert relative(out.rows, grad_Z) < TOLERANCE[dtype] and relative(out.bias_gradient(), grad_b) < TOLERANCE[dtype]
    assert out.loss == pytest.approx(float(terms.loss), rel=TOLERANCE[dtype])
    assert out.goodness_pos == pytest.approx(float(terms.goodness_pos), rel=TOLERANCE[dtype])
    with pytest.raises(ValueError, match="counts"):
        scff_step_gradient(Z, bias, lengths + 1, 3, 1.0, 1.5)


def test_pair_kernel_handles_dead_units_and_saturated_losses():
    """All-negative pre-activations (goodness 0: the penalty's norm has no direction) and losses deep in both tails."""
    P = torch.full((12, 8), -3.0, dtype=torch.float64)
    P[:6] = 40.0 * torch.rand(6, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bias = torch.zeros(8, dtype=torch.float64)
    for pairing in PAIRINGS.values():
        terms, grad_P, grad_b = autograd_reference(P, bias, pairing, 0.5, 300.0, 1e-3)
        out = scff_pair_gradient(P, bias, *pairing, theta_pos=0.5, theta_neg=300.0, penalty=1e-3)
        assert torch.isfinite(out.rows).all()
        assert torch.allclose(out.rows, grad_P, rtol=1e-10, atol=1e-14)
        assert out.loss == pytest.approx(float(terms.loss), rel=1e-10)


def test_pair_kernel_refuses_rows_outside_the_projections():
    with pytest.raises(ValueError, match="index"):
        scff_pair_gradient(torch.zeros(4, 3), torch.zeros(3), K[:4], K[:4] + 1, K[:4], None, 1.0, 1.0)
    with pytest.raises(ValueError, match="bias"):
        scff_pair_gradient(torch.zeros(4, 3), torch.zeros(2), K[:2], K[:2], K[:2], None, 1.0, 1.0)


# ----- the learners: the gradients each optimiser steps with, fused against autograd -------------------------

def stepped_gradients(learner, batch: Batch) -> dict[str, list[torch.Tensor]]:
    """One ``train_batch`` of every group; the gradient each parameter holds when its optimiser steps."""
    seen: dict[str, list[torch.Tensor]] = {}
    for name, group in learner.groups.items():
        def record(optimizer, args, kwargs, name=name, group=group):
            seen[name] = [p.grad.detach().clone() for p in group.parameters]
        group.optimizer.register_step_pre_hook(record)
    learner.train_batch(batch, list(learner.groups))
    return seen


def both_backends(make, batch: Batch, dtype: torch.dtype):
    found = {}
    for backend in ("torch", "fused"):
        learner = make(backend)
        learner.network.to(dtype)
        found[backend] = stepped_gradients(learner, Batch(batch.x.to(dtype), y=batch.y))
    return found["torch"], found["fused"]


CONFIGS = {
    "mlp, Algorithm 1": lambda: small_config("simultaneous", algorithm=1, widths=(32, 24, 16)),
    "mlp, Algorithm 2, translated views": lambda: small_config("simultaneous", algorithm=2, translate=1,
                                                               widths=(32, 24)),
    "mlp, 4-bit weights and inputs": lambda: quantised_config(schedule="simultaneous"),
    "mlp, 3-bit per-channel weights": lambda: quantised_config(3, 0, True, schedule="simultaneous", algorithm=2),
    "cnn, Algorithm 1": lambda: conv_config("simultaneous", 1, widths=(6, 8, 5)),
    "cnn, Algorithm 2": lambda: conv_config("simultaneous", 2, widths=(6, 8)),
}


def _ff_config():
    from conftest import tiny_config
    config = tiny_config("ff")
    return dataclasses.replace(config, layers=[dataclasses.replace(layer, theta=2.0) for layer in config.layers])


CONFIGS["ff (Hinton), tiny preset, theta 2"] = _ff_config


def _learner(config_name: str, backend: str):
    config = dataclasses.replace(CONFIGS[config_name](), backend=backend)
    if config.learner == "ff":
        return FFLearner(config, 64)
    if config.learner == "scff-cnn":
        return SCFFConvLearner(config, (1, 8, 8))
    return SCFFLearner(config, 64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_fused_learner_steps_with_autograds_gradients(config_name, dtype):
    if "bit" in config_name and dtype == torch.float64:
        pytest.skip("Brevitas' quantisers compute in float32")
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    x = images if config_name.startswith("cnn") or "translated" in config_name else images.flatten(1)
    labels = torch.arange(16) % 10 if config_name.startswith("ff") else None
    reference, fused = both_backends(lambda backend: _learner(config_name, backend), Batch(x, y=labels), dtype)
    assert set(fused) == set(reference) and len(fused) >= 2
    for name in reference:
        assert len(fused[name]) == len(reference[name])
        for got, want in zip(fused[name], reference[name]):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert relative(got, want) < TOLERANCE[dtype], (config_name, name)


@pytest.mark.parametrize("quant", [None, QuantConfig(4, 4)], ids=["float", "w4a4"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_recurrent_steps_with_autograds_gradients(dtype, quant):
    """scff-rnn (Eq. 4, no BPTT): sequences of different lengths, positives and negatives of several shifts; a
    quantised direction's gradients include its quantisers' scales."""
    if quant is not None and dtype == torch.float64:
        pytest.skip("Brevitas' quantisers compute in float32")
    from conftest import tiny_learner
    found = {}
    for backend in ("torch", "fused"):
        learner, batch = tiny_learner("scff-rnn")
        config = dataclasses.replace(learner.config, backend=backend, quant=quant or learner.config.quant,
                                     data=dataclasses.replace(learner.config.data, negatives=2))
        learner = type(learner)(config, learner.input_dim)
        learner.network.to(dtype)
        assert len(set(batch.lengths.tolist())) > 1
        found[backend] = stepped_gradients(learner, Batch(batch.x.to(dtype), batch.lengths))
    assert set(found["fused"]) == {"forward", "backward"}
    for name, grads in found["torch"].items():
        assert len(found["fused"][name]) == len(grads) == (3 if quant is None else 5)   # + the two input scales
        for got, want in zip(found["fused"][name], grads):
            assert relative(got, want) < TOLERANCE[dtype], name


def test_the_gradient_comparison_catches_a_wrong_kernel(monkeypatch):
    """Control: a kernel that drops the penalty's gradient (only the first layer has lambda > 0) is caught."""
    import fwdlearn.rules.scff as scff_rule
    real = scff_rule.scff_pair_gradient
    monkeypatch.setattr(scff_rule, "scff_pair_gradient", lambda *args: real(*args[:-1], 0.0))
    x = torch.rand(16, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference, fused = both_backends(lambda backend: _learner("mlp, Algorithm 1", backend), Batch(x), torch.float64)
    assert relative(fused["layer1"][0], reference["layer1"][0]) > 1e-6


FUSED_RULES = [name for name, rule in fwdlearn.registry.rules().items()
               if rule.local and "backend" in {f.name for f in dataclasses.fields(rule.config)}]


def test_every_rule_with_a_backend_choice_is_covered():
    assert set(FUSED_RULES) == {"scff-mlp", "scff-cnn", "scff-rnn", "ff", "lac-mlp", "lac-conv"}


@pytest.mark.parametrize("name", FUSED_RULES)
def test_a_fused_step_writes_only_its_own_groups_gradients(name):
    """Locality of the fused backend, for every rule that has one: when a group's optimiser steps, the parameters
    holding a gradient are exactly that group's (the reference backend's locality is checked on its graph,
    ``tests/test_locality.py``; the gradients are equal, above)."""
    from conftest import tiny_learner
    learner, batch = tiny_learner(name)
    assert learner.config.backend == "fused"
    owner = {id(p): group_name for group_name, group in learner.groups.items() for p in group.parameters}
    holders = []
    for group_name, group in learner.groups.items():
        def check(optimizer, args, kwargs, group_name=group_name):
            holders.append((group_name, {owner[id(p)] for p in learner.network.parameters() if p.grad is not None}))
        group.optimizer.register_step_pre_hook(check)
    learner.train_batch(batch, list(learner.groups))
    assert sorted(holders) == sorted((g, {g}) for g in learner.groups)


def test_fused_mlp_layers_hand_on_projections_without_a_graph():
    learner = SCFFLearner(small_config("simultaneous", algorithm=1, widths=(32, 24, 16)), 64)
    graphs = []
    real = SCFFLearner.pass_on
    learner.pass_on = lambda i, projected, batch: (graphs.append(projected.projections.requires_grad),
                                                   real(learner, i, projected, batch))[1]
    learner.train_batch(Batch(torch.rand(16, 64)), list(learner.groups))
    assert graphs == [False, False]


def test_a_run_trained_with_either_backend_ends_at_the_same_network():
    """Two epochs of the two-layer digits MLP, sequential as the presets train: float32 rounding apart, the same
    weights (AdamW's normalised steps would hide a small gradient error, so the gradients are tested above)."""
    from fwdlearn.data import load_dataset
    x = load_dataset("digits").train.x[:256]
    learners = {}
    for backend in ("torch", "fused"):
        learners[backend] = SCFFLearner(dataclasses.replace(small_config(epochs=2), backend=backend), 64)
        learners[backend].train(x, show_progress=False)
    for a, b in zip(learners["torch"].network.parameters(), learners["fused"].network.parameters()):
        assert relative(b.detach(), a.detach()) < 1e-4
    losses = [[r["loss"] for r in learners[b].history] for b in ("torch", "fused")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


# ----- LAC's hidden contrast in closed form ------------------------------------------------------------------------

def lac_reference(u_input, linear, norm, s_o):
    """Autograd through the layer's own modules: ``S_r = BN(W a + b)`` (batch statistics), Eq. 1's contrast."""
    linear, norm = linear.train(), norm.train()
    s_r = norm(linear(u_input))
    loss = (s_o - s_r).square().sum()
    grads = torch.autograd.grad(loss, [linear.weight, linear.bias, norm.weight, norm.bias])
    return loss.detach(), grads, torch.relu(s_r.detach())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lac_contrast_kernel_equals_autograd(dtype):
    generator = torch.Generator().manual_seed(6)
    a = torch.randn(24, 10, generator=generator, dtype=dtype)
    linear, norm = torch.nn.Linear(10, 7).to(dtype), torch.nn.BatchNorm1d(7).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=generator)
        norm.bias.normal_(generator=generator)
    s_o = torch.randn(24, 7, generator=generator, dtype=dtype)
    loss, (g_w, g_b, g_gamma, g_beta), activity = lac_reference(a, linear, norm, s_o)
    with torch.no_grad():
        out = lac_contrast(linear(a), s_o.clone(), norm.weight, norm.bias, norm.eps)
    assert relative(out.du.t() @ a, g_w) < TOLERANCE[dtype]
    assert relative(out.gamma, g_gamma) < TOLERANCE[dtype] and relative(out.beta, g_beta) < TOLERANCE[dtype]
    assert relative(out.activity, activity) < TOLERANCE[dtype]
    assert out.loss == pytest.approx(float(loss), rel=TOLERANCE[dtype])
    # dL/db is 0: batch norm removes any constant added before it; autograd's is rounding noise
    assert float(out.du.sum(0).abs().max()) < 1e3 * TOLERANCE[dtype] * float(out.du.abs().max())
    assert float(g_b.abs().max()) < 1e3 * TOLERANCE[dtype] * float(g_w.abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_lac_steps_with_autograds_gradients(dtype):
    """lac-mlp, one update of both groups: every hidden parameter's gradient as autograd's, the output layer's, and
    batch norm's buffers. Two gradients are 0 in exact arithmetic and rounding noise in both: the linear layers'
    biases (batch norm removes any constant before it; the kernel returns exactly 0) and batch norm's shifts
    (both passes' reactions have batch mean beta, so ``sum (S_o - S_r) = 0``)."""
    from conftest import tiny_learner
    found, buffers = {}, {}
    for backend in ("torch", "fused"):
        learner, batch = tiny_learner("lac-mlp")
        learner = type(learner)(dataclasses.replace(learner.config, backend=backend), learner.input_dim)
        learner.network.to(dtype).train()
        found[backend] = stepped_gradients(learner, Batch(batch.x.to(dtype)))
        buffers[backend] = [b.clone() for b in learner.network.buffers()]
    names = [name for name, p in learner.network.named_parameters()]
    hidden = [name for name in names if name.startswith("hidden")]
    for group in ("hidden", "output"):
        group_names = hidden if group == "hidden" else [n for n in names if not n.startswith("hidden")]
        for name, got, want in zip(group_names, found["fused"][group], found["torch"][group]):
            scale = float(found["torch"][group][0].abs().max())
            if name.endswith("transform.bias") or name.endswith("norm.bias"):
                assert float(got.abs().max()) < 1e-4 * scale and float(want.abs().max()) < 1e-4 * scale, name
                assert not name.endswith("transform.bias") or not got.any()
            else:
                assert relative(got, want) < TOLERANCE[dtype], name
    assert all(torch.equal(a, b) for a, b in zip(buffers["fused"], buffers["torch"]))


# ----- the CUDA kernels, in numba-cuda's simulator ----------------------------------------------------------------

SIMULATED = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_fused_updates import PAIRINGS, autograd_reference, relative, step_reference
    from fwdlearn.kernels.scff_pairs import example_rows
    from fwdlearn.kernels.scff_pairs_cuda import pair_gradient_cuda, step_gradient_cuda
    from numba import cuda
    assert cuda.simulator_enabled if hasattr(cuda, "simulator_enabled") else True
    generator = torch.Generator().manual_seed(5)
    worst = 0.0
    for shape in [(12, 7), (12, 3, 2, 3)]:
        for dtype in (torch.float64, torch.float32):
            P = torch.randn(*shape, generator=generator, dtype=dtype)
            bias = 0.3 * torch.randn(shape[1], generator=generator, dtype=dtype)
            for pairing in PAIRINGS.values():
                terms, grad_P, grad_b = autograd_reference(P, bias, pairing, 1.0, 1.5, 0.05)
                out = pair_gradient_cuda(P, bias, *example_rows(*pairing), 1.0 / shape[1], len(pairing[0]), 1.0, 1.5,
                                         0.05)
                scale = 1e-10 if dtype == torch.float64 else 1e-5
                error = max(relative(out.rows, grad_P), relative(out.bias_gradient(), grad_b),
                            abs(out.loss - float(terms.loss)) / float(terms.loss))
                assert error < scale, (shape, dtype, error)
                worst = max(worst, error / scale)
    lengths = torch.tensor([3, 1, 2, 3, 2])
    Z = torch.randn(int(lengths.sum()), 4, generator=generator, dtype=torch.float64)
    bias = torch.linspace(-0.5, 0.5, 4, dtype=torch.float64)
    terms, grad_Z, grad_b = step_reference(Z, bias, lengths, 2, 1.0, 1.5, 0.05)
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    out = step_gradient_cuda(Z, bias, starts, 0.25, 2, 1.0, 1.5, 0.05)
    assert relative(out.rows, grad_Z) < 1e-10 and relative(out.bias_gradient(), grad_b) < 1e-10
    assert abs(out.loss - float(terms.loss)) < 1e-10
    from test_fused_updates import lac_reference
    from fwdlearn.kernels.lac_contrast_cuda import lac_contrast_cuda
    a = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    linear, norm = torch.nn.Linear(5, 3).double(), torch.nn.BatchNorm1d(3).double()
    s_o = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    loss, (g_w, g_b, g_gamma, g_beta), activity = lac_reference(a, linear, norm, s_o)
    with torch.no_grad():
        out = lac_contrast_cuda(linear(a), s_o.clone(), norm.weight.detach(), norm.bias.detach(), norm.eps)
    assert relative(out.du.t() @ a, g_w) < 1e-10 and relative(out.gamma, g_gamma) < 1e-10
    assert relative(out.activity, activity) < 1e-10 and abs(out.loss - float(loss)) < 1e-10 * float(loss)
    print("simulated ok", worst)
""")


def test_cuda_kernels_without_numba_cuda_are_a_one_line_error(monkeypatch):
    """The fused backend on a GPU without numba-cuda: one line naming the extra and --backend torch."""
    import importlib

    from fwdlearn.errors import ConfigError
    from fwdlearn.kernels.cuda_support import cuda_kernels

    def missing(name, package=None):
        raise ModuleNotFoundError("No module named 'numba.cuda'")
    monkeypatch.setattr(importlib, "import_module", missing)
    for module in ("scff_pairs_cuda", "lac_contrast_cuda"):
        with pytest.raises(ConfigError) as error:
            cuda_kernels(module)
        assert "fwdlearn[cuda]" in str(error.value) and "--backend torch" in str(error.value)
        assert "\n" not in str(error.value)


def test_cuda_kernels_equal_autograd_in_the_simulator():
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-c", SIMULATED.format(tests=tests)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "simulated ok" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", [(200, 2000), (64, 96, 14, 14)], ids=["dense", "maps"])
def test_cuda_kernels_equal_autograd_on_the_gpu(shape):
    generator = torch.Generator().manual_seed(5)
    P = torch.randn(*shape, generator=generator).cuda()
    bias = (0.3 * torch.randn(shape[1], generator=generator)).cuda()
    half = shape[0] // 2
    k = torch.arange(half, device="cuda")
    pairing = (k, k + half, k, half + (k + 3) % half)
    terms, grad_P, grad_b = autograd_reference(P, bias, pairing, 1.0, 1.5, 0.05)
    out = scff_pair_gradient(P, bias, *pairing, theta_pos=1.0, theta_neg=1.5, penalty=0.05)
    assert out.rows.is_cuda and relative(out.rows, grad_P) < 1e-5 and relative(out.bias_gradient(), grad_b) < 1e-5
