"""The back-propagation self-supervised learner on the SCFF MLP encoder: each method's update reaches every encoder
layer (the opposite of the locality tests), its loss falls, a run resumes exactly, bad settings are refused."""

from __future__ import annotations

import copy
import dataclasses
from functools import cache

import pytest
import torch

from fwdlearn.baselines.self_supervised import METHODS, SelfSupervisedConfig, SelfSupervisedLearner
from fwdlearn.data import load_dataset
from fwdlearn.errors import ConfigError
from fwdlearn.nn.scff_network import SCFFNetwork
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.views import ImageViews


@cache
def digits() -> torch.Tensor:
    return load_dataset("digits").train.x[:256]


def concatenated(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat(encoder(x), dim=1)


def learner(method: str, seed: int = 0, **settings) -> SelfSupervisedLearner:
    torch.manual_seed(seed)
    encoder = SCFFNetwork(64, [32, 32], [1, 1], ["relu", "relu"], QuantConfig())
    config = SelfSupervisedConfig(method=method, epochs=3, batch_size=32, projection_dim=16, hidden_dim=32,
                                  queue_size=64, lr=3e-3, **settings)
    return SelfSupervisedLearner(encoder, concatenated, 64, ImageViews("simclr", (1, 8, 8)), config, seed)


@pytest.mark.parametrize("method", list(METHODS))
def test_one_update_reaches_every_encoder_layer(method):
    ssl = learner(method)
    before = {name: p.detach().clone() for name, p in ssl.network.named_parameters()}
    ssl.train(digits()[:64], show_progress=False)
    for name, parameter in ssl.network.named_parameters():
        assert not torch.equal(before[name], parameter.detach()), f"{method}: {name} did not learn"


@pytest.mark.parametrize("method", list(METHODS))
def test_the_loss_falls(method):
    ssl = learner(method)
    ssl.train(digits(), show_progress=False)
    losses = [record["loss"] for record in ssl.history]
    assert len(losses) == 3 and losses[-1] < losses[0], f"{method}: {losses}"


@pytest.mark.parametrize("method", ["moco", "byol", "sce"])
def test_the_target_follows_the_online_network_and_the_queue_fills(method):
    ssl = learner(method)
    start = [p.detach().clone() for p in ssl.target.parameters()]
    ssl.train(digits()[:64], show_progress=False)
    moved = [not torch.equal(a, b) for a, b in zip(start, ssl.target.parameters())]
    assert all(moved)                                        # the EMA moved every target parameter
    assert not any(p.requires_grad for p in ssl.target.parameters())
    if ssl.queue is not None:
        assert int(ssl.queue.pointer) == (3 * 64) % 64      # 3 epochs of 2 batches of 32 written in order


@pytest.mark.parametrize("method", ["simclr", "moco", "byol"])
def test_a_resumed_run_equals_an_uninterrupted_one(method):
    """The state after epoch 1 (encoder, heads, target, queue, optimiser, generator) resumes to the same weights."""
    saved = []
    whole = learner(method)
    whole.train(digits()[:96], show_progress=False,
                on_epoch_end=lambda current: saved.append(copy.deepcopy(current.state_dict())))
    resumed = learner(method)
    resumed.load_state_dict(saved[0])
    assert resumed.completed_epochs == 1
    resumed.train(digits()[:96], show_progress=False)
    for (name, a), b in zip(whole.network.state_dict().items(), resumed.network.state_dict().values()):
        assert torch.equal(a, b), name
    if whole.queue is not None:
        assert torch.equal(whole.queue.embeddings, resumed.queue.embeddings)


@pytest.mark.parametrize("setting, message", [
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"method": "moco", "queue_size": 16}, "queue_size 16 is smaller than a batch"),
    ({"method": "byol", "momentum": 1.0}, "momentum must lie in [0, 1)"),
    ({"method": "sce", "sce_lambda": 1.5}, "sce_lambda must lie in [0, 1]"),
    ({"method": "dino"}, "method must be one of"),
])
def test_invalid_settings_are_refused_in_one_line_before_training(setting, message):
    config = dataclasses.replace(SelfSupervisedConfig(batch_size=32), **setting)
    with pytest.raises(ConfigError) as excinfo:
        config.validate()
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_method_is_chosen_on_the_command_line_for_ssl_mlp_only():
    from fwdlearn.cli import _apply_overrides, build_parser
    from fwdlearn.presets import load_preset

    args = build_parser().parse_args(["train", "ssl-mlp", "--method", "vicreg"])
    args.preset = "ssl-digits"
    assert load_preset("ssl-digits").method == "simclr"
    assert _apply_overrides(load_preset("ssl-digits"), args).method == "vicreg"
    args = build_parser().parse_args(["train", "scff-mlp", "--method", "vicreg"])
    args.preset = "digits"
    with pytest.raises(ConfigError, match="--method does not apply to scff-mlp"):
        _apply_overrides(load_preset("digits"), args)


def test_ssl_mlp_builds_the_scff_mlp_encoder_with_the_same_initialisation():
    """Same encoder, same initial weights: the comparison with the local rule is on one network."""
    from fwdlearn.presets import load_preset
    from fwdlearn.registry import get_rule

    ssl, scff = load_preset("ssl-digits"), load_preset("digits")
    ssl.widths, ssl.seed = [c.width for c in scff.layers], scff.seed
    a = get_rule("ssl-mlp").learner.build_network(ssl, 64).state_dict()
    b = get_rule("scff-mlp").learner.build_network(scff, 64).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
