"""``fwdlearn train lac-mlp | lac-conv`` end to end on the embedded digits: results, figures, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, assert_resumed_run_equals_whole_run, fwdlearn

TINY_LAC = """
name = "tiny-lac"
learner = "{learner}"
seed = 1
batch_size = 64
epochs = 2
hidden = {hidden}
encoder_layers = {encoder}
hidden_lr = 1e-3
output_lr = 1e-2

[data]
dataset = "digits"

[probe]
epochs = 3

[finetune]
epochs = {finetune_epochs}
batch_size = 64

[bp]
epochs = {bp_epochs}
batch_size = 64
"""

LAC_SHAPES = {"lac-mlp": ("[32, 16, 32]", 2), "lac-conv": ("[4, 8, 8]", 3)}


def tiny_lac(learner: str = "lac-mlp", finetune_epochs: int = 1, bp_epochs: int = 1) -> str:
    """A tiny LAC preset: two epochs of pretraining; fine-tuning and the BP autoencoder for the epochs given."""
    hidden, encoder = LAC_SHAPES[learner]
    return TINY_LAC.format(learner=learner, hidden=hidden, encoder=encoder, finetune_epochs=finetune_epochs,
                           bp_epochs=bp_epochs)


def _preset(tmp_path: Path, learner: str = "lac-mlp") -> Path:
    path = tmp_path / f"tiny-{learner}.toml"
    path.write_text(tiny_lac(learner))
    return path


@pytest.mark.parametrize("learner", ["lac-mlp", "lac-conv"])
def test_lac_run_reports_both_protocols_beside_both_baselines(tmp_path, learner):
    out = tmp_path / "run"
    result = fwdlearn("train", learner, "--preset", str(_preset(tmp_path, learner)), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["learner"] == learner
    assert set(results["baselines"]) == {"untrained", "bp_autoencoder", "raw_inputs"}
    encoders = [results["metrics"], results["baselines"]["untrained"], results["baselines"]["bp_autoencoder"]]
    for entry in encoders:                 # both protocols for LAC's encoder and for each baseline encoder
        assert 0.0 <= entry["test_accuracy"] <= 1.0                       # the shared linear probe
        assert 0.2 < entry["fine_tuning"]["test_accuracy"] <= 1.0          # ten classes: chance is 0.1
        assert entry["reconstruction_error"] > 0
    assert results["metrics"]["test_accuracy"] > 0.2
    # LAC's test reconstruction error after each epoch (history of the output group) falls below the
    # error of the same autoencoder untrained
    assert [(r["group"], r["epoch"]) for r in results["history"]] == [("hidden", 1), ("output", 1),
                                                                      ("hidden", 2), ("output", 2)]
    curve = [r["test_reconstruction_error"] for r in results["history"] if r["group"] == "output"]
    assert len(curve) == 2 and curve[-1] < results["baselines"]["untrained"]["reconstruction_error"]
    assert results["metrics"]["reconstruction_error"] == pytest.approx(curve[-1], abs=1e-6)
    bp_curve = [r["test_reconstruction_error"] for r in results["baseline_history"]["bp_autoencoder"]]
    assert len(bp_curve) == 1 and bp_curve[0] == pytest.approx(
        results["baselines"]["bp_autoencoder"]["reconstruction_error"], abs=1e-6)
    assert results["timing"]["bp_autoencoder_train_seconds"] > 0
    assert set(results["timing"]["seconds_per_epoch"]) == {"hidden", "output"}
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == ["epoch_000.png", "epoch_001.png",
                                                                           "epoch_002.png"]
    for name in ("learning_curves.png", "probe_accuracy.png", "test_curves.png"):
        assert (out / name).stat().st_size > 1000
    table = result.stdout[result.stdout.index("test accuracy"):]
    assert "linear probe" in table.splitlines()[0] and "fine tuning" in table.splitlines()[0]
    for row in ("LAC", "untrained network", "BP autoencoder", "raw inputs", "test reconstruction error"):
        assert row in table, row


def test_killed_lac_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = ("train", "lac-mlp", "--preset", str(_preset(tmp_path)), "--no-progress", "--threads", "1",
            "--bp-epochs", "0", "--finetune-epochs", "0", "--probe-epochs", "2")
    whole = assert_resumed_run_equals_whole_run(args, tmp_path)
    first = json.loads((whole / "results.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert first["config"]["probe"]["epochs"] == 2 and first["config"]["finetune"]["epochs"] == 0
    assert set(first["baselines"]) == {"untrained", "raw_inputs"} and "fine_tuning" not in first["metrics"]
    # the test reconstruction error LAC tracks survives the kill (its value before training too)
    assert [r.get("test_reconstruction_error") for r in resumed["history"]] == \
        [r.get("test_reconstruction_error") for r in first["history"]]
    assert resumed["metrics"]["test_accuracy"] == first["metrics"]["test_accuracy"]
    again = fwdlearn("eval", str(whole / "checkpoint.pt"), "--out", str(tmp_path / "eval"), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]["test_accuracy"] == \
        first["metrics"]["test_accuracy"]


@pytest.mark.parametrize("option", [["--bptt-epochs", "2"], ["--schedule", "simultaneous"]])
def test_scff_options_are_rejected_for_lac(tmp_path, option):
    assert_one_line_error(fwdlearn("train", "lac-mlp", "--preset", str(_preset(tmp_path)), *option,
                                   "--out", str(tmp_path / "x")), f"{option[0]} does not apply to lac-mlp")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option", [["--target", "flip"], ["--finetune-epochs", "2"]])
def test_lac_options_are_rejected_for_scff(tmp_path, option):
    assert_one_line_error(fwdlearn("train", "scff-mlp", *option, "--out", str(tmp_path / "x")),
                          f"{option[0]} does not apply to scff-mlp")


def test_lac_on_mnist_without_a_data_directory(tmp_path):
    assert_one_line_error(fwdlearn("train", "lac-mlp", "--dataset", "mnist", "--out", str(tmp_path / "x")),
                          "MNIST needs a data directory")
