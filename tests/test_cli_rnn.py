"""``fwdlearn train scff-rnn`` end to end on the embedded synthetic sequences: results, baselines, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, assert_resumed_run_equals_whole_run, fwdlearn
from test_fsdd import needs_audio, tiny_fsdd, write_wav

TINY_RNN = """
name = "tiny-rnn"
learner = "scff-rnn"
seed = 2
batch_size = 32

[data]
dataset = "sequences"

[[layers]]
width = 24
lr = 1e-3
theta_pos = 0.0
theta_neg = 1.0
penalty = 7.5e-3
lr_decay = 0.9
epochs = 2
activation = "relu"

[probe]
epochs = 2
batch_size = 16
dropout = 0.0
layers = [1]

[bptt]
epochs = 1
batch_size = 32
"""


@pytest.fixture
def tiny_rnn(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-rnn.toml"
    path.write_text(TINY_RNN)
    return path


def test_rnn_run_reports_scff_beside_untrained_and_bptt(tmp_path, tiny_rnn):
    out = tmp_path / "run"
    result = fwdlearn("train", "scff-rnn", "--preset", str(tiny_rnn), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["learner"] == "scff-rnn" and results["dataset"] == "sequences"
    assert set(results["baselines"]) == {"untrained", "bptt"}          # no raw-pixel probe for sequences
    assert results["metrics"]["num_features"] == 2 * 24                  # final states of both directions
    assert results["timing"]["bptt_train_seconds"] > 0
    assert [(r["group"], r["epoch"]) for r in results["history"]] == [("forward", 1), ("backward", 1),
                                                                      ("forward", 2), ("backward", 2)]
    assert set(results["timing"]["seconds_per_epoch"]) == {"forward", "backward"}
    assert [r["epoch"] for r in results["baseline_history"]["bptt"]] == [1]
    assert "BPTT" in result.stdout and "untrained network" in result.stdout
    again = fwdlearn("eval", str(out / "checkpoint.pt"), "--out", str(tmp_path / "eval"), "--no-progress")
    assert again.returncode == 0, again.stderr
    reloaded = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert reloaded["metrics"]["test_accuracy"] == results["metrics"]["test_accuracy"]


def test_killed_rnn_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_rnn):
    args = ("train", "scff-rnn", "--preset", str(tiny_rnn), "--no-progress", "--threads", "1", "--bptt-epochs", "0",
            "--batching", "by-length")
    whole = assert_resumed_run_equals_whole_run(args, tmp_path)
    results = json.loads((whole / "results.json").read_text())
    assert results["config"]["data"]["batching"] == "by-length"
    assert set(results["baselines"]) == {"untrained"}                    # --bptt-epochs 0 skips BPTT


@needs_audio
def test_resume_refuses_other_data(tmp_path, tiny_rnn):
    """A checkpoint remembers what it was trained on: the same recordings resume (the second load reads
    the feature cache the first one wrote), but after they change (here one is added) resuming is
    refused in one line naming what differs."""
    rec = tmp_path / "rec"
    tiny_fsdd(rec, speakers=("alice",), digits=(1, 2), indices=(0, 5, 6))
    args = ("train", "scff-rnn", "--preset", str(tiny_rnn), "--dataset", "fsdd", "--data-dir", str(rec),
            "--out", str(tmp_path / "run"), "--no-progress", "--bptt-epochs", "0", "--epochs", "3")
    env = {"FWDLEARN_CACHE_DIR": str(tmp_path / "cache"), "FWDLEARN_HALT_AFTER_EPOCHS": "1"}
    assert fwdlearn(*args, env=env).returncode == 137                  # stopped after epoch 1 of 3
    unchanged = fwdlearn(*args, env=env)                                 # same data: resumes, stops after 2
    assert "resuming" in unchanged.stdout and unchanged.returncode == 137, unchanged.stderr
    write_wav(rec / "2_alice_7.wav", 2500)
    assert_one_line_error(fwdlearn(*args, env=env), "trained on other data", "train")


def test_learner_and_preset_must_agree(tmp_path, tiny_rnn):
    assert_one_line_error(fwdlearn("train", "scff-mlp", "--preset", str(tiny_rnn), "--out", str(tmp_path)),
                          "scff-rnn")
    assert_one_line_error(fwdlearn("train", "scff-rnn", "--dataset", "digits", "--out", str(tmp_path)),
                          "does not suit")


def test_fsdd_without_a_data_directory(tmp_path):
    assert_one_line_error(fwdlearn("train", "scff-rnn", "--dataset", "fsdd", "--out", str(tmp_path)), "--data-dir")
