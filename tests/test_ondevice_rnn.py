"""SCFF's Bi-RNN on-device update (``fwdlearn/ondevice/scff_rnn.py``): the closed-form gradient of each direction's
stage is the gradient the learner's own update applies (fused kernel and autograd, sequences of different lengths,
both directions, one and two negative blocks), and the exported graph, run in onnxruntime, takes the learner's
steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fwdlearn.config import QuantConfig
from fwdlearn.errors import ExportError
from fwdlearn.objectives.scff import pair_examples, random_shift
from fwdlearn.ondevice.offered import update_stages_for
from fwdlearn.ondevice.optimizers import OptimizerSpec
from fwdlearn.ondevice.scff_rnn import update_stages
from fwdlearn.ondevice.stage import UpdateGraph
from fwdlearn.presets import load_preset
from fwdlearn.rules.scff_rnn import SCFFRNNLearner
from conftest import applied_gradients, exported_inference_only

BATCH, WIDTH, FEATURES, STEPS = 4, 16, 39, 6


def tiny_config(backend: str = "fused", negatives: int = 1, penalty: float | None = None):
    """The ``sequences`` preset shrunk: 16 units per direction, batch 4; thresholds near the initial goodness so
    that both terms (and the penalty) shape the gradient."""
    config = load_preset("sequences")
    layer = config.layers[0]
    layer.width, layer.theta_pos, layer.theta_neg = WIDTH, 0.5, 1.0
    if penalty is not None:
        layer.penalty = penalty
    config.batch_size, config.backend, config.data.negatives = BATCH, backend, negatives
    config.bptt.epochs = 0
    return config.validate()


def draws(seed: int, negatives: int = 1, dtype=torch.float32, longest: int | None = None) -> dict[str, torch.Tensor]:
    """One batch of zero-padded sequences of different lengths (1..``longest``, by default up to ``STEPS``; frames
    past a sequence's end are zero) and distinct shifts, as the runtime draws them."""
    rng = np.random.default_rng(seed)
    longest = longest or STEPS
    lengths = rng.integers(1, longest + 1, BATCH)
    lengths[rng.integers(BATCH)] = longest
    x = rng.standard_normal((BATCH, STEPS, FEATURES)) * (np.arange(STEPS)[None, :, None] < lengths[:, None, None])
    shifts = rng.permutation(BATCH - 1)[:negatives] + 1
    return {"samples": torch.tensor(x, dtype=dtype), "lengths": torch.tensor(lengths, dtype=torch.int64),
            "shifts": torch.tensor(shifts, dtype=torch.int64)}


def closed_form(stage, learner, data):
    live = {n: t.detach().clone() for n, t in stage.parameters_of(learner).items()}
    with torch.no_grad():
        return stage.gradients(data, {n: live[n] for n in stage.frozen}, {n: live[n] for n in stage.trained})


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("backend", ["fused", "torch"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("which", [0, 1], ids=["forward", "backward"])
@pytest.mark.parametrize("negatives,longest", [(1, STEPS), (2, STEPS - 2)], ids=["one-negative", "two-short"])
def test_gradient_is_the_one_the_learner_applies(backend, dtype, tolerance, which, negatives, longest):
    """dW_ih, dW_hh, db and the loss of ``gradients()`` equal the learner's own (the fused closed-form kernel, and
    autograd through the masked loss) on the same sequences (lengths 1..T, or all shorter than the graph's T) and
    shifts, for either direction."""
    learner = SCFFRNNLearner(tiny_config(backend, negatives), FEATURES)
    learner.network.to(dtype)
    stage = update_stages(learner, steps=STEPS)[which]
    data = draws(which + 2 * negatives, negatives, dtype, longest)
    assert int(data["lengths"].min()) < longest       # sequences of different lengths
    grads, loss = closed_form(stage, learner, data)
    expected = applied_gradients(learner, stage, data)
    for name in stage.trained:
        assert grads[name].dtype == dtype and grads[name].shape == expected[name].shape
        assert float(expected[name].norm()) > 0
        assert relative(grads[name], expected[name]) < tolerance, (name, relative(grads[name], expected[name]))
    # the learner's loss of this batch (its update's statistics) from the same weights
    fresh = SCFFRNNLearner(tiny_config(backend, negatives), FEATURES)
    fresh.network.to(dtype)
    lengths = data["lengths"]
    left, right, pair_lengths = pair_examples(lengths, fresh.generator, negatives, shifts=data["shifts"])
    x = data["samples"][:, :int(lengths.max())]
    stats = fresh.update(which, x, lengths, left, right, pair_lengths, BATCH)
    assert abs(float(loss) - stats["loss"]) <= tolerance * abs(stats["loss"])


def test_the_penalty_term_is_in_the_gradient():
    """With and without lambda ||G_pos|| the closed form follows the learner (and the two differ): the penalty's
    derivative is not dropped."""
    results = []
    for penalty in (0.0, 0.5):
        learner = SCFFRNNLearner(tiny_config(penalty=penalty), FEATURES)
        learner.network.double()
        stage = update_stages(learner, steps=STEPS)[0]
        data = draws(7, dtype=torch.float64)
        grads, _ = closed_form(stage, learner, data)
        expected = applied_gradients(learner, stage, data)
        assert relative(grads[stage.trained[1]], expected[stage.trained[1]]) < 1e-10
        results.append(grads[stage.trained[1]])
    assert relative(results[0], results[1]) > 1e-3


def test_lengths_and_shifts_are_read_from_the_inputs():
    """Another length for one sequence, or another shift, changes the gradient well beyond the tolerance (neither
    is a constant of the graph), and a sequence's frames past its length do not matter."""
    learner = SCFFRNNLearner(tiny_config(negatives=1), FEATURES)
    for stage in update_stages(learner, steps=STEPS):
        data = draws(11)
        data["lengths"][:] = torch.tensor([STEPS, 3, 5, 2])
        data["samples"] = data["samples"] * (torch.arange(STEPS)[None, :, None] < data["lengths"][:, None, None])
        data["shifts"][:] = 1
        base, _ = closed_form(stage, learner, data)
        shorter = dict(data, lengths=data["lengths"].clone())
        shorter["lengths"][2] = 4
        other_shift = dict(data, shifts=torch.tensor([2]))
        garbage = dict(data, samples=data["samples"].clone())
        garbage["samples"][1, 3:] = 7.0           # past sequence 1's length (3)
        name = stage.trained[0]
        assert relative(closed_form(stage, learner, shorter)[0][name], base[name]) > 1e-3
        assert relative(closed_form(stage, learner, other_shift)[0][name], base[name]) > 1e-3
        assert relative(closed_form(stage, learner, garbage)[0][name], base[name]) < 1e-6


def test_given_shifts_pair_as_drawn_ones_and_leave_the_generator():
    """``pair_examples(..., shifts=)`` forms the pairs the generator's draw would, without drawing."""
    lengths = torch.tensor([5, 2, 7, 3, 4])
    for negatives in (1, 3):
        drawn_gen, probe = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        drawn = pair_examples(lengths, drawn_gen, negatives)
        shifts = ([random_shift(5, probe)] if negatives == 1
                  else (torch.randperm(4, generator=probe)[:negatives] + 1).tolist())
        untouched = torch.Generator().manual_seed(9)
        state = untouched.get_state()
        given = pair_examples(lengths, untouched, negatives, shifts=torch.tensor(shifts))
        assert all(torch.equal(a, b) for a, b in zip(drawn, given))
        assert torch.equal(untouched.get_state(), state)
    with pytest.raises(ValueError, match="shifts"):
        pair_examples(lengths, torch.Generator(), 1, shifts=[5])


def test_stages_are_registered_and_named_as_the_network_state():
    learner = SCFFRNNLearner(tiny_config(negatives=2), FEATURES)
    stages = update_stages_for("scff-rnn")(learner, sample_shape=(STEPS, FEATURES))
    assert [s.name for s in stages] == list(learner.groups) == ["forward", "backward"]
    keys = list(learner.network.state_dict())
    assert stages[0].trained + stages[1].trained == keys and stages[0].frozen == stages[1].frozen == []
    for stage in stages:
        group_params = {id(p) for p in stage.group(learner).parameters}
        assert {id(t) for t in stage.parameters_of(learner).values()} == group_params
    assert [(d.name, d.kind, d.shape, d.dtype) for d in stages[1].data_inputs] == [
        ("samples", "samples", (BATCH, STEPS, FEATURES), "float32"), ("lengths", "lengths", (BATCH,), "int64"),
        ("shifts", "shifts", (2,), "int64")]
    assert update_stages(learner, sample_shape=(10, FEATURES), steps=STEPS)[0].steps == STEPS
    with pytest.raises(ExportError, match="steps"):
        update_stages(learner)


def test_a_quantised_run_is_refused():
    config = tiny_config()
    config.quant = QuantConfig(4, 4)
    learner = SCFFRNNLearner(tiny_config(), FEATURES)
    learner.config = config
    with pytest.raises(ExportError, match="quantised"):
        update_stages(learner, steps=STEPS)


# ----- the exported graph in onnxruntime --------------------------------------------------------------------

@pytest.mark.parametrize("which", [0, 1], ids=["forward", "backward"])
def test_exported_update_takes_the_learners_steps_in_onnxruntime(tmp_path, which):
    """Direction ``which``'s UpdateGraph (closed form + AdamW) exported with the TorchScript exporter, opset 18:
    only standard inference operators, and 10 steps in onnxruntime equal 10 steps of the learner's own update
    (relative 1e-5), each on a new batch of sequences of new lengths and new shifts."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    steps, negatives = 10, 2
    learner = SCFFRNNLearner(tiny_config(negatives=negatives), FEATURES)
    stage = update_stages(learner, steps=STEPS)[which]
    group = stage.group(learner)
    spec, lr = OptimizerSpec.of(group.optimizer), float(group.optimizer.param_groups[0]["lr"])
    graph = UpdateGraph(stage, spec)
    live = {n: t.detach().clone() for n, t in stage.parameters_of(learner).items()}
    values = {**draws(0, negatives), **live,
              **{n: torch.zeros_like(live[n.rsplit(".", 1)[0]]) for n in graph.state_names},
              "step": torch.tensor(0.0), "lr": torch.tensor(lr)}
    path = tmp_path / f"{stage.name}.onnx"
    model = exported_inference_only(graph, values, path)
    assert [i.name for i in model.graph.input] == graph.input_names     # every data input is read by the graph
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    current = {n: values[n].numpy() for n in list(stage.trained) + graph.state_names}
    losses, seen_lengths = [], set()
    for t in range(steps):
        data = draws(100 + t, negatives, longest=STEPS - t % 3)
        seen_lengths.update(data["lengths"].tolist())
        feeds = {**{n: v.numpy() for n, v in data.items()}, **current,
                 "step": np.array(float(t), np.float32), "lr": np.array(lr, np.float32)}
        outputs = dict(zip(graph.output_names, session.run(None, feeds)))
        current = {n: outputs[f"new.{n}"] for n in list(stage.trained) + graph.state_names}
        losses.append(float(outputs["loss"]))
        stage.reference_step(learner, data)
    assert len(seen_lengths) > 3
    after = stage.parameters_of(learner)
    for name in stage.trained:
        moved = float((after[name].detach() - live[name]).norm())
        assert moved > 0
        error = float((torch.from_numpy(current[name]) - after[name].detach()).norm())
        assert error <= 1e-5 * float(after[name].detach().norm()), (name, error, moved)
        assert error < 1e-2 * moved
    assert all(np.isfinite(losses))
