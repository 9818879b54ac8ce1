"""``fwdlearn export``: every model type to float ONNX, checked in onnxruntime; bad exports fail cleanly."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="export needs the export extras")
onnxruntime = pytest.importorskip("onnxruntime", reason="export needs the export extras")

from test_cli import TINY_PRESET, assert_one_line_error, fwdlearn  # noqa: E402
from test_cli_lac import tiny_lac  # noqa: E402
from test_cli_rnn import TINY_RNN  # noqa: E402

from fwdlearn.run import train_run  # noqa: E402
from fwdlearn.data import load_dataset  # noqa: E402
from fwdlearn.errors import CheckpointError, ExportError, FwdlearnError  # noqa: E402
from fwdlearn.export import export_onnx, load_deployable, report_path  # noqa: E402
from fwdlearn.export.verify import judge  # noqa: E402
from fwdlearn.presets import load_preset  # noqa: E402
from fwdlearn.registry import get_rule, rules  # noqa: E402

QUANT_SECTION = "\n[quant]\nweight_bits = 4\nact_bits = 4\nper_channel = true\n"

TINY_CNN = """
name = "tiny-cnn"
learner = "scff-cnn"
seed = 0
batch_size = 50

[data]
dataset = "digits"

[[layers]]               # 8x8 -> 4x4 (max-pool 2); read out: average 2x2 -> 4x2x2
width = 4
lr = 1e-2
theta_pos = 0.0
theta_neg = 1.0
epochs = 1

[layers.conv]
kernel = 3
padding = 1
readout_size = 2

[[layers]]               # 4x4 -> 2x2; read out 8x2x2
width = 8
lr = 2e-3
theta_pos = 1.0
theta_neg = 1.0
epochs = 1

[layers.conv]
kernel = 3
padding = 1

[probe]
epochs = 2
"""


def _preset_text(kind: str) -> str:
    """The tiny preset a test export of ``kind`` trains (no end-to-end baseline, no fine-tuning); ``-w4a4``:
    quantised, per channel, ``-w4a4-hls``: per tensor (what hls4ml's QONNX reader takes)."""
    quantised = "-w4a4" in kind
    learner = kind.split("-w4a4")[0]
    if learner == "scff-mlp":
        text = TINY_PRESET
    elif learner == "scff-cnn":
        text = TINY_CNN
    elif learner == "scff-rnn":
        text = TINY_RNN.replace("epochs = 1\nbatch_size = 32", "epochs = 0\nbatch_size = 32")
    else:
        text = tiny_lac(learner, finetune_epochs=0, bp_epochs=0)
    if quantised:
        # hls4ml converts per-tensor weight scales only: the LAC-MLP it checks is trained with one scale per layer
        text += QUANT_SECTION.replace("per_channel = true", "per_channel = false") \
            if learner == "lac-mlp" or kind.endswith("-hls") else QUANT_SECTION
    return text


def _train(kind: str, folder: Path) -> Path:
    """A finished tiny run of ``kind``; returns its checkpoint."""
    preset = folder / f"{kind}.toml"
    preset.write_text(_preset_text(kind))
    train_run(load_preset(str(preset)), folder / kind, show_progress=False, log=lambda _: None)
    return folder / kind / "checkpoint.pt"


def data_samples(deployable, n: int) -> tuple[torch.Tensor, ...]:
    """``n`` samples spread over the test split of the run's (embedded) data set, as the graph takes them:
    sequences cut or zero-padded to the frames the graph is unrolled over."""
    split = load_dataset(deployable.readout.dataset).test
    index = torch.arange(n) * (len(split) // n)
    if not deployable.is_sequence:
        return (split.x[index],)
    steps = deployable.example_inputs[0].shape[1]
    x = split.x[index, :steps]
    x = torch.nn.functional.pad(x, (0, 0, 0, steps - x.shape[1]))
    return x, split.lengths[index].clamp(max=steps)


def run_both(path: Path, deployable, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The exported file's logits in onnxruntime (our own session) and PyTorch's, on ``inputs``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {name: t.numpy() for name, t in zip(deployable.input_names, inputs)})
    with torch.no_grad():
        expected = deployable.model(*inputs)
    return torch.from_numpy(got), expected


def parity(got: torch.Tensor, expected: torch.Tensor) -> dict:
    """Fraction of logits not bit-identical, largest difference, fraction of samples with the same class."""
    return {"differing": float((got != expected).float().mean()),
            "max_difference": float((got - expected).abs().max()),
            "same_class": float((got.argmax(1) == expected.argmax(1)).float().mean())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export-runs")
    kinds = ("scff-mlp", "scff-cnn", "scff-rnn", "lac-mlp", "lac-conv", "scff-mlp-w4a4", "lac-conv-w4a4",
             "lac-mlp-w4a4", "scff-rnn-w4a4", "scff-cnn-w4a4", "scff-mlp-w4a4-hls", "scff-cnn-w4a4-hls")
    return {kind: _train(kind, folder) for kind in kinds}


@pytest.mark.parametrize("kind", ["scff-mlp", "scff-cnn", "scff-rnn", "lac-mlp", "lac-conv"])
def test_every_model_type_exports_and_matches_pytorch_in_onnxruntime(runs, tmp_path, kind):
    deployable = load_deployable(runs[kind])
    path = tmp_path / "model.onnx"
    report = export_onnx(deployable, path, "float")
    onnx.checker.check_model(str(path), full_check=True)
    # Our own comparison, independent of the exporter's: real test samples, a batch size it was not traced with.
    got, expected = run_both(path, deployable, data_samples(deployable, 5))
    assert got.shape == (5, 10) and torch.isfinite(expected).all()
    measured = parity(got, expected)
    assert measured["max_difference"] <= 1e-4 and measured["same_class"] == 1.0
    check = report["verification"]["onnxruntime"]
    assert check["inputs"] == f"{deployable.readout.dataset} test split, 64 samples" and check["samples"] == 64
    assert check["max_abs_difference"] <= 1e-4 and check["same_class"] == "64/64"
    assert json.loads(report_path(path).read_text()) == report
    assert report["model_bytes"] == path.stat().st_size
    assert report["parameters"] == sum(p.numel() for p in deployable.model.parameters())
    assert report["operators"] and report["macs_per_inference"]["total"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_exported_logits_are_those_of_the_trained_encoder_and_readout(runs, tmp_path):
    """The graph computes the run's own probe: its accuracy on the test set equals the recorded one."""
    from fwdlearn.data import load_dataset

    deployable = load_deployable(runs["scff-mlp"])
    path = tmp_path / "digits.onnx"
    export_onnx(deployable, path, "float")
    test = load_dataset("digits").test
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"x": test.x.numpy()})
    accuracy = float((torch.from_numpy(logits).argmax(1) == test.y).float().mean())
    assert accuracy == pytest.approx(deployable.readout.test_accuracy, abs=1e-4)


def test_metadata_carries_the_preprocessing_a_deployer_needs(runs, tmp_path):
    path = tmp_path / "rnn.onnx"
    export_onnx(load_deployable(runs["scff-rnn"], sequence_length=12), path, "float")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["fwdlearn.class_names"]) == [str(d) for d in range(10)]
    assert meta["fwdlearn.learner"] == "scff-rnn" and meta["fwdlearn.dataset"] == "sequences"
    layout = json.loads(meta["fwdlearn.input_layout"])
    assert "12" in layout["x"] and "int64" in layout["lengths"]
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in onnx.load(str(path)).graph.input}
    assert inputs == {"x": ["batch", 12, 39], "lengths": ["batch"]}
    mlp = tmp_path / "mlp.onnx"
    export_onnx(load_deployable(runs["scff-mlp"]), mlp, "float")
    meta = {p.key: p.value for p in onnx.load(str(mlp)).metadata_props}
    assert "16" in json.loads(meta["fwdlearn.preprocessing"])["scale"]


# What each rule's graph must be said to compute, typed in from the rules themselves (papers), not read
# from the registry: the metadata a deployer reads cannot be another rule's, or empty.
IN_GRAPH_WORDS = {
    "scff-mlp": ("standardisation", "[x, x]", "read-out"),
    "scff-cnn": ("standardisation", "convolution", "[x, x]", "pool", "read-out"),
    "scff-rnn": ("standardisation", "recurrent", "[x, x]", "read-out"),
    "lac-mlp": ("Linear", "batch norm", "ReLU", "read-out"),
    "lac-conv": ("convolution", "batch norm", "ReLU", "read-out"),
}


@pytest.mark.parametrize("name", list(rules()))
def test_every_rule_states_what_its_exported_graph_computes(name):
    in_graph = rules()[name].in_graph
    assert in_graph.strip() and "\n" not in in_graph
    for word in IN_GRAPH_WORDS.get(name, ("read-out",)):
        assert word in in_graph, (name, word)


def _train_default(name: str, folder: Path) -> Path:
    """A rule's default (embedded-data) preset cut to one epoch, one probe epoch and no end-to-end baseline."""
    from fwdlearn.presets import check_for_rule

    config = load_preset(get_rule(name).presets[None])
    for layer in getattr(config, "layers", []):
        layer.epochs = 1
    if hasattr(config, "epochs"):
        config.epochs = 1
    config.probe.epochs = 1
    for section in ("bp", "bptt", "finetune"):
        if hasattr(config, section):
            getattr(config, section).epochs = 0
    train_run(check_for_rule(config.validate()), folder / name, show_progress=False, log=lambda _: None)
    return folder / name / "checkpoint.pt"


@pytest.mark.parametrize("name", list(rules()))
def test_exported_metadata_states_the_in_graph_preprocessing_of_every_rule(runs, tmp_path, name):
    """``fwdlearn.in_graph`` of a model exported from a trained run is its rule's statement, never empty
    (scff-cnn's once was)."""
    rule = get_rule(name)
    checkpoint = runs[name] if name in runs else _train_default(name, tmp_path)
    deployable = load_deployable(checkpoint, **({"sequence_length": 6} if rule.sequence else {}))
    path = tmp_path / "model.onnx"
    export_onnx(deployable, path, "qcdq" if deployable.quantised else "float")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["fwdlearn.learner"] == name
    assert meta["fwdlearn.in_graph"].strip() and meta["fwdlearn.in_graph"] == rule.in_graph


def test_recurrent_export_respects_each_sequence_length(runs, tmp_path):
    """Frames after a sequence's end must not change its logits, in the exported graph too."""
    deployable = load_deployable(runs["scff-rnn"], sequence_length=10)
    path = tmp_path / "rnn.onnx"
    export_onnx(deployable, path, "float")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, _ = data_samples(deployable, 3)                     # test sequences, cut to 10 frames
    lengths = torch.tensor([10, 4, 7])
    noisy = x.clone()
    for i, n in enumerate(lengths.tolist()):
        noisy[i, n:] = 5.0
    clean = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    other = session.run(None, {"x": noisy.numpy(), "lengths": lengths.numpy()})[0]
    assert (abs(clean - other).max()) < 1e-5


def test_unfinished_run_is_refused(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY_PRESET)
    out = tmp_path / "run"
    halted = fwdlearn("train", "scff-mlp", "--preset", str(preset), "--out", str(out), "--no-progress",
                      env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"})
    assert halted.returncode != 0
    result = fwdlearn("export", str(out / "checkpoint.pt"))
    assert_one_line_error(result, "has not finished training")
    assert not (out / "model.onnx").exists()


def test_readout_of_another_run_is_refused(runs, tmp_path):
    """Another rule's read-out, and one of the same rule on another network: refused in a line naming it."""
    for run, other in (("scff-mlp", "lac-mlp"), ("lac-mlp", "lac-conv")):
        readout = runs[other].parent / "readout.pt"
        with pytest.raises(CheckpointError, match=re.escape(str(readout))):
            load_deployable(runs[run], readout=readout)


def test_missing_readout_and_corrupt_checkpoint_give_one_line_errors(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "checkpoint.pt").write_bytes(runs["scff-mlp"].read_bytes())
    assert_one_line_error(fwdlearn("export", str(bare / "checkpoint.pt")), "no trained read-out")
    (bare / "eval").mkdir()                        # where 'fwdlearn eval' leaves its read-out
    (bare / "eval" / "readout.pt").write_bytes((runs["scff-mlp"].parent / "readout.pt").read_bytes())
    assert load_deployable(bare / "checkpoint.pt").readout.dataset == "digits"
    (bare / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert_one_line_error(fwdlearn("export", str(bare / "checkpoint.pt")), "not a readable checkpoint")
    assert not list(bare.glob("*.onnx"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_unwritable_destination_leaves_no_file(runs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = fwdlearn("export", str(runs["scff-mlp"]), "--out", str(locked / "m.onnx"))
        assert_one_line_error(result, "cannot write")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_destination_that_is_a_file_path_fails_and_leaves_nothing(runs, tmp_path):
    """A parent that is a regular file cannot hold the export (works for root too)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = fwdlearn("export", str(runs["scff-mlp"]), "--out", str(blocker / "m.onnx"))
    assert_one_line_error(result, "cannot write")
    assert blocker.read_text() == "x"


def test_a_failed_verification_writes_nothing(runs, tmp_path, monkeypatch):
    """If onnxruntime disagrees with PyTorch, neither the model nor its report appears."""
    import fwdlearn.export.onnx_export as onnx_export

    def disagree(path, deployable, **_):
        raise onnx_export.ExportError(f"{path}: onnxruntime output differs from PyTorch by 1 (> 0.0001)")

    monkeypatch.setattr(onnx_export, "compare_onnxruntime", disagree)
    with pytest.raises(FwdlearnError, match="differs"):
        export_onnx(load_deployable(runs["scff-mlp"]), tmp_path / "m.onnx", "float")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["scff-mlp-w4a4", "scff-cnn-w4a4", "lac-conv-w4a4"])
@pytest.mark.parametrize("export_format", ["qcdq", "qonnx"])
def test_quantised_model_exports_within_one_output_step(runs, tmp_path, export_format, kind):
    pytest.importorskip("brevitas")
    if export_format == "qonnx":
        pytest.importorskip("qonnx")
    deployable = load_deployable(runs[kind])
    step = deployable.model.output_step()
    assert step > 0
    path = tmp_path / f"{export_format}.onnx"
    report = export_onnx(deployable, path, export_format)
    onnx.checker.check_model(str(path), full_check=True)
    ops = report["operators"]
    assert ("QuantizeLinear" in ops and "DequantizeLinear" in ops) if export_format == "qcdq" else ("Quant" in ops)
    if export_format == "qcdq":   # weights stored as integers, not quantised from float at every inference
        weights = [i for i in onnx.load(str(path)).graph.initializer if len(i.dims) >= 2]
        assert weights and all(i.data_type == onnx.TensorProto.INT8 for i in weights)
    check = report["verification"]["onnxruntime" if export_format == "qcdq" else "qonnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, report_path(path).name])
    # the exporter's own check ran on test images: (nearly) every logit bit-identical, the rest one step off
    assert check["inputs"].startswith("digits test split")
    assert check["differing_fraction"] <= 0.01 and check["max_abs_difference"] <= step * (1 + 1e-4)
    assert check["same_class"] == f"{check['samples']}/{check['samples']}"
    if export_format == "qcdq":   # our own run on 100 test images, at a batch size of our choosing
        got, expected = run_both(path, deployable, data_samples(deployable, 100))
        measured = parity(got, expected)
        assert measured["differing"] <= 0.01 and measured["max_difference"] <= step * (1 + 1e-4)
        assert measured["same_class"] == 1.0
        grid = got / step                                   # the logits leave the graph on the 8-bit grid
        assert torch.allclose(grid, grid.round(), atol=1e-3) and grid.abs().max() <= 128


def test_quantised_recurrent_model_exports_to_qcdq_within_one_output_step(runs, tmp_path):
    """The Bi-RNN unrolled over 6 frames: integer weights, rounded inputs and states at every step."""
    pytest.importorskip("brevitas")
    deployable = load_deployable(runs["scff-rnn-w4a4"], sequence_length=6)
    step = deployable.model.output_step()
    path = tmp_path / "rnn.onnx"
    report = export_onnx(deployable, path, "qcdq")
    onnx.checker.check_model(str(path), full_check=True)
    matrices = [i for i in onnx.load(str(path)).graph.initializer if len(i.dims) >= 2]
    integer = [i for i in matrices if i.data_type == onnx.TensorProto.INT8]
    assert len(integer) == 5                                    # 2 x (W_ih, W_hh) and the read-out
    assert not [i for i in matrices if i.data_type == onnx.TensorProto.FLOAT]
    # the state of each of 6 steps in both directions, each direction's frames (all steps at once), the logits
    assert report["operators"]["QuantizeLinear"] >= 2 * 6 + 2 + 1
    check = report["verification"]["onnxruntime"]
    assert check["inputs"] == "sequences test split, 64 samples"
    assert check["differing_fraction"] <= 0.01 and check["max_abs_difference"] <= step * (1 + 1e-4)
    assert check["same_class"] == "64/64"
    got, expected = run_both(path, deployable, data_samples(deployable, 60))   # our own: 60 test sequences
    measured = parity(got, expected)
    assert measured["differing"] <= 0.01 and measured["max_difference"] <= step * (1 + 1e-4)
    assert measured["same_class"] == 1.0


def test_a_model_that_outputs_nan_fails_verification_and_writes_nothing(runs, tmp_path):
    """Every weight NaN: the logits are NaN, which no max-difference test sees (``max(0.0, nan)`` is 0.0);
    the export must fail, naming the file, and leave nothing behind."""
    deployable = load_deployable(runs["scff-mlp"])
    with torch.no_grad():
        for parameter in deployable.model.parameters():
            parameter.fill_(float("nan"))
    path = tmp_path / "nan.onnx"
    with pytest.raises(ExportError, match=f"^{re.escape(str(path))}: PyTorch's output is not finite"):
        export_onnx(deployable, path, "float")
    assert list(tmp_path.iterdir()) == []


def test_verification_refuses_non_finite_runtime_output():
    expected = torch.zeros(4, 10).numpy()
    for bad in (float("nan"), float("inf")):
        got = expected.copy()
        got[2, 3] = bad
        with pytest.raises(ExportError, match="^m.onnx: rt's output is not finite .1 of 40 logits"):
            judge("m.onnx", "rt", expected, got, 0.0)
    with pytest.raises(ExportError, match="not finite"):
        judge("m.onnx", "rt", expected, expected * float("nan"), 0.0)


def test_quantised_verification_allows_few_logits_one_step_off_and_no_class_change_without_a_tie():
    """Logits on a grid of step 0.5, 100 samples of 10 classes, class 3 two steps above the rest."""
    step = 0.5
    expected = torch.zeros(100, 10)
    expected[:, 3] = 2 * step
    expected = expected.numpy()
    got = expected.copy()
    got[:5, 5] += step                              # 5 of 1000 logits one step off: accepted
    figures = judge("m.onnx", "rt", expected, got, step)
    assert figures["differing_fraction"] == 0.005 and figures["max_abs_difference"] == step
    assert figures["same_class"] == "100/100"
    got = expected.copy()
    got[:, 5] += step                               # 10 % of the logits one step off: refused
    with pytest.raises(ExportError, match=r"off PyTorch's level in 10.0% of the logits"):
        judge("m.onnx", "rt", expected, got, step)
    got = expected + step / 1000                    # every logit on PyTorch's level, in a runtime's fixed point
    assert judge("m.onnx", "rt", expected, got, step)["differing_fraction"] == 0
    got = expected.copy()
    got[7, 5] += 2 * step                           # one logit two steps off: refused
    with pytest.raises(ExportError, match="differs from PyTorch by 1 .2.00 output steps"):
        judge("m.onnx", "rt", expected, got, step)
    got = expected.copy()
    got[7, 3] -= step                               # each logit one step off, but class 1 now wins
    got[7, 1] += step                               # where PyTorch had a two-step margin: refused
    with pytest.raises(ExportError, match="another class than PyTorch on 1 of 100 samples .1 of them without"):
        judge("m.onnx", "rt", expected, got, step)
    tied = expected.copy()
    tied[7, 1] = step                               # PyTorch's top two one step apart: a one-step change
    got = tied.copy()                               # may break that near-tie either way
    got[7, 1] += step
    assert judge("m.onnx", "rt", tied, got, step)["same_class"] == "99/100"
    tied[7:10, 1], got[7:10, 1] = step, 2 * step   # but not on more than 2 % of the samples
    with pytest.raises(ExportError, match="another class than PyTorch on 3 of 100 samples .0 of them without"):
        judge("m.onnx", "rt", tied, got, step)


def test_recurrent_verification_bounds_how_many_logits_move_and_how_far():
    """A quantised recurrent state carries a level that rounded the other way into every later frame: up to
    ``RECURRENT_DIFFERING`` of the logits may leave PyTorch's level by up to ``RECURRENT_STEPS``, or twice PyTorch's
    own spread (one sample at a time) where that is wider; without a reference the feed-forward bounds hold."""
    from fwdlearn.export.verify import RECURRENT_DIFFERING, RECURRENT_STEPS
    assert (RECURRENT_DIFFERING, RECURRENT_STEPS) == (0.05, 3)
    step = 0.5
    expected = torch.zeros(100, 10)
    expected[:, 3] = 8 * step
    expected = expected.numpy()
    steady = expected.copy()                        # PyTorch one at a time: no logit moves
    got = expected.copy()
    got[:40, 7] += step                             # the runtime: 4 % one step off
    got[50, 2] += 3 * step                          # and one three steps off
    with pytest.raises(ExportError, match="3.00 output steps"):
        judge("m.onnx", "rt", expected, got, step)                  # a feed-forward model may not do that
    figures = judge("m.onnx", "rt", expected, got, step, steady)
    assert figures["pytorch_one_at_a_time"] == {"differing_fraction": 0.0, "max_output_steps": 0}
    assert figures["differing_fraction"] == 0.041 and figures["max_output_steps"] == 3
    wider = got.copy()
    wider[60, 2] += 4 * step                        # four steps: refused ...
    with pytest.raises(ExportError, match="4.00 output steps"):
        judge("m.onnx", "rt", expected, wider, step, steady)
    spread = expected.copy()
    spread[:30, 5] += step                          # ... unless PyTorch itself moves 3 % of its logits
    spread[20, 6] -= 2 * step                       # and one by two steps
    figures = judge("m.onnx", "rt", expected, wider, step, spread)
    assert figures["allowed_fraction"] == 0.062 and figures["max_output_steps"] == 4
    wider = got.copy()
    wider[:, 8] += step                             # a wrong bias: every sample's logit 8 moves (14 % off)
    with pytest.raises(ExportError, match=r"off PyTorch's level in 14.1% of the logits \(at most 5.0%"):
        judge("m.onnx", "rt", expected, wider, step, steady)


def test_format_must_suit_the_model(runs, tmp_path):
    pytest.importorskip("brevitas")
    with pytest.raises(FwdlearnError, match="quantised: use qcdq or qonnx"):
        export_onnx(load_deployable(runs["scff-mlp-w4a4"]), tmp_path / "m.onnx", "float")
    with pytest.raises(FwdlearnError, match="for quantised models"):
        export_onnx(load_deployable(runs["scff-mlp"]), tmp_path / "m.onnx", "qcdq")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def hls4ml_ready():
    pytest.importorskip("hls4ml")
    pytest.importorskip("qonnx")
    import shutil
    if shutil.which("g++") is None:
        pytest.skip("the hls4ml check compiles with g++")


@pytest.mark.parametrize("kind", ["lac-mlp-w4a4", "scff-mlp-w4a4-hls", "scff-cnn-w4a4-hls"])
def test_hls4ml_cpp_model_predicts_the_classes_pytorch_does(runs, tmp_path, hls4ml_ready, kind):
    """The edge-accelerator check: the compiled C++ model on a held-out batch of real test images, within one step
    of the 8-bit output grid. SCFF graphs are traced with the layers hls4ml has: each standardisation a layer
    normalisation (a 1/sqrt table), the triangle's mean a linear map, the conv's reflect padding a layer added to
    hls4ml."""
    from fwdlearn.data import load_dataset
    from fwdlearn.export.hls4ml_check import check_hls4ml

    deployable = load_deployable(runs[kind])
    path = tmp_path / "model.onnx"
    report = export_onnx(deployable, path, "qonnx", hls4ml=True)
    step = deployable.model.output_step()
    assert report["verification"]["hls4ml"]["max_abs_difference"] <= step * (1 + 1e-4)
    ops = report["operators"]
    if kind.startswith("scff"):
        assert "LayerNormalization" in ops and "ReduceMean" not in ops
        assert report["verification"]["hls4ml"]["layer_norm"]["layers"] == 2
    if kind.startswith("scff-cnn"):
        assert "Pad" in ops and "AveragePool" not in ops
    held_out = load_dataset("digits").test.x[64:192]
    result = check_hls4ml(path, deployable, held_out, workdir=tmp_path / "hls")
    assert result["same_class"] == "128/128" and result["max_abs_difference"] <= step * (1 + 1e-4)
    assert (tmp_path / "hls" / "hls4ml_prj").is_dir()


def test_hls4ml_check_needs_the_graph_traced_for_it(runs, tmp_path, hls4ml_ready):
    """An SCFF QONNX file traced plainly (standardisation as reductions) is refused in one line; with a coarse
    1/sqrt table (hls4ml's default size and precision) the C++ model leaves the output grid: the check can fail."""
    from fwdlearn.export import hls4ml_check
    from fwdlearn.export.hls4ml_check import check_hls4ml

    deployable = load_deployable(runs["scff-mlp-w4a4-hls"])
    plain = tmp_path / "plain.onnx"
    export_onnx(deployable, plain, "qonnx")
    inputs = load_dataset("digits").test.x[:32]
    with pytest.raises(FwdlearnError, match="no layer for .*ReduceMean.*traced as reductions"):
        check_hls4ml(plain, deployable, inputs)
    coarse = tmp_path / "coarse.onnx"
    original = (hls4ml_check.LAYER_NORM_TABLE, hls4ml_check.LAYER_NORM_TABLE_PRECISION)
    try:
        hls4ml_check.LAYER_NORM_TABLE, hls4ml_check.LAYER_NORM_TABLE_PRECISION = 4096, "ufixed<8,5>"
        with pytest.raises(FwdlearnError, match="differs from PyTorch"):
            export_onnx(deployable, coarse, "qonnx", hls4ml=True)
    finally:
        hls4ml_check.LAYER_NORM_TABLE, hls4ml_check.LAYER_NORM_TABLE_PRECISION = original
    assert not coarse.exists()


def test_hls4ml_check_names_what_it_cannot_convert(runs, tmp_path, hls4ml_ready):
    covered = [name for name, rule in rules().items() if rule.hls4ml]
    assert {"lac-mlp", "scff-mlp", "scff-cnn"} <= set(covered) and "scff-rnn" not in covered
    rnn = load_deployable(runs["scff-rnn-w4a4"])
    with pytest.raises(FwdlearnError, match="covers .*scff-mlp.*; scff-rnn is not checked"):
        export_onnx(rnn, tmp_path / "rnn.onnx", "qonnx", hls4ml=True)
    conv = load_deployable(runs["lac-conv-w4a4"])
    with pytest.raises(FwdlearnError, match="lac-conv is not checked"):
        export_onnx(conv, tmp_path / "conv.onnx", "qonnx", hls4ml=True)
    lac = load_deployable(runs["lac-mlp-w4a4"])               # a rule it covers, but per-channel weight scales
    lac.config.quant.per_channel = True
    with pytest.raises(FwdlearnError, match="per-tensor"):
        export_onnx(lac, tmp_path / "lac.onnx", "qonnx", hls4ml=True)
    assert list(tmp_path.iterdir()) == []
