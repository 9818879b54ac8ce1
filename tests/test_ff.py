"""Forward-Forward (Hinton 2022): it learns, it classifies by goodness, it runs through the one run path."""

from __future__ import annotations

import json

import pytest
import torch

from fwdlearn.data import load_dataset
from fwdlearn.presets import load_preset
from fwdlearn.rules.ff import FFLayerConfig, FFLearner, FFNetwork, goodness_accuracy


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def small_ff(epochs: int = 10, width: int = 64):
    config = load_preset("ff-digits")
    config.layers = [FFLayerConfig(width=width, lr=3e-3, theta=float(width), epochs=epochs) for _ in range(2)]
    config.probe.epochs = 5
    return config.validate()


def test_ff_learns_to_classify_digits_by_goodness(digits):
    """Loss falls, positive goodness rises above the threshold side of the negatives, and classification by the
    label with the highest goodness goes from chance to well above it on held-out digits."""
    config = small_ff()
    learner = FFLearner(config, digits.num_features)
    untrained = goodness_accuracy(learner.network, digits.test.x, digits.test.y, 1)
    learner.train(digits.train.x, y=digits.train.y, show_progress=False)
    trained = goodness_accuracy(learner.network, digits.test.x, digits.test.y, 1)
    assert untrained < 0.3 and trained > 0.8, (untrained, trained)
    for group in learner.groups:
        records = [r for r in learner.history if r["group"] == group]
        assert records[-1]["loss"] < records[0]["loss"]
        gap = [r["goodness_pos"] - r["goodness_neg"] for r in records]
        assert gap[-1] > max(0.0, gap[0]), (group, gap)


def test_goodness_classification_picks_the_label_whose_pixel_the_network_rewards():
    """A one-layer network whose only non-zero weight reads label pixel 3 gives goodness only for label 3."""
    network = FFNetwork(12, [4], num_classes=10, label_value=1.0, normalize_first=False)
    with torch.no_grad():
        network.layers[0].linear.weight.zero_()
        network.layers[0].linear.bias.zero_()
        network.layers[0].linear.weight[1, 3] = 2.0
    x = torch.rand(5, 12)
    scores = network.goodness_per_label(x)
    expected = torch.zeros(5, 10)
    expected[:, 3] = 4.0                       # (2 * 1)^2 from the one unit, for label 3 only
    assert torch.allclose(scores, expected)
    assert goodness_accuracy(network, x, torch.full((5,), 3), 1) == 1.0
    assert goodness_accuracy(network, x, torch.full((5,), 2), 1) == 0.0


def test_the_neutral_label_is_what_the_probe_reads():
    network = FFNetwork(12, [4], num_classes=10, label_value=1.0, normalize_first=False)
    with torch.no_grad():
        network.layers[0].linear.weight.zero_()
        network.layers[0].linear.bias.zero_()
        network.layers[0].linear.weight[0, :10] = 1.0     # unit 0 sums the ten label inputs
    (activity,) = network(torch.rand(3, 12))
    assert torch.allclose(activity[:, 0], torch.ones(3))  # ten entries of 1/10


def test_negatives_carry_a_wrong_label_drawn_from_the_learner_generator(digits):
    """With the same weights, the negatives' goodness of one batch (computed before the step) depends on the
    wrong labels drawn: the same seed repeats it, another seed changes it."""
    from fwdlearn.learner import Batch

    reference = FFLearner(small_ff(epochs=1), digits.num_features).network.state_dict()

    def negative_goodness(seed: int) -> float:
        config = small_ff(epochs=1)
        config.seed = seed
        learner = FFLearner(config, digits.num_features)
        learner.network.load_state_dict(reference)
        stats = learner.train_batch(Batch(digits.train.x[:50], y=digits.train.y[:50]), list(learner.groups))
        return stats["layer1"]["goodness_neg"]

    assert negative_goodness(0) == negative_goodness(0) != negative_goodness(1)


def test_ff_runs_through_the_one_run_path(tmp_path):
    """``fwdlearn train ff`` end to end (tiny): results with goodness classification beside the probe and the
    untrained network, and the exported model's metadata states FF's in-graph steps."""
    from fwdlearn.cli import main
    from fwdlearn.registry import get_rule

    preset = tmp_path / "ff-tiny.toml"
    preset.write_text('name = "ff-tiny"\nlearner = "ff"\nbatch_size = 50\nclassify_from = 1\nnormalize_first = true\n'
                      '[data]\ndataset = "digits"\n[[layers]]\nwidth = 32\nlr = 3e-3\ntheta = 32.0\nepochs = 3\n'
                      '[probe]\nepochs = 3\n')
    assert main(["train", "ff", "--preset", str(preset), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["learner"] == "ff"
    assert 0.5 < results["metrics"]["goodness_classification"]["test_accuracy"] <= 1.0
    assert results["baselines"]["untrained"]["goodness_classification"]["test_accuracy"] < 0.3
    assert {"untrained", "raw_inputs"} <= set(results["baselines"])
    pytest.importorskip("onnxruntime")
    assert main(["export", str(tmp_path / "run" / "checkpoint.pt")]) == 0
    import onnx
    meta = {p.key: p.value for p in onnx.load(tmp_path / "run" / "model.onnx").metadata_props}
    assert meta["fwdlearn.in_graph"] == get_rule("ff").in_graph
