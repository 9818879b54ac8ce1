"""On-device adaptation end to end (``fwdlearn export --update`` then ``fwdlearn.ondevice.adaptation``) on the
embedded recurrent default: the device's steps (onnxruntime, numpy) and the learner's own steps on the same
batches and draws end at the same weights, continuing from the optimiser state training ended with; the device's
loss falls; the CLI writes the update files and refuses update options without ``--update``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fwdlearn.data import load_dataset
from fwdlearn.presets import load_preset

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from fwdlearn.export import export_onnx, load_deployable
    from fwdlearn.ondevice.export import export_update
    from fwdlearn.run import train_run
    config = load_preset("sequences")
    config = dataclasses.replace(config, name="tiny-seq", batch_size=16,
                                 layers=[dataclasses.replace(config.layers[0], width=12, epochs=1)],
                                 probe=dataclasses.replace(config.probe, epochs=1),
                                 bptt=dataclasses.replace(config.bptt, epochs=0))
    out = tmp_path_factory.mktemp("seq")
    train_run(config, out, show_progress=False, log=lambda *_: None)
    deployable = load_deployable(out / "checkpoint.pt", sequence_length=12)
    export_onnx(deployable, out / "model.onnx", "float", None, learnable=True)
    export_update(out / "checkpoint.pt", out, frames=12, log=lambda *_: None)
    return out


def device_data():
    from fwdlearn.ondevice.runtime import fit_frames
    test = load_dataset("sequences", None).test
    x, lengths = fit_frames(test.x.numpy(), test.lengths.numpy(), 12)
    return x, lengths, test.y.numpy()


def test_device_and_learner_adapt_to_the_same_weights(exported):
    from fwdlearn.ondevice.adaptation import accuracy, adapt_in_pytorch, adapt_on_device
    from fwdlearn.ondevice.export import relative_error
    from fwdlearn.ondevice.runtime import read_parameters
    manifest = json.loads((exported / "update.json").read_text())
    assert all(stage["step"] > 0 for stage in manifest["stages"])     # continues from the trained AdamW state
    saved = read_parameters(exported / "update.npz")
    assert np.abs(saved["directions.0.input.weight.exp_avg_sq"]).max() > 0
    x, lengths, y = device_data()
    device = adapt_on_device(exported / "update.json", x[:64], lengths[:64], epochs=2, seed=3, lr=1e-3)
    twin = adapt_in_pytorch(exported / "checkpoint.pt", exported / "update.json", x[:64], lengths[:64], epochs=2,
                            seed=3, lr=1e-3)
    assert len(device.losses) == 8
    moved = max(relative_error(device.parameters[k], saved[k]) for k in device.parameters)
    assert moved > 1e-3
    for name, value in device.parameters.items():
        assert relative_error(value, twin.parameters[name]) <= 1e-5, name
    # the inference graph run with the device's weights classifies as the PyTorch model holding the learner's
    import torch
    from fwdlearn.export import load_deployable
    deployable = load_deployable(exported / "checkpoint.pt", sequence_length=12)
    deployable.model.encoder.load_state_dict({k: torch.from_numpy(v) for k, v in twin.parameters.items()})
    with torch.no_grad():
        expected = deployable.model(torch.from_numpy(x), torch.from_numpy(lengths)).argmax(1).numpy()
    assert accuracy(exported / "model.onnx", device.parameters, x, lengths, expected) >= 0.99
    assert accuracy(exported / "model.onnx", saved, x, lengths, expected) < 0.99    # the weights did change it


def test_device_steps_lower_the_loss(exported):
    from fwdlearn.ondevice.adaptation import adapt_on_device
    x, lengths, _ = device_data()
    adapted = adapt_on_device(exported / "update.json", x[:32], lengths[:32], epochs=20, seed=0, lr=1e-2)
    first = np.mean([sum(step.values()) for step in adapted.losses[:4]])
    last = np.mean([sum(step.values()) for step in adapted.losses[-4:]])
    assert last < 0.95 * first          # 1.71 -> 1.57 when recorded


def test_cli_export_update(tmp_path, exported):
    import shutil
    import subprocess
    import sys
    for name in ("checkpoint.pt", "readout.pt"):
        shutil.copy(exported / name, tmp_path / name)
    run = subprocess.run([sys.executable, "-m", "fwdlearn", "export", str(tmp_path / "checkpoint.pt"), "--update",
                          "--optimizer", "sgd", "--sequence-length", "12"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "on-device update" in run.stdout
    manifest = json.loads((tmp_path / "update.json").read_text())
    assert manifest["optimizer"]["name"] == "sgd" and manifest["frames"] == 12
    assert sorted(p.name for p in tmp_path.glob("update-*.onnx")) == ["update-backward.onnx", "update-forward.onnx"]
    refused = subprocess.run([sys.executable, "-m", "fwdlearn", "export", str(tmp_path / "checkpoint.pt"),
                              "--optimizer", "sgd"], capture_output=True, text=True)
    assert refused.returncode != 0 and "--update" in refused.stderr and "Traceback" not in refused.stderr
