"""LAC: locality of every update, the two passes, the targets, the schedule, and that training reconstructs."""

from __future__ import annotations

import pytest
import torch

from fwdlearn.learner import Batch
from fwdlearn.data import load_dataset
from fwdlearn.errors import ConfigError
from fwdlearn.eval.finetune import learning_rate
from fwdlearn.nn.autoencoder import reconstruction_error, reconstruction_target
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.objectives.lac import hidden_contrast
from fwdlearn.presets import check_for_rule, load_preset
from fwdlearn.registry import get_rule
from fwdlearn.rules.lac import LACConvLearner, LACLearner


def _config(learner="lac-mlp", **overrides):
    config = load_preset("lac-digits" if learner == "lac-mlp" else "lac-conv-digits")
    for key, value in overrides.items():
        setattr(config, key, value)
    return check_for_rule(config.validate())


def _learner(config, shape=(1, 8, 8)):
    """The rule's own learner for ``config`` (``LACLearner`` for lac-mlp, ``LACConvLearner`` for lac-conv)."""
    return get_rule(config.learner).learner(config, shape)


def build_autoencoder(config, shape):
    """The autoencoder exactly as the rule's learner initialises it."""
    return get_rule(config.learner).learner.build_network(config, shape)


try:
    import brevitas  # noqa: F401
    HAVE_BREVITAS = True
except ImportError:
    HAVE_BREVITAS = False

QUANTS = [None, pytest.param(QuantConfig(4, 4, per_channel=True), id="w4a4",
                             marks=pytest.mark.skipif(not HAVE_BREVITAS, reason="needs brevitas"))]


def _images(n=32, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("learner", ["lac-mlp", "lac-conv"])
def test_each_hidden_layer_learns_from_its_own_contrast_only(learner, quant):
    net = build_autoencoder(_config(learner, **({"quant": quant} if quant else {})), (1, 8, 8))
    x = _images()
    first, out = net.passes(x, local=True)
    second, _ = net.passes(out.detach(), local=True)
    total = hidden_contrast(first, second)
    total_grads = torch.autograd.grad(total, net.hidden_parameters(), retain_graph=True)
    offset = 0
    for i, layer in enumerate(net.hidden):
        own = (first[i].detach() - second[i]).square().sum()
        params = list(layer.parameters())
        own_grads = torch.autograd.grad(own, params, retain_graph=True)
        # the gradient of the whole hidden loss on layer i is exactly that of layer i's own contrast
        for g_total, g_own in zip(total_grads[offset:offset + len(params)], own_grads):
            torch.testing.assert_close(g_total, g_own)
            assert g_own.abs().sum() > 0
        # and layer i's contrast reaches no other layer (nor the output layer)
        others = [p for j, other in enumerate(net.hidden) if j != i for p in other.parameters()]
        others += list(net.output.parameters())
        assert all(g is None for g in torch.autograd.grad(own, others, retain_graph=True, allow_unused=True))
        offset += len(params)


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("learner", ["lac-mlp", "lac-conv"])
def test_reconstruction_loss_changes_only_the_output_layer(learner, quant):
    """An update of the output group alone: its backward computes no hidden-layer gradient, and only the
    output layer moves."""
    learner_ = _learner(_config(learner, **({"quant": quant} if quant else {})))
    network = learner_.network
    computed = {id(p): [] for p in network.parameters()}
    for p in network.parameters():
        p.register_hook(lambda grad, p=p: computed[id(p)].append(grad.abs().sum()))
    before = [p.detach().clone() for p in network.parameters()]
    learner_.train_batch(Batch(_images()), ["output"])
    assert all(not computed[id(p)] for p in network.hidden_parameters())
    assert all(len(computed[id(p)]) == 1 and computed[id(p)][0] > 0 for p in network.output.parameters())
    output = {id(p) for p in network.output.parameters()}
    for p, old in zip(network.parameters(), before):
        assert torch.equal(p, old) != (id(p) in output)


def test_without_detaching_the_reconstruction_loss_would_reach_hidden_layers():
    """The check above can fail: the ordinary end-to-end graph does carry the gradient back."""
    net = build_autoencoder(_config(), (1, 8, 8))
    x = _images()
    (net(x) - x).square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.hidden_parameters())


def test_the_two_parameter_groups_are_the_hidden_layers_and_the_output_layer():
    """Algorithm 1: RMSprop on every hidden layer, Adam on the output layer; no parameter in both or neither."""
    learner = LACLearner(_config(), (1, 8, 8))
    assert set(learner.groups) == {"hidden", "output"}
    hidden, output = learner.groups["hidden"], learner.groups["output"]
    assert isinstance(hidden.optimizer, torch.optim.RMSprop) and isinstance(output.optimizer, torch.optim.Adam)
    assert {id(p) for p in hidden.parameters} == {id(p) for layer in learner.network.hidden for p in layer.parameters()}
    assert {id(p) for p in output.parameters} == {id(p) for p in learner.network.output.parameters()}
    assert len(hidden.parameters) + len(output.parameters) == len(list(learner.network.parameters()))


def test_a_training_step_moves_hidden_layers_by_their_contrast_and_output_by_reconstruction():
    learner = LACLearner(_config(hidden_lr=1e-3, output_lr=1e-2), (1, 8, 8))
    before = {k: v.clone() for k, v in learner.network.state_dict().items()}
    stats = learner.train_batch(Batch(_images()), ["hidden", "output"])
    after = learner.network.state_dict()
    assert not torch.equal(before["hidden.0.transform.weight"], after["hidden.0.transform.weight"])
    assert not torch.equal(before["output.weight"], after["output.weight"])
    assert set(stats) == {"hidden", "output"} and stats["hidden"]["loss"] > 0 and stats["output"]["loss"] > 0


def test_second_pass_leaves_batch_norm_running_statistics_alone():
    learner = LACLearner(_config(), (1, 8, 8))
    x = _images()
    reference = build_autoencoder(_config(), (1, 8, 8))
    reference.train()
    reference.passes(x)                      # pass 1 only
    learner.network.train()
    learner.train_batch(Batch(x), ["hidden", "output"])      # passes 1 and 2
    for mine, theirs in zip(learner.network.hidden, reference.hidden):
        torch.testing.assert_close(mine.norm.running_mean, theirs.norm.running_mean)
        torch.testing.assert_close(mine.norm.running_var, theirs.norm.running_var)
        assert mine.norm.momentum == theirs.norm.momentum


def test_flip_target_is_the_left_right_mirror_image():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    assert reconstruction_target(x, "flip")[0, 0, 0].tolist() == [2.0, 1.0, 0.0]
    assert reconstruction_target(x, "reconstruct") is x


def test_each_lac_rule_builds_its_own_autoencoder():
    assert get_rule("lac-mlp").learner is LACLearner and get_rule("lac-conv").learner is LACConvLearner
    mlp, conv = build_autoencoder(_config(), (1, 8, 8)), build_autoencoder(_config("lac-conv"), (1, 8, 8))
    assert isinstance(mlp.hidden[0].transform, torch.nn.Linear)
    assert isinstance(conv.hidden[0].transform, torch.nn.Conv2d)


@pytest.mark.parametrize("learner", ["lac-mlp", "lac-conv"])
def test_lac_training_reduces_the_test_reconstruction_error(learner):
    data = load_dataset("digits")
    config = _config(learner, epochs=3)
    lac = _learner(config, data.sample_shape)
    before = reconstruction_error(lac.network, data.test.x, "reconstruct")
    lac.monitor(data.test.x)
    lac.train(data.train.x, show_progress=False)
    assert lac.initial_test_error == pytest.approx(before)
    curve = lac.reconstruction_curve()
    assert len(curve) == 4 and curve[0] == pytest.approx(before)
    assert curve[-1] < 0.7 * before
    assert curve[-1] == pytest.approx(reconstruction_error(lac.network, data.test.x, "reconstruct"))
    assert [(r["group"], r["epoch"]) for r in lac.history] == [(g, e) for e in (1, 2, 3) for g in ("hidden", "output")]
    assert lac.finished and lac.completed_epochs == 3


def test_autoencoder_output_has_the_input_shape_and_rejects_wrong_shapes():
    for learner in ("lac-mlp", "lac-conv"):
        net = build_autoencoder(_config(learner), (1, 8, 8))
        assert net(_images(4)).shape == (4, 1, 8, 8)
        with pytest.raises(ValueError, match=r"expected float images \[N, 1, 8, 8\]"):
            net(torch.rand(4, 1, 9, 9))
        with pytest.raises(ValueError, match="expected float images"):
            net(torch.zeros(4, 1, 8, 8, dtype=torch.int64))


def test_encoder_output_width():
    assert build_autoencoder(_config(), (1, 8, 8)).encode(_images(3)).shape == (3, 64)
    assert build_autoencoder(_config("lac-conv"), (1, 8, 8)).encode(_images(3)).shape == (3, 32 * 4 * 4)


def test_finetuning_schedule_warms_up_then_decays_at_the_fractions():
    config = _config().finetune
    config.epochs, config.lr, config.warmup_epochs, config.decay_at, config.gamma = 20, 0.1, 2, [0.5], 0.2
    steps = 10
    assert learning_rate(config, 0, steps) == pytest.approx(0.1 / 20)
    assert learning_rate(config, 19, steps) == pytest.approx(0.1)
    assert learning_rate(config, 9 * steps, steps) == pytest.approx(0.1)
    assert learning_rate(config, 10 * steps, steps) == pytest.approx(0.02)


@pytest.mark.parametrize("field,value,message", [
    ("target", "mirror", "target must be one of"),
    ("encoder_layers", 6, "encoder_layers must lie in 1..5"),
    ("hidden_lr", 0.0, "hidden_lr must be > 0"),
    ("batch_size", 1, "batch_size must be >= 2"),
])
def test_invalid_lac_values_are_one_line_errors(field, value, message):
    config = load_preset("lac-digits")
    setattr(config, field, value)
    with pytest.raises(ConfigError, match=message):
        config.validate("preset lac-digits")


def test_lac_rejects_sequence_data():
    config = load_preset("lac-digits")
    config.data.dataset = "sequences"
    with pytest.raises(ConfigError, match="LAC autoencoders take images"):
        config.validate()


@pytest.mark.skipif(not HAVE_BREVITAS, reason="needs brevitas")
@pytest.mark.parametrize("learner", ["lac-mlp", "lac-conv"])
def test_quantised_autoencoder_computes_with_low_bit_weights_and_inputs(learner):
    from fwdlearn.nn.quant import effective_weight

    net = build_autoencoder(_config(learner, quant=QuantConfig(3, 3)), (1, 8, 8))
    seen = []
    for layer in net.hidden:
        layer.input_quant.register_forward_hook(lambda m, args, out: seen.append(out))
        assert torch.unique(effective_weight(layer.transform)).numel() <= 2 ** 3 - 1
    net.passes(_images())
    assert len(seen) == len(net.hidden)
    for values in seen:
        assert (values >= 0).all() and torch.unique(values).numel() <= 2 ** 3   # unsigned, 3 bits
