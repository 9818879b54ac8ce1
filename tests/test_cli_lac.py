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
bp_epochs = 1

[data]
dataset = "digits"

[downstream]
linear_epochs = 3
finetune_epochs = 1
batch_size = 64
"""


def _preset(tmp_path: Path, learner: str = "lac-mlp") -> Path:
    path = tmp_path / f"tiny-{learner}.toml"
    hidden, encoder = ("[32, 16, 32]", 2) if learner == "lac-mlp" else ("[4, 8, 8]", 3)
    path.write_text(TINY_LAC.format(learner=learner, hidden=hidden, encoder=encoder))
    return path


@pytest.mark.parametrize("learner", ["lac-mlp", "lac-conv"])
def test_lac_run_reports_both_protocols_beside_both_baselines(tmp_path, learner):
    out = tmp_path / "run"
    result = fwdlearn("train", learner, "--preset", str(_preset(tmp_path, learner)), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["learner"] == learner
    assert set(results["baselines"]) == {"no_pretraining", "bp_autoencoder"}
    for entry in [results["metrics"], *results["baselines"].values()]:
        assert 0.0 <= entry["linear_evaluation"]["test_accuracy"] <= 1.0
        assert 0.2 < entry["fine_tuning"]["test_accuracy"] <= 1.0          # ten classes: chance is 0.1
    assert results["metrics"]["linear_evaluation"]["test_accuracy"] > 0.2
    curve = results["reconstruction_error"]["LAC"]
    assert len(curve) == 3 and curve[-1] < curve[0]
    assert len(results["reconstruction_error"]["BP autoencoder"]) == 2
    assert results["timing"]["bp_train_seconds"] > 0
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == ["epoch_000.png", "epoch_001.png",
                                                                           "epoch_002.png"]
    for name in ("reconstruction_error.png", "downstream.png", "bp_reconstructions.png"):
        assert (out / name).stat().st_size > 1000
    assert "linear evaluation" in result.stdout and "BP autoencoder" in result.stdout


def test_killed_lac_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = ("train", "lac-mlp", "--preset", str(_preset(tmp_path)), "--no-progress", "--threads", "1",
            "--bp-epochs", "0", "--finetune-epochs", "0")
    whole = assert_resumed_run_equals_whole_run(args, tmp_path)
    again = fwdlearn("eval", str(whole / "checkpoint.pt"), "--out", str(tmp_path / "eval"), "--no-progress")
    assert again.returncode == 0, again.stderr
    first = json.loads((whole / "results.json").read_text())["metrics"]["linear_evaluation"]["test_accuracy"]
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]["test_accuracy"] == first


def test_scff_options_are_rejected_for_lac(tmp_path):
    assert_one_line_error(fwdlearn("train", "lac-mlp", "--preset", str(_preset(tmp_path)), "--bptt-epochs", "2",
                                   "--out", str(tmp_path / "x")), "--bptt-epochs", "lac-mlp")


def test_lac_options_are_rejected_for_scff(tmp_path):
    assert_one_line_error(fwdlearn("train", "scff-mlp", "--target", "flip", "--out", str(tmp_path / "x")),
                          "--target", "scff-mlp")


def test_lac_on_mnist_without_a_data_directory(tmp_path):
    assert_one_line_error(fwdlearn("train", "lac-mlp", "--dataset", "mnist", "--out", str(tmp_path / "x")),
                          "MNIST needs a data directory")
