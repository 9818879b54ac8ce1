"""Quantisation-aware local learning (Brevitas): low-bit weights and inputs, locality kept, clear config errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import GradientArrivals, assert_local_update, small_config

pytest.importorskip("brevitas", reason="quantised layers need the hardware extras")

from fwdlearn.config import QuantConfig  # noqa: E402
from fwdlearn.learner import Batch  # noqa: E402
from fwdlearn.errors import ConfigError  # noqa: E402
from fwdlearn.nn.quant import effective_weight  # noqa: E402
from fwdlearn.objectives import data_pairs, scff_loss  # noqa: E402
from fwdlearn.presets import config_from_dict  # noqa: E402
from fwdlearn.rules.scff import SCFFLearner  # noqa: E402


def quantised_config(weight_bits=4, act_bits=4, per_channel=False, **kwargs):
    config = small_config(**kwargs)
    config.quant = QuantConfig(weight_bits, act_bits, per_channel)
    return config.validate()


def _levels(values: torch.Tensor) -> int:
    return int(torch.unique(values.detach()).numel())


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weights_the_layer_computes_with_lie_on_a_grid_of_bits(bits):
    learner = SCFFLearner(quantised_config(weight_bits=bits, act_bits=0), 64)
    layer = learner.network.layers[0]
    weight = effective_weight(layer.linear)
    assert _levels(weight) <= 2 ** bits - 1            # signed, narrow range: -(2^(b-1)-1) .. 2^(b-1)-1
    assert _levels(layer.linear.weight) > 2 ** bits     # the float weights it keeps for training are not
    step = weight.abs().max() / (2 ** (bits - 1) - 1)
    assert torch.allclose(weight / step, torch.round(weight / step), atol=1e-4)


def test_per_channel_scales_differ_between_output_units():
    learner = SCFFLearner(quantised_config(weight_bits=3, act_bits=0, per_channel=True), 64)
    weight = effective_weight(learner.network.layers[0].linear)
    steps = weight.abs().amax(dim=1) / 3
    assert _levels(steps) > 1
    for row, step in zip(weight, steps):
        assert _levels(row) <= 7 and torch.allclose(row / step, torch.round(row / step), atol=1e-4)


def test_standardised_inputs_are_rounded_to_act_bits(images):
    learner = SCFFLearner(quantised_config(weight_bits=0, act_bits=3), 64)
    layer = learner.network.layers[0]
    seen = []
    layer.input_quant.register_forward_hook(lambda m, args, out: seen.append(out))
    layer.project(images)
    assert _levels(seen[0]) <= 2 ** 3
    float_layer = SCFFLearner(small_config(), 64).network.layers[0]
    assert isinstance(float_layer.input_quant, torch.nn.Identity)


def test_quantised_training_changes_weights_and_stays_local(images):
    """Layer 2's loss leaves every parameter of layer 1, quantiser scales included, without a gradient."""
    learner = SCFFLearner(quantised_config(), 64)
    before = [p.detach().clone() for p in learner.network.layers[0].parameters()]
    batch = data_pairs(images, learner.generator)
    projected, _ = learner.update(0, batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.network.layers[0].parameters()))
    first = GradientArrivals(learner.network.layers[0].parameters())
    second = GradientArrivals(learner.network.layers[1].parameters())
    learner.update(1, learner.pass_on(0, projected, batch))
    assert len(first.params) > 2                         # weight, bias and the input quantiser's scale
    assert first.none() and second.all()
    # control: layer 2's loss on an input still attached to layer 1 reaches layer 1, scale included
    z_pos, z_neg = learner.preactivations(0, batch)
    layer, c = learner.network.layers[1], learner.config.layers[1]
    a_pos, a_neg = learner.preactivations(1, learner.next_layer_batch(0, z_pos, z_neg))
    scff_loss(layer.goodness(a_pos), layer.goodness(a_neg), c.theta_pos, c.theta_neg, c.penalty).loss.backward()
    assert first.all()


@pytest.mark.parametrize("algorithm", [1, 2])
def test_quantised_update_of_every_layer_is_local(images, algorithm):
    """Both layers in one batch: each parameter (quantiser scales included) gets one gradient, its own layer's."""
    learner = SCFFLearner(quantised_config(schedule="simultaneous", algorithm=algorithm), 64)
    trace = assert_local_update(learner, Batch(images))
    assert len(trace.params) == 6 and trace.arrivals == [1] * 6


def _test_samples(name: str, n: int):
    """``n`` samples spread over the test split of embedded data set ``name``."""
    from fwdlearn.data import load_dataset

    split = load_dataset(name).test
    index = torch.arange(n) * (len(split) // n)
    return split.x[index], None if split.lengths is None else split.lengths[index]


def test_quantised_network_state_dict_round_trips(images):
    """Trained a batch, saved and loaded into a fresh network: the same features, bit for bit, on test digits."""
    learner = SCFFLearner(quantised_config(), 64)
    learner.train_batch(Batch(images), ["layer1"])
    twin = SCFFLearner(quantised_config(), 64)
    assert not torch.equal(twin.network.layers[0].linear.weight, learner.network.layers[0].linear.weight)
    twin.network.load_state_dict(learner.network.state_dict())
    learner.network.eval(), twin.network.eval()
    digits, _ = _test_samples("digits", 60)
    with torch.no_grad():
        for a, b in zip(learner.network(digits), twin.network(digits)):
            assert torch.equal(a, b) and a.std() > 0


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


def test_quantisation_is_refused_for_a_rule_without_quantised_layers():
    from fwdlearn.presets import load_preset
    values = load_preset("ff-digits").to_dict()
    assert not config_from_dict(values, "preset t").quant.enabled          # control: the float config loads
    values["quant"] = dataclasses.asdict(QuantConfig(4, 4))
    with pytest.raises(ConfigError, match=r"preset t\.quant: ff has no quantised layers yet"):
        config_from_dict(values, "preset t")


# ----- the convolutional network (scff-cnn) ---------------------------------------------------------------

def quantised_conv_config(weight_bits=4, act_bits=4, per_channel=True, schedule="sequential", algorithm=1):
    values = small_config(schedule=schedule, algorithm=algorithm, widths=(6, 8)).to_dict()
    values["learner"] = "scff-cnn"
    for layer in values["layers"]:
        layer["conv"].update(kernel=3, padding=1)
    values["quant"] = dataclasses.asdict(QuantConfig(weight_bits, act_bits, per_channel))
    return config_from_dict(values, "conv t")


def _conv_learner(**kwargs):
    from fwdlearn.rules.scff import SCFFConvLearner
    return SCFFConvLearner(quantised_conv_config(**kwargs), (1, 8, 8))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantised_conv_kernels_and_inputs_lie_on_their_grids(images, bits):
    layer = _conv_learner(weight_bits=bits, act_bits=bits).network.layers[0]
    weight = effective_weight(layer.conv)
    steps = weight.abs().amax(dim=(1, 2, 3)) / (2 ** (bits - 1) - 1)      # one scale per output channel
    for kernel, step in zip(weight, steps):
        assert _levels(kernel) <= 2 ** bits - 1
        assert torch.allclose(kernel / step, torch.round(kernel / step), atol=1e-4)
    assert not torch.equal(layer.conv.weight, weight)                     # the float kernel it trains is not
    seen = []
    layer.input_quant.register_forward_hook(lambda m, args, out: seen.append(out))
    maps = layer.project(images)
    assert maps.shape == (16, 6, 8, 8) and _levels(seen[0]) <= 2 ** bits
    float_conv = SCFFLearner(small_config(), 64)             # control: a float config builds plain layers
    assert isinstance(float_conv.network.layers[0].input_quant, torch.nn.Identity)


@pytest.mark.parametrize("algorithm", [1, 2])
def test_quantised_conv_update_of_every_layer_is_local(images, algorithm):
    """Both conv layers in one batch: each parameter (kernel, bias, the input quantiser's learned scale) gets one
    gradient, its own layer's."""
    learner = _conv_learner(schedule="simultaneous", algorithm=algorithm)
    trace = assert_local_update(learner, Batch(images))
    assert len(trace.params) == 6 and trace.arrivals == [1] * 6


def test_quantised_conv_training_lowers_its_loss_and_moves_the_scale():
    """The local rule learns through the quantisers: layer 1's loss falls over two epochs of digits and its input
    quantiser's learned scale moves."""
    from fwdlearn.data import load_dataset
    learner = _conv_learner()
    x = load_dataset("digits").train.x[:480]
    scale = [p for n, p in learner.network.layers[0].named_parameters() if "input_quant" in n]
    assert len(scale) == 1
    before = scale[0].detach().clone()
    learner.train(x, show_progress=False)
    losses = [r["loss"] for r in learner.history if r["group"] == "layer1"]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert not torch.equal(before, scale[0].detach())


def test_float_checkpoint_configs_without_a_quant_section_still_load():
    values = small_config().to_dict()
    del values["quant"]
    assert not config_from_dict(values).quant.enabled


def _quantised_reference(direction, a: torch.Tensor, b: torch.Tensor, reverse: bool) -> list[torch.Tensor]:
    """Step by step with Brevitas' own modules: standardise the concatenated pair frame, round each
    half, one tied quantised input weight; round the standardised state before the quantised W_hh."""
    from fwdlearn.data.transforms import standardize

    frames = list(zip(a, b))[::-1] if reverse else list(zip(a, b))
    w_in, w_hh = direction.input.quant_weight().value, direction.recurrent.quant_weight().value
    h, pre = torch.zeros(direction.hidden_size), []
    for a_t, b_t in frames:
        u = standardize(torch.cat([a_t, b_t])[None])
        halves = direction.input_quant(u[:, :a_t.shape[0]]) + direction.input_quant(u[:, a_t.shape[0]:])
        z = (halves @ w_in.T + direction.state_quant(standardize(h[None])) @ w_hh.T + direction.recurrent.bias)[0]
        pre.append(z)
        h = torch.relu(z).detach()
    return pre


def test_quantised_recurrent_goodness_is_the_step_by_step_brevitas_definition():
    from test_scff_rnn import F_IN, rnn_config, sequences

    from fwdlearn.objectives import pair_examples
    from fwdlearn.rules.scff_rnn import SCFFRNNLearner

    learner = SCFFRNNLearner(rnn_config(quant=QuantConfig(4, 3)), F_IN)
    x, lengths = sequences()
    left, right, pair_lengths = pair_examples(lengths, torch.Generator().manual_seed(1))
    for which, direction in enumerate(learner.network.directions):
        rounded = []
        hook = direction.state_quant.register_forward_hook(lambda m, args, out: rounded.append(out))
        drive = learner.network.drive(which, x, lengths, left, right, pair_lengths)
        states = learner.previous_states(which, drive, pair_lengths)
        g, valid = learner.step_goodness(which, drive, pair_lengths, states)
        hook.remove()
        assert rounded and _levels(torch.cat([r.flatten() for r in rounded])) <= 2 ** 3
        with torch.no_grad():
            for e in range(left.shape[0]):
                n = int(pair_lengths[e])
                pre = _quantised_reference(direction, x[left[e], :n], x[right[e], :n], which == 1)
                expected = torch.stack([torch.relu(z).square().mean() for z in pre])
                torch.testing.assert_close(g[e, :n], expected, atol=1e-5, rtol=1e-4)


def test_quantised_recurrent_network_computes_the_same_in_training_and_evaluation():
    """Training takes the fused weight quantiser, evaluation and export Brevitas' modules: on 30 test sequences
    of the embedded data set, every feature is bit-identical (a rounding boundary crossed differently would
    change a whole level of the state and everything after it)."""
    from test_scff_rnn import HIDDEN

    from fwdlearn.nn.local_birnn import LocalBiRNN

    x, lengths = _test_samples("sequences", 30)
    network = LocalBiRNN(x.shape[-1], HIDDEN, QuantConfig(3, 4, per_channel=True))
    with torch.no_grad():
        (trained,) = network.train()(x, lengths)
        (evaluated,) = network.eval()(x, lengths)
    assert torch.equal(trained, evaluated)
    assert trained.std() > 0


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
