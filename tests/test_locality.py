"""Locality: no gradient reaches another layer's parameters, and every layer's input is detached."""

from __future__ import annotations

import pytest
import torch
from conftest import GradientArrivals, small_config

from fwdlearn.learners import SCFFMLPLearner
from fwdlearn.learners.pairs import data_pairs


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("algorithm", [1, 2])
def test_each_gradient_comes_from_its_own_layer_only(images, algorithm):
    """Training all layers at once, each parameter receives exactly one gradient per batch: its own layer's."""
    learner = SCFFMLPLearner(small_config("simultaneous", algorithm, widths=(32, 24, 16)), 64)
    arrivals = {i: 0 for i in range(3)}
    for i, layer in enumerate(learner.network.layers):
        layer.linear.weight.register_hook(lambda grad, i=i: arrivals.__setitem__(i, arrivals[i] + 1))
    learner.train_batch(images, active=[0, 1, 2])
    assert arrivals == {0: 1, 1: 1, 2: 1}


def test_deeper_layer_loss_has_no_path_to_earlier_parameters(images):
    """Backward of layer 2's loss computes no gradient for any parameter of layer 1."""
    learner = SCFFMLPLearner(small_config(), 64)
    trainer_1, trainer_2 = learner.trainers
    batch = data_pairs(images, learner.generator)
    z_pos, z_neg = trainer_1.preactivations(batch)           # computed WITH grad on layer 1's weights
    next_batch = learner.next_layer_batch(0, z_pos.detach(), z_neg.detach())
    first = GradientArrivals(learner.network.layers[0].parameters())
    second = GradientArrivals(learner.network.layers[1].parameters())
    trainer_2.update(next_batch)
    assert first.none() and second.all()


def test_update_refuses_an_input_attached_to_another_layer(images):
    learner = SCFFMLPLearner(small_config(), 64)
    batch = data_pairs(images, learner.generator)
    z_pos, z_neg = learner.trainers[0].preactivations(batch)
    attached = learner.next_layer_batch(0, z_pos, z_neg)      # not detached: still carries layer 1's graph
    with pytest.raises(RuntimeError, match="detached"):
        learner.trainers[1].update(attached)


def test_every_layer_receives_detached_input_during_training(images, monkeypatch):
    learner = SCFFMLPLearner(small_config("simultaneous", widths=(32, 24, 16)), 64)
    seen = []
    for trainer in learner.trainers:
        original = trainer.update

        def spy(batch, original=original):
            seen.append((batch.views.requires_grad, batch.views.grad_fn))
            return original(batch)
        monkeypatch.setattr(trainer, "update", spy)
    learner.train_batch(images, active=[0, 1, 2])
    assert seen == [(False, None)] * 3


def test_sequential_schedule_freezes_finished_layers():
    """While layer 2 trains, layer 1 does not change; layer 2 does."""
    config = small_config(epochs=1)
    learner = SCFFMLPLearner(config, 64)
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    layer_1, layer_2 = learner.network.layers
    start_1, start_2 = _snapshot(layer_1), _snapshot(layer_2)
    learner.train_batch(x[:16], active=[0])
    assert _changed(start_1, layer_1) and not _changed(start_2, layer_2)
    after_1 = _snapshot(layer_1)
    learner.train_batch(x[:16], active=[1])
    assert not _changed(after_1, layer_1) and _changed(start_2, layer_2)


def test_simultaneous_schedule_updates_every_layer(images):
    learner = SCFFMLPLearner(small_config("simultaneous"), 64)
    before = [_snapshot(layer) for layer in learner.network.layers]
    learner.train_batch(images, active=[0, 1])
    assert all(_changed(b, layer) for b, layer in zip(before, learner.network.layers))


def test_optimisers_hold_only_their_own_layer():
    learner = SCFFMLPLearner(small_config(), 64)
    for trainer, layer in zip(learner.trainers, learner.network.layers):
        owned = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        assert owned == {id(p) for p in layer.parameters()}
