"""Locality of LAC's layer-by-layer update, and the controls showing the checker can fail on LAC's graphs.

The update takes one backward for the output layer and one per hidden layer (``rules/lac.py``), each
reaching that layer's parameters only. The controls use the network's own end-to-end passes
(``passes(local=False)``) and, for a summed loss, the one-backward formulation of Algorithm 1
(``reference_update`` in ``tests/test_lac_memory.py``).
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_local_update, mixed_terms, tiny_learner
from test_lac_memory import reference_update

from fwdlearn.objectives.lac import hidden_contrast
from fwdlearn.rules.lac import LACLearner


def _layer_of_parameter(network: torch.nn.Module) -> dict[int, str]:
    """``hidden[i]`` or ``output`` for every trainable parameter of an autoencoder."""
    owner = {id(p): f"hidden[{i}]" for i, layer in enumerate(network.hidden) for p in layer.parameters()}
    owner.update({id(p): "output" for p in network.output.parameters()})
    return owner


def test_the_update_takes_one_backward_per_layer_each_reaching_that_layer_only():
    learner, batch = tiny_learner("lac-mlp")
    owner = _layer_of_parameter(learner.network)
    trace = assert_local_update(learner, batch)
    hidden = len(learner.network.hidden)
    assert hidden >= 2
    assert [sorted(trace.groups_of(b)) for b in trace.passes] == [["output"]] + [["hidden"]] * hidden
    reached = [{owner[id(trace.params[i])] for i in b.params} for b in trace.passes]
    assert reached == [{"output"}] + [{f"hidden[{i}]"} for i in range(hidden)]
    for backward in trace.passes:
        assert all(not mixed_terms(root, owner) for root in backward.roots)


@pytest.mark.parametrize("local", [True, False])
def test_the_layer_check_catches_a_hidden_layer_fed_an_attached_input(local):
    """Control: Eq. 1 on the network's end-to-end passes (``local=False``) has a deeper layer's contrast reach the
    layers below it, which the checker names although they are all the group ``hidden``; on the local passes
    every term of the sum is one layer's."""
    learner, batch = tiny_learner("lac-mlp")
    network = learner.network
    first, reconstruction = network.passes(batch.x, local=local)
    with network.frozen_norm_statistics():
        second, _ = network.passes(reconstruction.detach(), local=local)
    mixed = mixed_terms(hidden_contrast(first, second).grad_fn, _layer_of_parameter(network))
    assert (not mixed) if local else {"hidden[0]", "hidden[1]"} in mixed


def test_the_checker_catches_a_summed_loss_that_crosses_groups(monkeypatch):
    """Control on LAC's one-backward formulation (one backward of the summed losses): it passes; with every
    layer's input left attached, the output layer's loss reaches the hidden group and is named, although every
    parameter still receives exactly one gradient."""
    monkeypatch.setattr(LACLearner, "train_batch", reference_update)
    learner, batch = tiny_learner("lac-mlp")
    trace = assert_local_update(learner, batch)
    assert [sorted(trace.groups_of(b)) for b in trace.passes] == [["hidden", "output"]]
    learner, batch = tiny_learner("lac-mlp")
    passes = learner.network.passes
    monkeypatch.setattr(learner.network, "passes", lambda x, local=True: passes(x, local=False))
    with pytest.raises(AssertionError, match="reaches the parameters of several groups"):
        assert_local_update(learner, batch)
