"""Convolutional SCFF: tied-weight conv pairs, goodness maps, locality, Algorithms 1/2, augmentations,
input errors, and the ``scff-cnn`` command with resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import GradientArrivals, assert_local_update
from test_cli import assert_one_line_error, assert_resumed_run_equals_whole_run, fwdlearn

from fwdlearn.config import ConvConfig, DataConfig, LayerConfig, ProbeConfig, SCFFConfig
from fwdlearn.learner import Batch
from fwdlearn.data.augment import augment, random_crop, random_flip
from fwdlearn.data.dataset import Split, validate_split
from fwdlearn.errors import ConfigError, DataError
from fwdlearn.nn.paired_conv import PairedConv2d
from fwdlearn.objectives import data_pairs, scff_loss
from fwdlearn.presets import check_for_rule, load_preset
from fwdlearn.rules.scff import SCFFConvLearner

CONV = ConvConfig(kernel=3, padding=1, pool="max", pool_size=2, pool_stride=2, pool_padding=0,
                  readout_pool="avg", readout_size=2)


def conv_config(schedule: str = "sequential", algorithm: int = 1, widths: tuple[int, ...] = (6, 8),
                epochs: int = 1, **data) -> SCFFConfig:
    layers = [LayerConfig(width=widths[0], lr=1e-2, theta_pos=0.0, theta_neg=1.0, epochs=epochs,
                          conv=dataclasses.replace(CONV))]
    layers += [LayerConfig(width=w, lr=2e-3, theta_pos=5.0, theta_neg=9.0, penalty=7e-4, epochs=epochs,
                           algorithm=algorithm, conv=ConvConfig(kernel=3, padding=1, pool="none", readout_size=1))
               for w in widths[1:]]
    return SCFFConfig(name="conv", learner="scff-cnn", layers=layers, batch_size=8, schedule=schedule,
                      data=DataConfig(dataset="digits", **data), probe=ProbeConfig(epochs=1)).validate()


def reference_std(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean 0, population deviation 1 over each sample's C x H x W values."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def test_tied_weight_pair_equals_the_concatenated_channel_conv():
    """W * a + W * b + 2 bias == conv([a, b] along channels) with the kernel [W, W] (Appendix A)."""
    torch.manual_seed(0)
    layer = PairedConv2d(3, 5, ConvConfig(kernel=3, padding=1), paired=True).double()
    a, b = torch.randn(4, 3, 7, 6, dtype=torch.float64), torch.randn(4, 3, 7, 6, dtype=torch.float64) * 3 + 1
    pair = reference_std(torch.cat([reference_std(a), reference_std(b)], dim=1))   # Algorithm 1: std, cat, std
    kernel = torch.cat([layer.conv.weight, layer.conv.weight], dim=1)               # W_1 = W_2 = W
    expected = F.conv2d(F.pad(pair, (1, 1, 1, 1), mode="reflect"), kernel, 2 * layer.conv.bias)
    got = layer.combine(layer.project(torch.cat([a, b])), torch.arange(4), torch.arange(4, 8))
    assert torch.allclose(got, expected, atol=1e-4)    # std of two standardised halves is itself, up to eps
    same = F.conv2d(F.pad(reference_std(torch.cat([a, a], 1)), (1, 1, 1, 1), mode="reflect"), kernel,
                    2 * layer.conv.bias)
    assert torch.allclose(layer(a), same, atol=1e-4)                                 # inference: [x, x]


def test_goodness_per_position_and_loss_match_a_reference():
    torch.manual_seed(1)
    layer = PairedConv2d(2, 6, CONV, paired=True)
    z_pos, z_neg = torch.randn(5, 6, 4, 3, dtype=torch.float64), torch.randn(5, 6, 4, 3, dtype=torch.float64)
    g_pos, g_neg = layer.goodness(z_pos), layer.goodness(z_neg)
    ref_pos = (torch.clamp(z_pos, min=0) ** 2).sum(1) / 6
    ref_neg = (torch.clamp(z_neg, min=0) ** 2).sum(1) / 6
    assert g_pos.shape == (5, 4, 3) and torch.allclose(g_pos, ref_pos) and torch.allclose(g_neg, ref_neg)
    theta_pos, theta_neg, lam = 0.3, 0.9, 0.05
    expected = (-torch.log(torch.sigmoid(ref_pos - theta_pos))).mean(dim=(1, 2)).mean() \
        + (-torch.log(torch.sigmoid(theta_neg - ref_neg))).mean(dim=(1, 2)).mean() \
        + lam * torch.sqrt((ref_pos ** 2).sum(dim=(1, 2))).mean()
    assert torch.allclose(scff_loss(g_pos, g_neg, theta_pos, theta_neg, lam).loss, expected)


@pytest.mark.parametrize("algorithm", [1, 2])
def test_each_conv_layer_gets_gradients_from_its_own_loss_only(algorithm):
    learner = SCFFConvLearner(conv_config("simultaneous", algorithm, widths=(4, 6, 5)), (1, 8, 8))
    arrivals = [GradientArrivals(layer.parameters()) for layer in learner.network.layers]
    trace = assert_local_update(learner, Batch(torch.rand(8, 1, 8, 8)))
    assert [a.counts for a in arrivals] == [[1, 1]] * 3                 # weight and bias, once each
    assert [sorted(trace.groups_of(b)) for b in trace.passes] == [["layer1"], ["layer2"], ["layer3"]]


def test_training_layer_two_sends_nothing_to_layer_one():
    learner = SCFFConvLearner(conv_config(), (1, 8, 8))
    batch = data_pairs(torch.rand(8, 1, 8, 8), learner.generator)
    z_pos, z_neg = learner.preactivations(0, batch)                      # with grad on layer 1
    first = GradientArrivals(learner.network.layers[0].parameters())
    second = GradientArrivals(learner.network.layers[1].parameters())
    learner.update(1, learner.next_layer_batch(0, z_pos.detach(), z_neg.detach()))
    assert first.none() and second.all()
    attached = learner.next_layer_batch(0, z_pos, z_neg)
    with pytest.raises(RuntimeError, match="detached"):
        learner.update(1, attached)
    # control: layer 2's loss on the attached input would reach layer 1
    layer, c = learner.network.layers[1], learner.config.layers[1]
    a_pos, a_neg = learner.preactivations(1, attached)
    scff_loss(layer.goodness(a_pos), layer.goodness(a_neg), c.theta_pos, c.theta_neg, c.penalty).loss.backward()
    assert first.all()


@pytest.mark.parametrize("algorithm", [1, 2])
def test_algorithms_feed_layer_two_the_expected_examples(algorithm, monkeypatch):
    learner = SCFFConvLearner(conv_config(algorithm=algorithm), (1, 8, 8))
    seen = {}
    original = learner.update

    def spy(i, batch):
        out = original(i, batch)
        seen[i] = (batch, out[0])
        return out
    monkeypatch.setattr(learner, "update", spy)
    learner.train_batch(Batch(torch.rand(8, 1, 8, 8)), ["layer1", "layer2"])
    first, (projections, bias) = seen[0]
    batch = seen[1][0]
    layer = learner.network.layers[0]
    with torch.no_grad():   # layer 1's pre-activations, from the weights and bias it projected with
        z_pos = projections[first.pos_left] + projections[first.pos_right] + 2 * bias.view(1, -1, 1, 1)
        z_neg = projections[first.neg_left] + projections[first.neg_right] + 2 * bias.view(1, -1, 1, 1)
    n, k = 8, torch.arange(8)
    if algorithm == 1:   # previous positive and negative outputs, unpaired
        assert torch.equal(batch.views, torch.cat([layer.passed(z_pos), layer.passed(z_neg)]))
        assert batch.pos_right is None and batch.neg_right is None
        assert torch.equal(batch.pos_left, k) and torch.equal(batch.neg_left, k + n)
    else:                # previous positive outputs, re-paired with one shift
        assert torch.equal(batch.views, layer.passed(z_pos))
        assert torch.equal(batch.pos_left, k) and torch.equal(batch.pos_right, k)
        shift = int(batch.neg_right[0])
        assert 1 <= shift < n and torch.equal(batch.neg_right, (k + shift) % n)


def test_flip_and_crop_shapes_determinism_and_content():
    x = torch.randn(64, 2, 6, 5)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    flipped, cropped = random_flip(x, gen()), random_crop(x, 2, gen())
    assert flipped.shape == x.shape and cropped.shape == x.shape
    assert torch.equal(flipped, random_flip(x, gen())) and torch.equal(cropped, random_crop(x, 2, gen()))
    mirrored = [torch.equal(f, s.flip(-1)) for f, s in zip(flipped, x)]
    assert all(m or torch.equal(f, s) for m, f, s in zip(mirrored, flipped, x)) and 0 < sum(mirrored) < 64
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = set()
    for out, image in zip(cropped, padded):
        matches = [(i, j) for i in range(5) for j in range(5) if torch.equal(out, image[:, i:i + 6, j:j + 5])]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 5
    both = augment(x, gen(), crop_pad=2, flip=True)
    assert both.shape == x.shape and torch.equal(augment(x, gen()), x)
    assert torch.equal(both, random_flip(random_crop(x, 2, gen()), _after_crop(x, 2)))   # crop, then flip


def _after_crop(x: torch.Tensor, pad: int) -> torch.Generator:
    """Generator 7 after a crop of ``x`` has drawn from it (what the flip that follows draws from)."""
    generator = torch.Generator().manual_seed(7)
    random_crop(x, pad, generator)
    return generator


def test_augmented_training_is_reproducible_from_the_seed():
    def trained():
        learner = SCFFConvLearner(conv_config(flip=True, crop_pad=1), (1, 8, 8))
        learner.train(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3)), show_progress=False)
        return learner.network.state_dict()
    a, b = trained(), trained()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_fail_with_one_line_naming_the_problem():
    layer = PairedConv2d(1, 4, CONV, paired=True, name="layer 1")
    cases = [(torch.rand(2, 3, 8, 8), "3 channels"), (torch.zeros(2, 1, 8, 8, dtype=torch.int64), "floating-point"),
             (torch.rand(2, 1, 1, 1), "too small"), (torch.rand(2, 8, 8), "[N, C, H, W]")]
    for x, fragment in cases:
        with pytest.raises(DataError, match=r"^layer 1: .*") as info:
            layer(x)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    config = conv_config()
    config.layers[1].conv.readout_size = 8               # layer 2 gets 4x4 maps from 8x8 images
    with pytest.raises(DataError, match="too small") as info:
        SCFFConvLearner.build_network(config, (1, 8, 8))
    assert "\n" not in str(info.value) and "layer 2" in str(info.value)
    x = torch.rand(4, 1, 8, 8)
    x[2, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="sample 2 contains NaN"):
        validate_split(Split(x, torch.zeros(4, dtype=torch.int64)), "images", 10)


def test_conv_settings_are_validated():
    config = conv_config()
    config.layers[0].conv.pool = "median"
    with pytest.raises(ConfigError, match=r"layers\[0\]\.conv\.pool must be one of"):
        config.validate()
    config = conv_config()
    config.layers[1].conv = ConvConfig()
    with pytest.raises(ConfigError, match=r"layers\[1\]\.conv\.kernel must be >= 1 for scff-cnn"):
        check_for_rule(config.validate())
    with pytest.raises(ConfigError, match=r"layers\[1\]\.conv\.kernel must be >= 1 for scff-cnn"):
        SCFFConvLearner(config, (1, 8, 8))
    mlp = load_preset("digits")
    mlp.layers[0].conv.kernel = 3
    with pytest.raises(ConfigError, match="applies to scff-cnn only"):
        check_for_rule(mlp.validate())
    with pytest.raises(ConfigError, match="crop_pad must be >= 0"):
        conv_config(crop_pad=-1)


def test_shipped_conv_presets_build_networks_of_the_paper_shapes():
    cifar = SCFFConvLearner.build_network(load_preset("cifar10-paper"), (3, 32, 32))
    assert [s["pooled"] for s in cifar.shapes()] == [(96, 16, 16), (384, 8, 8), (1536, 4, 4)]   # Table D.1
    stl = SCFFConvLearner.build_network(load_preset("stl10-paper"), (3, 96, 96))
    assert stl.feature_dims[-1] == 6144 * 2 * 2
    features = SCFFConvLearner.build_network(load_preset("mnist-conv"), (1, 28, 28))(torch.rand(3, 1, 28, 28))
    assert [f.shape[0] for f in features] == [3, 3] and all(f.dim() == 2 for f in features)


TINY_CONV_PRESET = """
name = "tiny-conv"
learner = "scff-cnn"
seed = 0
batch_size = 50

[data]
dataset = "digits"

[[layers]]
width = 8
lr = 1e-2
theta_pos = 0.0
theta_neg = 1.0
epochs = 2

[layers.conv]
kernel = 3
padding = 1
pool = "max"
pool_size = 4
pool_stride = 2
pool_padding = 1
readout_size = 2

[[layers]]
width = 8
lr = 2e-3
theta_pos = 5.0
theta_neg = 9.0
penalty = 7e-4
epochs = 2

[layers.conv]
kernel = 3
padding = 1
pool = "max"
readout_size = 1

[probe]
epochs = 2
"""


def test_cli_trains_scff_cnn_writes_results_and_resumes(tmp_path):
    """The digits-conv recipe with 8 channels per layer (the shipped preset itself: ``test_cli``'s preset checks)."""
    preset = tmp_path / "tiny-conv.toml"
    preset.write_text(TINY_CONV_PRESET)
    args = ("train", "scff-cnn", "--preset", str(preset), "--epochs", "1", "--probe-epochs", "1", "--no-progress")
    whole = assert_resumed_run_equals_whole_run(args, tmp_path)
    results = json.loads((whole / "results.json").read_text())
    accuracy = results["metrics"]["test_accuracy"]
    assert results["learner"] == "scff-cnn" and isinstance(accuracy, float) and 0.0 <= accuracy <= 1.0
    assert "untrained" in results["baselines"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no GPU exists")
def test_cuda_without_a_gpu_is_one_line(tmp_path):
    result = fwdlearn("train", "scff-cnn", "--device", "cuda", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--device cuda", "no CUDA device")
    result = fwdlearn("train", "lac-mlp", "--device", "cuda", "--out", str(tmp_path / "lac"))
    assert_one_line_error(result, "--device cuda", "no CUDA device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_and_returns_cpu_features():
    from fwdlearn.eval.features import layer_features
    learner = SCFFConvLearner(conv_config(flip=True, crop_pad=1), (1, 8, 8), device="cuda")
    learner.train(torch.rand(16, 1, 8, 8), show_progress=False)
    assert all(p.is_cuda for p in learner.network.parameters())
    features = layer_features(learner.network, torch.rand(5, 1, 8, 8))
    assert all(f.device.type == "cpu" for f in features)


def test_mac_count_sees_every_convolution():
    """``hardware.ops.count_macs`` (the export report's figure) counts each layer's conv: H'W' * C_out * C_in * k^2."""
    from fwdlearn.hardware.ops import count_macs

    network = SCFFConvLearner.build_network(conv_config(widths=(6, 8)), (1, 8, 8))
    counted = count_macs(network, torch.rand(2, 1, 8, 8))
    layer1 = 2 * 8 * 8 * 6 * 1 * 3 * 3      # 8x8 map (padding 1), 6 kernels over 1 channel
    layer2 = 2 * 4 * 4 * 8 * 6 * 3 * 3      # after the 2x2 max-pool: 4x4 map, 8 kernels over 6 channels
    assert counted["Conv2d"] == layer1 + layer2 and counted["total"] == layer1 + layer2
