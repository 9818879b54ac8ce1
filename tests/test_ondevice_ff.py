"""Forward-Forward's on-device update (``fwdlearn/ondevice/ff.py``): the closed-form gradient of each layer's stage
is the gradient the learner's own update applies, and the exported graph, run in onnxruntime, takes the learner's
steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fwdlearn.errors import ExportError
from fwdlearn.learner import Batch
from fwdlearn.objectives.ff import wrong_labels
from fwdlearn.ondevice.ff import update_stages
from fwdlearn.ondevice.offered import update_stages_for
from fwdlearn.ondevice.optimizers import OptimizerSpec
from fwdlearn.ondevice.stage import UpdateGraph
from fwdlearn.presets import load_preset
from fwdlearn.rules.ff import FFLayerConfig, FFLearner
from conftest import applied_gradients, exported_inference_only

BATCH, WIDTH, FEATURES, CLASSES = 8, 16, 64, 10


def tiny_config(backend: str = "fused", theta: float = 3.0):
    """ff-digits shrunk to two layers of 16 units, batch 8. ``theta`` near the initial goodness, so that both the
    positive and the negative terms shape the gradient (with theta = width the negatives' sigmoids vanish)."""
    config = load_preset("ff-digits")
    config.layers = [FFLayerConfig(width=WIDTH, lr=3e-3, theta=theta, weight_decay=1e-2, epochs=1)
                     for _ in range(2)]
    config.batch_size, config.backend = BATCH, backend
    return config.validate()


def draws(seed: int, dtype=torch.float32, shape: tuple[int, ...] = (FEATURES,)) -> dict[str, torch.Tensor]:
    """One batch in [0, 1], its labels and a wrong label per sample (as the runtime draws them)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, BATCH)
    wrong = (labels + rng.integers(1, CLASSES, BATCH)) % CLASSES
    return {"samples": torch.tensor(rng.random((BATCH, *shape)), dtype=dtype),
            "labels": torch.tensor(labels, dtype=torch.int64), "wrong_labels": torch.tensor(wrong, dtype=torch.int64)}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("backend", ["fused", "torch"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("index", [0, 1])
def test_gradient_is_the_one_the_learner_applies(backend, dtype, tolerance, index):
    """Layer 1 and layer 2 (layer 1 run forward, normalised): dW, db and the loss of ``gradients()`` equal the
    learner's own (fused closed-form kernel, and autograd) on the same batch and wrong labels."""
    learner = FFLearner(tiny_config(backend), FEATURES)
    learner.network.to(dtype)
    stage = update_stages(learner)[index]
    data = draws(index, dtype)
    live = stage.parameters_of(learner)
    with torch.no_grad():
        grads, loss = stage.gradients(data, {n: live[n].clone() for n in stage.frozen},
                                      {n: live[n].clone() for n in stage.trained})
    expected = applied_gradients(learner, stage, data)
    for name in stage.trained:
        assert grads[name].dtype == dtype
        assert relative(grads[name], expected[name]) < tolerance, (name, relative(grads[name], expected[name]))
        assert float(expected[name].norm()) > 0
    # the learner's loss of this batch (train_batch's statistics) from the same weights
    fresh = FFLearner(tiny_config(backend), FEATURES)
    fresh.network.to(dtype)
    stats = fresh.train_batch(Batch(data["samples"], y=data["labels"]), [stage.name], wrong=data["wrong_labels"])
    assert abs(float(loss) - stats[stage.name]["loss"]) <= tolerance * abs(stats[stage.name]["loss"])


def test_the_negatives_matter_and_the_wrong_labels_are_graph_inputs():
    """Other wrong labels (the same samples and labels) give another gradient, beyond the tolerance: the negative
    term is not negligible in the tiny configuration and the overlay reads the input, not a traced constant."""
    learner = FFLearner(tiny_config(), FEATURES)
    stage = update_stages(learner)[1]
    data = draws(3)
    other = dict(data, wrong_labels=(data["wrong_labels"] + 1 + (data["wrong_labels"] + 1 == data["labels"]))
                 % CLASSES)
    assert bool((other["wrong_labels"] != other["labels"]).all())
    live = {n: t.detach() for n, t in stage.parameters_of(learner).items()}
    frozen, params = {n: live[n] for n in stage.frozen}, {n: live[n] for n in stage.trained}
    a, _ = stage.gradients(data, frozen, params)
    b, _ = stage.gradients(other, frozen, params)
    assert relative(a[stage.trained[0]], b[stage.trained[0]]) > 1e-3


def test_given_wrong_labels_keep_the_learners_draws():
    """``train_batch`` without ``wrong`` draws exactly what ``wrong_labels`` would from the learner's generator
    (recorded runs repeat), and giving those labels takes the same step."""
    config = tiny_config()
    drawn, given = FFLearner(config, FEATURES), FFLearner(config, FEATURES)
    data = draws(5)
    batch = Batch(data["samples"], y=data["labels"])
    drawn.train_batch(batch, list(drawn.groups))
    wrong = wrong_labels(data["labels"], CLASSES, given.generator)
    given.train_batch(batch, list(given.groups), wrong=wrong)
    for (name, p), q in zip(drawn.network.named_parameters(), given.network.parameters()):
        assert torch.equal(p, q), name
    assert torch.equal(drawn.generator.get_state(), given.generator.get_state())


def test_stages_are_registered_and_named_as_the_network_state():
    learner = FFLearner(tiny_config(), FEATURES)
    stages = update_stages_for("ff")(learner)
    assert [s.name for s in stages] == list(learner.groups) == ["layer1", "layer2"]
    keys = list(learner.network.state_dict())
    assert stages[1].frozen == keys[:2] and stages[1].trained == keys[2:] and stages[0].frozen == []
    assert [(d.name, d.kind, d.shape, d.bound) for d in stages[1].data_inputs] == [
        ("samples", "samples", (BATCH, FEATURES), 0), ("labels", "labels", (BATCH,), CLASSES),
        ("wrong_labels", "wrong_labels", (BATCH,), CLASSES)]


def test_a_quantised_run_is_refused():
    config = tiny_config()
    config.quant.weight_bits = 4
    learner = FFLearner(tiny_config(), FEATURES)
    learner.config = config
    with pytest.raises(ExportError, match="quantised"):
        update_stages(learner)


# ----- the exported graph in onnxruntime --------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 1])
def test_exported_update_takes_the_learners_steps_in_onnxruntime(tmp_path, index):
    """Layer ``index``'s UpdateGraph (closed form + AdamW) exported with the TorchScript exporter, opset 18: only
    standard inference operators, and 10 steps in onnxruntime equal 10 steps of the learner's own update
    (relative 1e-5), each step on a new batch and new wrong labels; samples shaped as the digits' images."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    steps, shape = 10, (1, 8, 8)
    learner = FFLearner(tiny_config(), FEATURES)
    stage = update_stages(learner, shape)[index]
    group = stage.group(learner)
    spec, lr = OptimizerSpec.of(group.optimizer), float(group.optimizer.param_groups[0]["lr"])
    graph = UpdateGraph(stage, spec)
    live = {n: t.detach().clone() for n, t in stage.parameters_of(learner).items()}
    values = {**draws(0, shape=shape), **live, **{n: torch.zeros_like(live[n.rsplit(".", 1)[0]]) for n in graph.state_names},
              "step": torch.tensor(0.0), "lr": torch.tensor(lr)}
    path = tmp_path / f"{stage.name}.onnx"
    exported_inference_only(graph, values, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: values[n].numpy() for n in graph.input_names if n in graph.stage.frozen}
    current = {n: values[n].numpy() for n in list(stage.trained) + graph.state_names}
    losses = []
    for t in range(steps):
        data = draws(100 + t, shape=shape)
        feeds.update({n: v.numpy() for n, v in data.items()})
        feeds.update(current)
        feeds.update(step=np.array(float(t), np.float32), lr=np.array(lr, np.float32))
        outputs = dict(zip(graph.output_names, session.run(None, feeds)))
        current = {n: outputs[f"new.{n}"] for n in list(stage.trained) + graph.state_names}
        losses.append(float(outputs["loss"]))
        stage.reference_step(learner, data)
    after = stage.parameters_of(learner)
    for name in stage.trained:
        moved = float((after[name].detach() - live[name]).norm())
        assert moved > 0
        error = float((torch.from_numpy(current[name]) - after[name].detach()).norm())
        assert error <= 1e-5 * float(after[name].norm()), (name, error, moved)
    for name in stage.frozen:
        assert torch.equal(after[name], live[name])
    assert all(np.isfinite(losses))


def test_export_update_writes_and_verifies_both_layers(tmp_path):
    """``fwdlearn export --update``'s path on a tiny ff checkpoint: the rule offers its stages, both graphs pass the
    exporter's own verification (its draws of wrong labels, the digits' batches) and the manifest names the inputs."""
    pytest.importorskip("onnxruntime")
    from fwdlearn.checkpoint import save_checkpoint
    from fwdlearn.ondevice.export import export_update

    config = tiny_config()
    learner = FFLearner(config, FEATURES)
    save_checkpoint(tmp_path / "checkpoint.pt", config, FEATURES, learner.state_dict(), finished=True)
    report = export_update(tmp_path / "checkpoint.pt", tmp_path, log=lambda *_: None).report
    assert [s["name"] for s in report["stages"]] == ["layer1", "layer2"]
    for stage in report["stages"]:
        assert (tmp_path / stage["file"]).is_file()
        assert stage["verification"]["steps"] == 10 and stage["verification"]["worst_relative"] <= 1e-5
        assert [(i["name"], i["kind"], i["bound"]) for i in stage["inputs"]] == [
            ("samples", "samples", 0), ("labels", "labels", CLASSES), ("wrong_labels", "wrong_labels", CLASSES)]
