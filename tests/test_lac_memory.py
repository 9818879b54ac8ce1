"""LAC's layer-by-layer update: the same numbers as Eq. 1 summed over layers with one backward, in a
fraction of the memory.

``LACLearner.train_batch`` keeps the pass-1 reactions ``S_o`` detached (no graph), steps the output layer
right after its backward, and runs pass 2 one layer at a time, taking each layer's backward as soon as its
contrast is formed. ``reference_update`` below is the plain statement of Algorithm 1 it replaced: both
passes with their graphs, ``sum (sg(S_o) - S_r)^2`` over every layer plus the output loss, one backward,
one step of each group. In float64 the two give the same gradients, parameters, batch-norm buffers and
losses to ~1e-10; and the new update saves for backward at most one layer's tensors at any moment.
"""

from __future__ import annotations

import weakref

import pytest
import torch

from fwdlearn.bench.memory import peak_tensor_bytes
from fwdlearn.learner import Batch
from fwdlearn.nn.autoencoder import reconstruction_target
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.presets import check_for_rule, load_preset
from fwdlearn.registry import get_rule

try:
    import brevitas  # noqa: F401
    HAVE_BREVITAS = True
except ImportError:
    HAVE_BREVITAS = False

RTOL = 1e-10


def _config(learner="lac-mlp", **overrides):
    """The rule's embedded preset on the autograd backend (the layer-by-layer update this file checks; the fused
    closed-form contrast is compared with it in ``tests/test_fused_updates.py``)."""
    config = load_preset("lac-digits" if learner == "lac-mlp" else "lac-conv-digits")
    config.backend = "torch"
    for key, value in overrides.items():
        setattr(config, key, value)
    return check_for_rule(config.validate())


def _learner(config, dtype=torch.float64):
    learner = get_rule(config.learner).learner(config, (1, 8, 8))
    learner.network.to(dtype)         # parameters converted in place: the optimisers hold the same tensors
    learner.network.train()
    return learner


def _images(n=32, seed=0, dtype=torch.float64):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).to(dtype)


def reference_update(learner, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
    """Algorithm 1 as first written: both passes with their graphs, Eq. 1 summed over every layer, unit and
    sample plus the output loss, one backward of the active groups' losses, one step of each group."""
    network, x = learner.network, batch.x
    groups = [learner.groups[name].optimizer for name in active]
    for optimizer in groups:
        optimizer.zero_grad(set_to_none=True)
    first, reconstruction = network.passes(x, local=True)
    with network.frozen_norm_statistics():
        second, _ = network.passes(reconstruction.detach(), local=True)
    losses = {"hidden": sum((s_o.detach() - s_r).square().sum() for s_o, s_r in zip(first, second)),
              "output": (reconstruction - reconstruction_target(x, learner.config.target)).square().sum()}
    sum(losses[name] for name in active).backward()
    for optimizer in groups:
        optimizer.step()
    return {name: {"loss": float(losses[name].detach()) / batch.size} for name in active}


def _record_gradients(learner) -> dict[str, list[list[torch.Tensor]]]:
    """The gradients each group's optimiser steps on, step after step (a step pre-hook)."""
    seen = {name: [] for name in learner.groups}
    for name, group in learner.groups.items():
        def hook(optimizer, args, kwargs, name=name):
            seen[name].append([p.grad.clone() for p in learner.groups[name].parameters])
        group.optimizer.register_step_pre_hook(hook)
    return seen


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.abs().max().clamp_min(1e-300)
    assert float((actual - expected).abs().max() / scale) <= RTOL, what


CASES = [
    pytest.param("lac-mlp", {}, ["hidden", "output"], id="mlp"),
    pytest.param("lac-mlp", {"target": "flip"}, ["hidden", "output"], id="mlp-flip"),
    pytest.param("lac-mlp", {}, ["hidden"], id="mlp-hidden-only"),
    pytest.param("lac-mlp", {}, ["output"], id="mlp-output-only"),
    pytest.param("lac-conv", {}, ["hidden", "output"], id="conv"),
    pytest.param("lac-mlp", {"quant": QuantConfig(4, 4, per_channel=True)}, ["hidden", "output"], id="mlp-w4a4",
                 marks=pytest.mark.skipif(not HAVE_BREVITAS, reason="needs brevitas")),
]


@pytest.mark.parametrize("rule,overrides,active", CASES)
def test_layer_by_layer_update_equals_one_backward_of_the_summed_losses(rule, overrides, active):
    """Three updates of both formulations from the same initial network on the same batches: the gradients each
    optimiser steps on, the parameters after every step, the batch-norm buffers and the logged losses agree to
    ~1e-10 relative in float64."""
    config = _config(rule, **overrides)
    new, old = _learner(config), _learner(config)
    new_grads, old_grads = _record_gradients(new), _record_gradients(old)
    for step in range(3):
        batch = Batch(_images(seed=step))
        new_stats = new.train_batch(batch, active)
        old_stats = reference_update(old, batch, active)
        assert set(new_stats) == set(old_stats) == set(active)
        for name in active:
            assert new_stats[name]["loss"] == pytest.approx(old_stats[name]["loss"], rel=RTOL, abs=0)
        for (key, a), (_, b) in zip(new.network.state_dict().items(), old.network.state_dict().items()):
            if torch.is_floating_point(b):
                _close(a, b, f"step {step + 1}: {key}")
            else:
                assert torch.equal(a, b), f"step {step + 1}: {key}"      # num_batches_tracked: both passes
    for name in new.groups:
        steps = 3 if name in active else 0
        assert len(new_grads[name]) == len(old_grads[name]) == steps
        for i, (mine, theirs) in enumerate(zip(new_grads[name], old_grads[name])):
            for a, b in zip(mine, theirs):
                _close(a, b, f"{name} gradient, step {i + 1}")
    for name in active:   # the optimisers' moments too
        for a, b in zip(_optimizer_tensors(new, name), _optimizer_tensors(old, name)):
            _close(a, b, f"{name} optimiser state")


def _optimizer_tensors(learner, name: str) -> list[torch.Tensor]:
    optimizer = learner.groups[name].optimizer
    return [v for p in learner.groups[name].parameters for v in optimizer.state[p].values()
            if isinstance(v, torch.Tensor) and torch.is_floating_point(v) and v.dim() > 0]


def test_the_comparison_can_fail():
    """Control: the reference without the stop-gradient on S_o (the contrast then also trains pass 1) gives other
    hidden-layer gradients, which the comparison above would name."""
    config = _config()
    new, old = _learner(config), _learner(config)
    new_grads, old_grads = _record_gradients(new), _record_gradients(old)
    batch = Batch(_images())
    new.train_batch(batch, ["hidden"])
    network = old.network
    old.groups["hidden"].optimizer.zero_grad(set_to_none=True)
    first, reconstruction = network.passes(batch.x, local=True)
    with network.frozen_norm_statistics():
        second, _ = network.passes(reconstruction.detach(), local=True)
    sum((s_o - s_r).square().sum() for s_o, s_r in zip(first, second)).backward()
    old.groups["hidden"].optimizer.step()
    differences = [float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
                   for a, b in zip(new_grads["hidden"][0], old_grads["hidden"][0])]
    assert max(differences) > 1e-3


# ----- memory -----------------------------------------------------------------------------------------------

class SavedForBackward:
    """Bytes of the activations autograd saves for backward that are alive, at most (parameters, which every
    graph saves and which persist anyway, are not counted)."""

    def __init__(self, parameters):
        self.parameters = {p.untyped_storage().data_ptr() for p in parameters}
        self.live = self.peak = 0

    def pack(self, tensor: torch.Tensor):
        if tensor.untyped_storage().data_ptr() in self.parameters:
            return tensor
        size = tensor.numel() * tensor.element_size()
        box = _Box(tensor)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(box, self._released, size)
        return box

    def _released(self, size: int) -> None:
        self.live -= size

    @staticmethod
    def unpack(packed):
        return packed.tensor if isinstance(packed, _Box) else packed

    def __enter__(self):
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


class _Box:
    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def _deep_learner(depth: int, width: int = 64, batch: int = 64):
    config = _config(hidden=[width] * depth, encoder_layers=depth, batch_size=batch)
    return _learner(config, torch.float32), Batch(_images(batch, dtype=torch.float32))


def _saved_peak(update, learner, batch) -> int:
    with SavedForBackward(learner.network.parameters()) as saved:
        update(learner, batch, list(learner.groups))
    return saved.peak


def test_the_update_saves_one_layer_for_backward_at_a_time():
    """The peak of activations saved for backward does not grow with depth (one hidden layer's graph, or the
    output layer's, at a time), while the one-backward formulation's grows with every layer."""
    train = type(_deep_learner(1)[0]).train_batch
    peaks = {depth: _saved_peak(train, *_deep_learner(depth)) for depth in (2, 6)}
    assert peaks[6] == peaks[2]
    reference = {depth: _saved_peak(reference_update, *_deep_learner(depth)) for depth in (2, 6)}
    layer = 64 * 64 * 4                           # one [batch, width] float32 activation
    assert reference[6] - reference[2] >= 4 * 2 * layer     # control: two passes' graphs of four more layers
    assert peaks[6] <= 4 * layer


def test_the_update_allocates_far_less_than_the_one_backward_formulation():
    """The peak tensor memory of one update (as ``fwdlearn bench`` measures it), at depth 6."""
    new, batch = _deep_learner(6, width=256, batch=256)
    old, _ = _deep_learner(6, width=256, batch=256)
    active = list(new.groups)
    new.train_batch(batch, active)
    reference_update(old, batch, active)
    new_peak = peak_tensor_bytes(lambda: new.train_batch(batch, active), torch.device("cpu"))
    old_peak = peak_tensor_bytes(lambda: reference_update(old, batch, active), torch.device("cpu"))
    assert new_peak < 0.5 * old_peak, (new_peak, old_peak)
