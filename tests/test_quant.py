"""Quantisation-aware local learning (Brevitas): low-bit weights and inputs, locality kept, clear config errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import small_config

pytest.importorskip("brevitas", reason="quantised layers need the hardware extras")

from fwdlearn.config import QuantConfig, config_from_dict  # noqa: E402
from fwdlearn.errors import ConfigError  # noqa: E402
from fwdlearn.learners import SCFFMLPLearner  # noqa: E402
from fwdlearn.learners.pairs import data_pairs  # noqa: E402
from fwdlearn.nn.quant import effective_weight  # noqa: E402


def quantised_config(weight_bits=4, act_bits=4, per_channel=False, **kwargs):
    config = small_config(**kwargs)
    config.quant = QuantConfig(weight_bits, act_bits, per_channel)
    return config.validate()


def _levels(values: torch.Tensor) -> int:
    return int(torch.unique(values.detach()).numel())


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weights_the_layer_computes_with_lie_on_a_grid_of_bits(bits):
    learner = SCFFMLPLearner(quantised_config(weight_bits=bits, act_bits=0), 64)
    layer = learner.network.layers[0]
    weight = effective_weight(layer.linear)
    assert _levels(weight) <= 2 ** bits - 1            # signed, narrow range: -(2^(b-1)-1) .. 2^(b-1)-1
    assert _levels(layer.linear.weight) > 2 ** bits     # the float weights it keeps for training are not
    step = weight.abs().max() / (2 ** (bits - 1) - 1)
    assert torch.allclose(weight / step, torch.round(weight / step), atol=1e-4)


def test_per_channel_scales_differ_between_output_units():
    learner = SCFFMLPLearner(quantised_config(weight_bits=3, act_bits=0, per_channel=True), 64)
    weight = effective_weight(learner.network.layers[0].linear)
    steps = weight.abs().amax(dim=1) / 3
    assert _levels(steps) > 1
    for row, step in zip(weight, steps):
        assert _levels(row) <= 7 and torch.allclose(row / step, torch.round(row / step), atol=1e-4)


def test_standardised_inputs_are_rounded_to_act_bits(images):
    learner = SCFFMLPLearner(quantised_config(weight_bits=0, act_bits=3), 64)
    layer = learner.network.layers[0]
    seen = []
    layer.input_quant.register_forward_hook(lambda m, args, out: seen.append(out))
    layer.project(images)
    assert _levels(seen[0]) <= 2 ** 3
    float_layer = SCFFMLPLearner(small_config(), 64).network.layers[0]
    assert isinstance(float_layer.input_quant, torch.nn.Identity)


def test_quantised_training_changes_weights_and_stays_local(images):
    """Layer 2's loss leaves every parameter of layer 1, quantiser scales included, without a gradient."""
    learner = SCFFMLPLearner(quantised_config(), 64)
    trainer_1, trainer_2 = learner.trainers
    before = [p.detach().clone() for p in learner.network.layers[0].parameters()]
    batch = data_pairs(images, learner.generator)
    z_pos, z_neg, _ = trainer_1.update(batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.network.layers[0].parameters()))
    for p in learner.network.parameters():
        p.grad = None
    trainer_2.update(learner.next_layer_batch(0, z_pos, z_neg))
    first = list(learner.network.layers[0].parameters())
    assert len(first) > 2                                # weight, bias and the input quantiser's scale
    assert all(p.grad is None for p in first)
    assert all(p.grad is not None for p in learner.network.layers[1].parameters() if p.requires_grad)


def test_quantised_network_state_dict_round_trips(images):
    learner = SCFFMLPLearner(quantised_config(), 64)
    learner.train_batch(images, active=[0])
    twin = SCFFMLPLearner(quantised_config(), 64)
    twin.network.load_state_dict(learner.network.state_dict())
    learner.network.eval(), twin.network.eval()
    with torch.no_grad():
        for a, b in zip(learner.network(images), twin.network(images)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("change, message", [
    (dict(weight_bits=1), "weight_bits must be 0"),
    (dict(act_bits=9), "act_bits must be 0"),
    (dict(weight_bits=0, per_channel=True), "per_channel needs weight_bits"),
])
def test_invalid_quantisation_values_are_refused(change, message):
    values = small_config().to_dict()
    values["quant"] = {**dataclasses.asdict(QuantConfig(4, 4)), **change}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values, "preset t")


def test_float_checkpoint_configs_without_a_quant_section_still_load():
    values = small_config().to_dict()
    del values["quant"]
    assert not config_from_dict(values).quant.enabled


def test_recurrent_learner_says_it_is_not_quantised_yet(tmp_path):
    from test_cli import assert_one_line_error, fwdlearn

    result = fwdlearn("train", "scff-rnn", "--weight-bits", "4", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "scff-rnn is not yet quantised")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fused_weight_quantisation_matches_brevitas_values_and_gradients(bits, per_channel):
    from fwdlearn.kernels.fake_quant import FakeQuantWeight
    from fwdlearn.nn.quant import quant_linear

    layer = quant_linear(40, 24, QuantConfig(bits, 0, per_channel))
    reference = layer.quant_weight().value               # Brevitas' own fake quantisation
    upstream = torch.randn_like(reference)
    (reference * upstream).sum().backward()
    expected = layer.weight.grad.clone()
    layer.weight.grad = None
    fused = FakeQuantWeight.apply(layer.weight, bits, per_channel)
    (fused * upstream).sum().backward()
    assert torch.equal(fused, reference.detach())
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(expected, upstream)           # the scale's term is there, and checked
