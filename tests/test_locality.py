"""Locality: every registered local rule keeps each parameter group's learning to its own objective.

The contract (``Rule.local``) is checked once, generically, for every rule the registry lists as local,
on its own embedded preset shrunk by ``conftest.tiny_config``: disjoint optimisers covering the network,
one gradient per parameter per batch, and no objective (backward call, or term of a summed loss) that
reaches two groups' parameters -- or two *layers'* parameters (a group may hold several layers: LAC's
``hidden``) -- and no weight applied to a value computed from itself (the recurrent state is detached: no
gradient through time). Every check runs one real ``train_batch`` through the network's own forward; the test
detaches nothing. The controls below show the checks failing when a layer's input is left attached (SCFF: one
backward per layer) and on the Bi-RNN's end-to-end graph; LAC's (one backward per layer, and the one-backward
formulation of Algorithm 1) are in ``tests/test_lac_locality.py``. A rule with a fused backend is traced on its
autograd reference (``conftest.trace_update``).
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    assert_local_update,
    mixed_terms,
    small_config,
    tiny_config,
    tiny_learner,
    trace_update,
)

import fwdlearn.registry
from fwdlearn.learner import Batch
from fwdlearn.objectives import data_pairs, scff_loss
from fwdlearn.rules.scff import Projected, SCFFLearner

LOCAL_RULES = [name for name, rule in fwdlearn.registry.rules().items() if rule.local]


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_the_registry_lists_the_local_rules():
    assert {"scff-mlp", "scff-cnn", "scff-rnn", "lac-mlp"} <= set(LOCAL_RULES)


# ----- every local rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOCAL_RULES)
def test_tiny_config_is_the_rules_own_preset_shrunk(name):
    config = tiny_config(name)
    assert config.learner == name
    sizes = [layer.width for layer in getattr(config, "layers", [])] + list(getattr(config, "hidden", []))
    assert sizes and max(sizes) <= 8 and config.batch_size <= 8


@pytest.mark.parametrize("name", LOCAL_RULES)
def test_optimisers_hold_disjoint_parameters_covering_the_network(name):
    learner, _ = tiny_learner(name)
    owned = {g: [id(p) for p in group.parameters] for g, group in learner.groups.items()}
    assert len(owned) >= 2
    for g, ids in owned.items():
        assert ids and len(ids) == len(set(ids))
        assert all(not set(ids) & set(other) for h, other in owned.items() if h != g)
    assert set().union(*map(set, owned.values())) == {id(p) for p in learner.network.parameters()
                                                      if p.requires_grad}


@pytest.mark.parametrize("name", LOCAL_RULES)
def test_each_group_learns_from_its_own_objective_only(name):
    """One update of every group: each parameter receives one gradient, computed by a backward of its own
    group's objective; a backward of one group's objective never reaches another group's parameters."""
    learner, batch = tiny_learner(name)
    before = {g: [p.detach().clone() for p in group.parameters] for g, group in learner.groups.items()}
    trace = assert_local_update(learner, batch)
    if len(trace.passes) == len(learner.groups):
        # groups trained by separate steps (``take_step``): one backward per group, each reaching that group
        assert sorted(next(iter(trace.groups_of(b))) for b in trace.passes) == sorted(learner.groups)
        assert all(len(trace.groups_of(b)) == 1 for b in trace.passes)
        assert trace.arrivals == [1] * len(trace.params)
    for g, group in learner.groups.items():   # and every group did learn from its gradient
        assert any(not torch.equal(a, p) for a, p in zip(before[g], group.parameters)), g


@pytest.mark.parametrize("name", LOCAL_RULES)
def test_an_update_of_one_group_leaves_every_other_group_unchanged(name):
    """``train_batch(batch, [group])`` (a stage of a sequential schedule) updates that group only."""
    learner, batch = tiny_learner(name)
    for active in learner.groups:
        before = {g: [p.detach().clone() for p in group.parameters] for g, group in learner.groups.items()}
        stats = learner.train_batch(batch, [active])
        assert set(stats) == {active}
        for g, group in learner.groups.items():
            changed = any(not torch.equal(a, p) for a, p in zip(before[g], group.parameters))
            assert changed == (g == active), (active, g)


# ----- per layer and through time: one real update, the network's own forward ------------------------------

# Autograd nodes that only re-shape a tensor: a parameter reached through a chain of them is used as itself.
_VIEWS = {"TBackward0", "ViewBackward0", "TransposeBackward0", "PermuteBackward0", "UnsqueezeBackward0",
          "ExpandBackward0", "SqueezeBackward0", "SqueezeBackward1", "ReshapeAliasBackward0", "AliasBackward0",
          "UnsafeViewBackward0", "ToCopyBackward0"}


def layer_of_parameter(network: torch.nn.Module) -> dict[int, str]:
    """The layer owning each trainable parameter: every element of a ``ModuleList`` child of the network
    (``layers[1]``, ``hidden[0]``, ``directions[1]``) or any other child that holds parameters (``output``)."""
    owner = {}
    for name, child in network.named_children():
        parts = enumerate(child) if isinstance(child, torch.nn.ModuleList) else [(None, child)]
        for i, module in parts:
            for p in module.parameters():
                if p.requires_grad:
                    owner[id(p)] = name if i is None else f"{name}[{i}]"
    return owner


def _children(node) -> list:
    return [child for child, _ in node.next_functions if child is not None]


def _parameter_used(node) -> int | None:
    """``id`` of the parameter ``node`` is, possibly through reshaping views, else ``None``."""
    while node is not None and type(node).__name__ in _VIEWS and len(_children(node)) == 1:
        node = _children(node)[0]
    variable = getattr(node, "variable", None)
    return None if variable is None else id(variable)


def _reached_parameters(root) -> dict:
    """For every node of the graph below ``root``: the ``id`` s of the parameters it reaches."""
    reached, stack = {}, [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if node in reached:
            continue
        if expanded:
            variable = getattr(node, "variable", None)
            found = {id(variable)} if variable is not None else set()
            for child in _children(node):
                found |= reached[child]
            reached[node] = found
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if child not in reached)
    return reached


def self_fed_parameters(root) -> set[int]:
    """Parameters the graph below ``root`` applies to a value that was itself computed from them: a weight
    applied to a state it produced (gradient through time) or to its own earlier output. Empty for a local
    update, in which every operation reads its weights and an input that carries none of them."""
    reached = _reached_parameters(root)
    fed = set()
    for node in reached:
        children = _children(node)
        for child in children:
            used = _parameter_used(child)
            if used is not None and any(used in reached[other] for other in children if other is not child):
                fed.add(used)
    return fed


@pytest.mark.parametrize("name", LOCAL_RULES)
def test_no_objective_reaches_two_layers(name):
    """One real update (``train_batch`` of every group, the network's own forward): every backward the rule
    takes, split into the summands of its loss, has terms that each reach the parameters of one *layer* only
    (LAC's ``hidden`` group is several layers: each must learn from its own contrast, Eq. 8); every layer
    receives a gradient. Removing a detach between layers (``nn/autoencoder.py``, ``rules/scff.py``,
    ``rules/ff.py``) makes a deeper layer's term reach the layer below, and this fails."""
    learner, batch = tiny_learner(name)
    owner = layer_of_parameter(learner.network)
    assert len(set(owner.values())) >= 2 and set(owner) == {id(p) for p in learner.network.parameters()
                                                            if p.requires_grad}
    trace = trace_update(learner, batch)
    mixed = [bad for backward in trace.passes for root in backward.roots for bad in mixed_terms(root, owner)]
    assert not mixed, f"{name}: an objective reaches the parameters of several layers: {mixed}"
    assert {owner[id(trace.params[i])] for backward in trace.passes for i in backward.params} == \
        set(owner.values())


@pytest.mark.parametrize("name", LOCAL_RULES)
def test_no_gradient_flows_through_time_or_through_a_layers_own_output(name):
    """One real update: no weight is applied to a value computed from that same weight. For ``scff-rnn``
    this is the recurrent state being detached between steps (no back-propagation through time): the
    update's graph reads ``W_hh`` once per step with a constant state."""
    learner, batch = tiny_learner(name)
    owner = layer_of_parameter(learner.network)
    trace = trace_update(learner, batch)
    assert trace.passes
    fed = {owner[i] for backward in trace.passes for root in backward.roots for i in self_fed_parameters(root)}
    assert not fed, f"{name}: gradient through the layers' own earlier outputs in {sorted(fed)}"


def test_the_time_check_catches_back_propagation_through_time():
    """Control: the Bi-RNN's own end-to-end forward (the graph the BPTT baseline trains through) feeds each
    direction's recurrent weight and bias the state they computed; the check names both directions."""
    learner, batch = tiny_learner("scff-rnn")
    owner = layer_of_parameter(learner.network)
    features = learner.network(batch.x, batch.lengths)[0]
    fed = self_fed_parameters(features.square().sum().grad_fn)
    recurrent = {id(p) for d in learner.network.directions for p in d.recurrent.parameters()}
    assert fed == recurrent and {owner[i] for i in fed} == {"directions[0]", "directions[1]"}


def test_update_refuses_an_input_attached_to_another_layer(images):
    learner = SCFFLearner(small_config(), 64)
    batch = data_pairs(images, learner.generator)
    z_pos, z_neg = learner.preactivations(0, batch)
    attached = learner.next_layer_batch(0, z_pos, z_neg)      # not detached: still carries layer 1's graph
    with pytest.raises(RuntimeError, match="detached"):
        learner.update(1, attached)


def test_the_checker_catches_a_layer_fed_an_attached_input(images, monkeypatch):
    """Control for the generic check: make ``pass_on`` hand on layer 1's graph (and let ``update`` accept it);
    layer 1 then receives a second gradient, from layer 2's backward."""
    learner = SCFFLearner(small_config("simultaneous"), 64)

    def leaky_update(index, batch):
        # update() without its refusal and without detaching its output (no optimiser step either: a step
        # would change layer 1's weights in place under the graph layer 2's backward still runs through)
        layer, c = learner.network.layers[index], learner.config.layers[index]
        projections = layer.project(batch.views)
        z_pos = layer.combine(projections, batch.pos_left, batch.pos_right)
        z_neg = layer.combine(projections, batch.neg_left, batch.neg_right)
        terms = scff_loss(layer.goodness(z_pos), layer.goodness(z_neg), c.theta_pos, c.theta_neg, c.penalty)
        terms.loss.backward(retain_graph=True)
        return Projected(projections, layer.bias), {"loss": float(terms.loss.detach())}

    def leaky_pass_on(index, projected, batch):     # pass_on() without its no_grad
        layer, projections = learner.network.layers[index], projected.projections
        return learner.next_layer_batch(index, layer.combine(projections, batch.pos_left, batch.pos_right),
                                        layer.combine(projections, batch.neg_left, batch.neg_right))

    monkeypatch.setattr(learner, "update", leaky_update)
    monkeypatch.setattr(learner, "pass_on", leaky_pass_on)
    with pytest.raises(AssertionError, match="exactly one gradient"):
        assert_local_update(learner, Batch(images))
    trace = trace_update(SCFFLearner(small_config("simultaneous"), 64), Batch(images))
    assert trace.arrivals == [1] * len(trace.params)                 # the real update: once each


def test_a_summed_objective_is_split_into_its_groups_terms():
    """Control for rules that take one backward of a sum of their groups' losses: a sum of local terms
    passes, a term that reaches two groups is named."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    owner = {id(p): "first" for p in first.parameters()} | {id(p): "second" for p in second.parameters()}
    x = torch.randn(4, 3)
    h = first(x)
    local = h.square().sum() + second(h.detach()).square().sum()
    assert mixed_terms(local.grad_fn, owner) == []
    end_to_end = h.square().sum() + second(h).square().sum()
    assert mixed_terms(end_to_end.grad_fn, owner) == [{"first", "second"}]


# ----- SCFF schedules and inputs -------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", [1, 2])
def test_each_gradient_comes_from_its_own_layer_only(images, algorithm):
    """Training all layers at once (both ways of forming deeper layers' examples), each parameter receives
    exactly one gradient per batch: its own layer's."""
    learner = SCFFLearner(small_config("simultaneous", algorithm, widths=(32, 24, 16)), 64)
    trace = assert_local_update(learner, Batch(images))
    assert len(trace.passes) == 3 and trace.arrivals == [1] * len(trace.params)


def test_every_layer_receives_detached_input_during_training(images, monkeypatch):
    learner = SCFFLearner(small_config("simultaneous", widths=(32, 24, 16)), 64)
    seen = []
    original = learner.update

    def spy(index, batch):
        seen.append((index, batch.views.requires_grad, batch.views.grad_fn))
        return original(index, batch)
    monkeypatch.setattr(learner, "update", spy)
    learner.train_batch(Batch(images), ["layer1", "layer2", "layer3"])
    assert seen == [(0, False, None), (1, False, None), (2, False, None)]


def test_sequential_schedule_freezes_finished_layers():
    """While layer 2 trains, layer 1 does not change; layer 2 does."""
    config = small_config(epochs=1)
    learner = SCFFLearner(config, 64)
    assert learner.stages == [["layer1"], ["layer2"]]
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    layer_1, layer_2 = learner.network.layers
    start_1, start_2 = _snapshot(layer_1), _snapshot(layer_2)
    learner.train_batch(Batch(x[:16]), ["layer1"])
    assert _changed(start_1, layer_1) and not _changed(start_2, layer_2)
    after_1 = _snapshot(layer_1)
    learner.train_batch(Batch(x[:16]), ["layer2"])
    assert not _changed(after_1, layer_1) and _changed(start_2, layer_2)


def test_simultaneous_schedule_updates_every_layer(images):
    learner = SCFFLearner(small_config("simultaneous"), 64)
    assert learner.stages == [["layer1", "layer2"]]
    before = [_snapshot(layer) for layer in learner.network.layers]
    learner.train_batch(Batch(images), ["layer1", "layer2"])
    assert all(_changed(b, layer) for b, layer in zip(before, learner.network.layers))


def test_optimisers_hold_only_their_own_layer():
    learner = SCFFLearner(small_config(), 64)
    for i, layer in enumerate(learner.network.layers):
        owned = {id(p) for p in learner.groups[f"layer{i + 1}"].parameters}
        assert owned == {id(p) for p in layer.parameters()}
