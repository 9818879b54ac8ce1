"""On-device learning (issue 20): the SCFF MLP update as an inference graph, its verification, the numpy runtime.

The closed-form gradient of each stage is compared with what the learner's own update applies (float64, to
rounding); the exported graphs are checked to hold inference operators only (read from the file here, not from
the exporter's own check), to fail verification when the update is wrong, and to be driven by the numpy runtime
without torch; a device-side adaptation lowers the stage's loss.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fwdlearn.errors import ExportError
from fwdlearn.ondevice.offered import update_stages_for
from fwdlearn.ondevice.optimizers import OptimizerSpec
from fwdlearn.presets import load_preset
from fwdlearn.registry import get_rule

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def tiny_config(translate: int = 0, algorithm: int = 1, epochs: int = 1):
    config = load_preset("digits")
    layers = [dataclasses.replace(c, width=16, epochs=epochs, algorithm=(c.algorithm if i == 0 else algorithm))
              for i, c in enumerate(config.layers)]
    return dataclasses.replace(config, name="tiny", layers=layers, batch_size=8,
                               data=dataclasses.replace(config.data, translate=translate),
                               probe=dataclasses.replace(config.probe, epochs=1))


@pytest.mark.parametrize("translate, algorithm", [(0, 1), (0, 2), (2, 1)])
def test_stage_gradients_equal_the_learners_own_update(translate, algorithm):
    """SGD with lr 1 and no weight decay moves each parameter by exactly the gradient the learner computed."""
    torch.set_default_dtype(torch.float64)
    try:
        config = tiny_config(translate, algorithm)
        rule = get_rule(config.learner)
        learner = rule.learner(config, 64)
        learner.network.double()
        shape = (1, 8, 8)
        stages = update_stages_for("scff-mlp")(learner, sample_shape=shape)
        generator = torch.Generator().manual_seed(0)
        data = {"samples": torch.rand(8, *shape, generator=generator)}
        if translate:
            data["translations"] = torch.randint(0, 2 * translate + 1, (2, 2, 8), generator=generator)
        names = {d.name for s in stages for d in s.data_inputs}
        data.update({n: torch.tensor(3 if n == "shift1" else 5) for n in names if n.startswith("shift")})
        for stage in stages:
            live = stage.parameters_of(learner)
            grads, loss = stage.gradients(data, {n: live[n].detach().clone() for n in stage.frozen},
                                          {n: live[n].detach().clone() for n in stage.trained})
            assert torch.isfinite(loss)
            group = stage.group(learner)
            group.optimizer = OptimizerSpec("sgd").torch_optimizer(group.parameters, 1.0)
            before = {n: live[n].detach().clone() for n in stage.trained}
            stage.reference_step(learner, data)
            for n in stage.trained:
                applied = before[n] - live[n].detach()
                assert applied.abs().max() > 0
                assert (grads[n] - applied).abs().max() <= 1e-10 * applied.abs().max(), (stage.name, n)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fwdlearn.run import train_run
    out = tmp_path_factory.mktemp("run")
    train_run(tiny_config(epochs=1), out, show_progress=False, log=lambda *_: None)
    return out / "checkpoint.pt"


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_export_writes_verified_inference_only_graphs(trained, tmp_path, optimizer):
    from fwdlearn.ondevice.export import export_update
    result = export_update(trained, tmp_path, optimizer=optimizer, log=lambda *_: None)
    manifest = json.loads((tmp_path / "update.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["layer1", "layer2"]
    for stage in manifest["stages"]:
        model = onnx.load(str(tmp_path / stage["file"]))
        kinds = {(n.domain, n.op_type) for n in model.graph.node}
        assert all(domain in ("", "ai.onnx") for domain, _ in kinds)
        assert not any("Grad" in op or op in {"Adam", "Momentum", "Adagrad"} for _, op in kinds)
        assert stage["verification"]["worst_relative"] <= 1e-5
        assert stage["verification"]["steps"] == 10
        meta = {p.key: p.value for p in model.metadata_props}
        assert json.loads(meta["fwdlearn.optimizer"])["name"] == optimizer
        assert stage["cost"]["macs"] > 0
    # layer 2's update runs layer 1 forward on the batch (B x 64 x 16), then its own two products on 2B rows
    assert manifest["stages"][1]["cost"]["macs"] == 8 * 64 * 16 + 2 * (16 * 16 * 16)
    # layer 1 reads the batch, one shift, its weight and bias (and their optimiser state), step and lr, and
    # writes the new weight, bias and state and the loss (float32; the shift int64)
    weights, states = 16 * 64 + 16, 2 if optimizer == "adamw" else 0
    scalars = 2 if optimizer == "adamw" else 1                       # SGD's graph does not read the step count
    expected = 4 * (8 * 64 + weights * (1 + states) + scalars) + 8 + 4 * (weights * (1 + states) + 1)
    assert manifest["stages"][0]["cost"]["bytes_in_out"] == expected
    assert result.report["cost_per_update"]["macs"] == sum(s["cost"]["macs"] for s in manifest["stages"])


def test_a_wrong_update_fails_verification_and_writes_nothing(trained, tmp_path, monkeypatch):
    from fwdlearn.ondevice import scff_mlp
    from fwdlearn.ondevice.export import export_update
    original = scff_mlp.SCFFLayerUpdate.gradients

    def flipped(self, data, frozen, params):
        grads, loss = original(self, data, frozen, params)
        return {k: -v for k, v in grads.items()}, loss

    monkeypatch.setattr(scff_mlp.SCFFLayerUpdate, "gradients", flipped)
    with pytest.raises(ExportError, match="differ from the learner's"):
        export_update(trained, tmp_path, log=lambda *_: None)
    assert not any(p.suffix in (".onnx", ".json", ".npz") for p in tmp_path.iterdir())
    assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from fwdlearn.ondevice.export import export_update
    out = tmp_path_factory.mktemp("device")
    export_update(trained, out, log=lambda *_: None)
    return out


def test_runtime_runs_without_torch_and_refuses_wrong_shapes(exported):
    script = f"""
import sys, numpy as np
from fwdlearn.ondevice.runtime import UpdateRunner, DeviceInputError
runner = UpdateRunner({str(exported / 'update.json')!r})
x = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32)
runner.step(x)
for bad in (x[:5], x.reshape(8, 64), np.where(x > 0.5, np.nan, x)):
    try:
        runner.step(bad)
    except DeviceInputError as exc:
        print("refused:", exc)
runner.state["layers.0.linear.weight.exp_avg"] = np.zeros((3, 3), np.float32)
try:
    runner.step(x)
except DeviceInputError as exc:
    print("refused:", exc)
print("torch imported:", "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[-1] == "torch imported: False"
    refused = [line for line in lines if line.startswith("refused:")]
    assert len(refused) == 4
    assert "expected shape [8, 1, 8, 8], got [5, 1, 8, 8]" in refused[0]
    assert "NaN" in refused[2]
    assert "exp_avg" in refused[3] and "[3, 3]" in refused[3]


def test_device_updates_lower_the_loss_and_the_inference_model_uses_them(trained, exported):
    """Steps on the device's own data lower each stage's loss; the inference graph with the learned weights gives
    the logits of the PyTorch network holding the same weights."""
    from fwdlearn.data import load_dataset
    from fwdlearn.export import export_onnx, load_deployable
    from fwdlearn.ondevice.runtime import InferenceModel, UpdateRunner

    runner = UpdateRunner(exported / "update.json", seed=1)
    runner.lr = {k: 1e-2 for k in runner.lr}
    x = load_dataset("digits", None).train.x[:8].numpy()
    first = runner.step(x)
    for _ in range(30):
        last = runner.step(x)
    assert last["layer1"] < 0.8 * first["layer1"] and last["layer2"] < first["layer2"]

    deployable = load_deployable(trained)
    export_onnx(deployable, exported / "model.onnx", "float", None, learnable=True)
    model = InferenceModel(exported / "model.onnx", runner.parameters)
    assert model.replaced == 4
    state = {k: torch.from_numpy(v) for k, v in runner.parameters.items()}
    deployable.model.encoder.load_state_dict(state)
    with torch.no_grad():
        expected = deployable.model(torch.from_numpy(x)).numpy()
    assert np.abs(model.run(x) - expected).max() < 1e-4


@pytest.fixture(scope="module", params=[True, False], ids=["per-channel", "per-tensor"])
def trained_quantised(tmp_path_factory, request):
    pytest.importorskip("brevitas")
    from fwdlearn.nn.quant import QuantConfig
    from fwdlearn.run import train_run
    out = tmp_path_factory.mktemp("quantised")
    config = dataclasses.replace(tiny_config(epochs=1), quant=QuantConfig(weight_bits=4, per_channel=request.param))
    train_run(config, out, show_progress=False, log=lambda *_: None)
    return out / "checkpoint.pt"


def test_quantised_update_computes_with_quantised_weights_and_equals_the_learner(trained_quantised, tmp_path,
                                                                              monkeypatch):
    """A 4-bit SCFF MLP (per output unit or per tensor): the graph's forward uses Brevitas' quantised weights and
    steps the float ones with the straight-through gradient, including the part that reaches the largest weight
    (of each row, or of all) through the scale; without that part the verification against the learner's own steps
    fails. Verified step by step (a float-noise difference flips a weight's rounding when running free)."""
    from fwdlearn.ondevice import scff_mlp
    from fwdlearn.ondevice.export import export_update
    export_update(trained_quantised, tmp_path / "ok", log=lambda *_: None)
    manifest = json.loads((tmp_path / "ok" / "update.json").read_text())
    assert all(s["verification"]["worst_relative"] <= 1e-5 for s in manifest["stages"])
    assert all(s["verification"]["mode"] == "lock-step" for s in manifest["stages"])
    assert manifest["stages"][0]["hyper_parameters"]["weight_bits"] == 4
    ops = {n.op_type for n in onnx.load(str(tmp_path / "ok" / "update-layer1.onnx")).graph.node}
    assert {"Round", "ArgMax"} <= ops
    monkeypatch.setattr(scff_mlp, "float_gradient", lambda weight, grad, bits, per_channel: grad)
    with pytest.raises(ExportError, match="differ from the learner's"):
        export_update(trained_quantised, tmp_path / "plain", log=lambda *_: None)
