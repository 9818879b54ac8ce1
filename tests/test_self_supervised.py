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
from fwdlearn.learner import Batch
from fwdlearn.nn.scff_network import SCFFNetwork
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.views import ImageViews


@cache
def digits() -> torch.Tensor:
    return load_dataset("digits").train.x[:256]


def concatenated(encoder: torch.nn.Module, view: Batch) -> torch.Tensor:
    return torch.cat(encoder(view.x), dim=1)


def image_views(batch: Batch, generator: torch.Generator) -> tuple[Batch, Batch]:
    return tuple(Batch(view) for view in ImageViews("simclr", (1, 8, 8))(batch.x, generator))


def learner(method: str, seed: int = 0, **settings) -> SelfSupervisedLearner:
    torch.manual_seed(seed)
    encoder = SCFFNetwork(64, [32, 32], [1, 1], ["relu", "relu"], QuantConfig())
    config = SelfSupervisedConfig(method=method, epochs=3, batch_size=32, projection_dim=16, hidden_dim=32,
                                  queue_size=64, lr=3e-3, **settings)
    return SelfSupervisedLearner(encoder, concatenated, 64, image_views, config, seed)


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


@pytest.mark.parametrize("ssl_preset, local_preset, input_dim", [
    ("ssl-digits", "digits", 64), ("ssl-digits-conv", "digits-conv", (1, 8, 8)),
    ("ssl-mnist", "mnist-paper", 784), ("ssl-mnist-conv", "mnist-conv", (1, 28, 28)),
    ("ssl-sequences", "sequences", 39), ("ssl-fsdd", "fsdd-paper", 39)])
def test_each_ssl_rule_builds_its_local_rules_encoder_with_the_same_initialisation(ssl_preset, local_preset,
                                                                                      input_dim):
    """Same encoder, same initial weights, same probe: the comparison with the local rule is on one network."""
    from fwdlearn.presets import load_preset
    from fwdlearn.registry import get_rule

    ssl, local = load_preset(ssl_preset), load_preset(local_preset)
    assert ssl.encoder == local_preset and ssl.probe == local.probe
    for seed in (0, 3):
        ssl.seed = local.seed = seed
        a = get_rule(ssl.learner).learner.build_network(ssl, input_dim).state_dict()
        b = get_rule(local.learner).learner.build_network(local, input_dim).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        if seed == 0:
            first = a
    assert not all(torch.equal(first[k], a[k]) for k in a)      # the run's seed reaches the encoder


def test_bptt_reaches_every_step_of_both_directions():
    """ssl-rnn back-propagates through time: the loss's gradient reaches the first frame of each sequence
    through both recurrent directions (a local rule's would stop at one step)."""
    from fwdlearn.presets import load_preset
    from fwdlearn.rules.ssl import SSLRNNLearner, probe_features

    config = load_preset("ssl-sequences")
    learner = SSLRNNLearner(config, 39)
    x = torch.randn(4, 12, 39, requires_grad=True)
    lengths = torch.tensor([12, 9, 7, 12])
    features = probe_features(learner.network, Batch(x, lengths), [])
    (features[:, :128].sum()).backward()                            # the forward direction's final state only
    assert float(x.grad[:, 0].abs().sum()) > 0                      # ... depends on the first frame
    assert float(x.grad[1, 9:].abs().sum()) == 0                     # padding past a sequence's end does not


@pytest.mark.parametrize("preset, change, message", [
    ("ssl-digits", {"blur_kernel": 11}, "blur_kernel=11 is larger than the 8x8 image"),
    ("ssl-sequences", {"freq_mask_width": 50}, "freq_mask_width=50 is wider than the 39 features"),
])
def test_an_augmentation_too_large_for_the_data_is_refused_before_the_first_epoch(tmp_path, preset, change, message):
    from fwdlearn.errors import FwdlearnError
    from fwdlearn.presets import load_preset
    from fwdlearn.run import train_run

    config = dataclasses.replace(load_preset(preset), epochs=1, **change)
    with pytest.raises(FwdlearnError) as excinfo:
        train_run(config, tmp_path / "run", show_progress=False, log=lambda line: None)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("preset, change, message", [
    ("ssl-digits", {"encoder": "digits-conv"}, "preset 'digits-conv' is for scff-cnn; ssl-mlp trains the scff-mlp"),
    ("ssl-digits", {"views": "mfcc"}, "views must be one of simclr, byol, sce"),
    ("ssl-sequences", {"views": "simclr"}, "views must be 'mfcc'"),
    ("ssl-digits", {"crop_min_scale": 1.5}, "crop_min_scale must lie in (0, 1]"),
    ("ssl-digits", {"blur_kernel": 4}, "blur_kernel must be a positive odd number"),
])
def test_an_encoder_or_view_setting_that_cannot_apply_is_refused_in_one_line(preset, change, message):
    from fwdlearn.presets import config_from_dict, load_preset

    values = load_preset(preset).to_dict() | change
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(values, f"preset {preset}")
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_a_quantised_encoder_preset_is_refused(tmp_path):
    """The baselines train float encoders: a preset file with a [quant] section is named and refused."""
    from fwdlearn.presets import config_from_dict, load_preset

    quantised = tmp_path / "digits-w4.toml"
    quantised.write_text((resources_text("digits") + "\n[quant]\nweight_bits = 4\n"))
    values = load_preset("ssl-digits").to_dict() | {"encoder": str(quantised)}
    with pytest.raises(ConfigError, match="digits-w4.toml' is quantised"):
        config_from_dict(values, "preset ssl-digits")


def resources_text(preset: str) -> str:
    from importlib import resources
    return (resources.files("fwdlearn.presets") / f"{preset}.toml").read_text()
