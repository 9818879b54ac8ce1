"""The supervised back-propagation baseline of the SCFF MLP: the same network, trained end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GradientArrivals, small_config

from fwdlearn.baselines import train_supervised
from fwdlearn.config import BPTTConfig
from fwdlearn.run import train_run
from fwdlearn.errors import ConfigError
from fwdlearn.presets import config_from_dict, load_preset
from test_cli import TINY_PRESET as CLI_TINY_PRESET  # noqa: E402
from fwdlearn.rules.scff import SCFFLearner

# The tiny SCFF preset of the CLI tests, one epoch per layer, with the supervised BP baseline.
TINY_PRESET = CLI_TINY_PRESET.replace("epochs = 2", "epochs = 1") + "\n[bp]\nepochs = 2\n"


def test_the_head_error_reaches_every_layer_and_changes_it():
    """What SCFF avoids: the gradient of the classifier's loss crosses every layer boundary."""
    config = small_config()
    network = SCFFLearner.build_network(config, 64)
    before = [p.detach().clone() for p in network.parameters()]
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g)
    first = GradientArrivals(network.layers[0].parameters())
    seconds, history = train_supervised(network, x, y, 10, BPTTConfig(epochs=2, lr=1e-2, batch_size=16),
                                        probe_layers=[2], show_progress=False)
    assert first.all()                                          # layer 1 learns from the head on layer 2
    assert all(not torch.equal(a, b) for a, b in zip(before, network.parameters()))
    assert len(history) == 2 and history[1]["loss"] < history[0]["loss"] and seconds > 0
    assert not network.training


def test_run_records_the_supervised_baseline_beside_scff(tmp_path):
    """The one run path trains the ``[bp]`` baseline of a preset and reports it beside the SCFF network."""
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY_PRESET)
    lines: list[str] = []
    out = tmp_path / "run"
    train_run(load_preset(str(preset)), out, show_progress=False, log=lines.append)
    results = json.loads((out / "results.json").read_text())
    bp = results["baselines"]["bp"]
    assert 0.5 < bp["test_accuracy"] <= 1.0                     # 10 classes: far above chance
    assert results["timing"]["bp_train_seconds"] > 0 and len(results["baseline_history"]["bp"]) == 2
    assert all(r["loss"] > 0 for r in results["baseline_history"]["bp"])
    assert any("BP, end to end" in line for line in lines)


def test_supervised_baseline_is_for_the_mlp_only():
    values = small_config().to_dict()
    values.update(learner="scff-rnn", layers=values["layers"][:1], data={"dataset": "sequences"},
                  bp={"epochs": 3})
    with pytest.raises(ConfigError, match="bp applies to scff-mlp only"):
        config_from_dict(values, "preset t")
    values["bp"] = {"epochs": 0}
    assert config_from_dict(values, "preset t").learner == "scff-rnn"      # control: the same config without bp
    values = small_config().to_dict()
    values.update(learner="scff-cnn", bp={"epochs": 3})
    for layer in values["layers"]:
        layer["conv"].update(kernel=3, padding=1)
    with pytest.raises(ConfigError, match="scff-cnn has no end-to-end baseline"):
        config_from_dict(values, "preset t")
    values["bp"] = {"epochs": 0}
    assert config_from_dict(values, "preset t").learner == "scff-cnn"      # control: the same config without bp
