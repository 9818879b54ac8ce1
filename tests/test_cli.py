"""The ``fwdlearn`` command end to end on the embedded digits: train, results, eval, resume, bad input."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY_PRESET = """
name = "tiny"
description = "two small layers, a few epochs: for tests"
learner = "scff-mlp"
seed = 3
batch_size = 50

[data]
dataset = "digits"
translate = 1

[[layers]]
width = 48
lr = 3e-3
theta_pos = 4.0
theta_neg = 6.0
penalty = 1e-4
weight_decay = 1e-5
lr_decay = 0.9
epochs = 2

[[layers]]
width = 32
lr = 2e-3
theta_pos = 1.0
theta_neg = 1.0
lr_decay = 0.8
epochs = 2

[probe]
epochs = 3
"""


def fwdlearn(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("FWDLEARN_DATA_DIR", "FWDLEARN_HALT_AFTER_EPOCHS")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fwdlearn", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=300)


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PRESET)
    return path


def assert_resumed_run_equals_whole_run(args: tuple[str, ...], tmp_path: Path) -> Path:
    """Run ``args`` whole, and again killed after one epoch then resumed; the networks must be equal.

    Returns the uninterrupted run's directory.
    """
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert fwdlearn(*args, "--out", str(whole)).returncode == 0
    assert fwdlearn(*args, "--out", str(resumed), env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"}).returncode == 137
    result = fwdlearn(*args, "--out", str(resumed))
    assert result.returncode == 0 and "resuming" in result.stdout, result.stderr
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["state"]["network"]
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)["state"]["network"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return whole


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fwdlearn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_explains_commands():
    result = fwdlearn("--help")
    assert result.returncode == 0
    for word in ("train", "eval", "presets", "--data-dir"):
        assert word in result.stdout
    train_help = fwdlearn("train", "--help").stdout
    from fwdlearn.registry import rules
    for name, rule in rules().items():                  # the learners offered are the registered rules
        assert name in train_help and rule.presets[None] in train_help, name


def test_presets_lists_shipped_presets():
    result = fwdlearn("presets")
    assert result.returncode == 0 and "digits" in result.stdout and "mnist-paper" in result.stdout


def test_train_writes_results_checkpoint_and_plots(tmp_path, tiny_preset):
    out = tmp_path / "run"
    result = fwdlearn("train", "scff-mlp", "--preset", str(tiny_preset), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["learner"] == "scff-mlp" and results["dataset"] == "digits" and results["seeds"] == [3]
    assert set(results["metrics"]["per_layer"]) == {"layer1", "layer2"}
    assert 0.0 <= results["metrics"]["test_accuracy"] <= 1.0
    assert {"untrained", "raw_inputs"} <= set(results["baselines"])
    assert set(results["timing"]["seconds_per_epoch"]) == {"layer1", "layer2"}
    assert [(r["group"], r["epoch"]) for r in results["history"]] == [("layer1", 1), ("layer1", 2),
                                                                      ("layer2", 1), ("layer2", 2)]
    assert all({"loss", "goodness_pos", "goodness_neg", "seconds"} <= set(r) for r in results["history"])
    for name in ("checkpoint.pt", "readout.pt", "learning_curves.png", "probe_accuracy.png"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob("*.tmp"))
    table = result.stdout[result.stdout.index("test accuracy"):]
    assert "linear probe" in table.splitlines()[0]
    for row in ("SCFF, layers 1+2", "SCFF, layer 1 alone", "SCFF, layer 2 alone", "untrained network, layers 1+2",
                "raw inputs"):
        assert row in table, row

    again = fwdlearn("eval", str(out / "checkpoint.pt"), "--out", str(tmp_path / "eval"), "--no-progress")
    assert again.returncode == 0, again.stderr
    reloaded = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert reloaded["metrics"]["test_accuracy"] == results["metrics"]["test_accuracy"]
    assert reloaded["baselines"]["untrained"]["test_accuracy"] == results["baselines"]["untrained"]["test_accuracy"]

    # a checkpoint of the previous layout (version 1) is refused in one line that names its version
    old = torch.load(out / "checkpoint.pt", weights_only=True)
    old["version"] = 1
    torch.save(old, tmp_path / "v1.pt")
    assert_one_line_error(fwdlearn("eval", str(tmp_path / "v1.pt")), "version 1", "--fresh")


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_preset):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    args = ("train", "scff-mlp", "--preset", str(tiny_preset), "--no-progress", "--threads", "1")
    assert fwdlearn(*args, "--out", str(whole)).returncode == 0

    killed = fwdlearn(*args, "--out", str(resumed), env={"FWDLEARN_HALT_AFTER_EPOCHS": "3"})
    assert killed.returncode == 137                       # hard exit after 3 of 4 epochs, like a kill
    assert not (resumed / "results.json").exists()
    partial = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert partial["finished"] is False and partial["state"]["position"] == [1, 1]   # layer 2 (stage 1), 1 epoch done
    assert partial["version"] == 2 and set(partial["state"]["groups"]) == {"layer1", "layer2"}

    result = fwdlearn(*args, "--out", str(resumed))
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    final = torch.load(resumed / "checkpoint.pt", weights_only=True)
    reference = torch.load(whole / "checkpoint.pt", weights_only=True)
    for key, value in reference["state"]["network"].items():
        assert torch.equal(final["state"]["network"][key], value), key
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((resumed / "results.json").read_text())
    for key in ("test_accuracy", "train_accuracy"):
        assert a["metrics"][key] == b["metrics"][key]
        assert a["baselines"]["untrained"][key] == b["baselines"]["untrained"][key]
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert [(r["group"], r["epoch"]) for r in a["history"]] == [(r["group"], r["epoch"]) for r in b["history"]]


def test_resume_refuses_a_different_configuration(tmp_path, tiny_preset):
    out = tmp_path / "run"
    args = ("train", "scff-mlp", "--preset", str(tiny_preset), "--out", str(out), "--no-progress")
    assert fwdlearn(*args, env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"}).returncode == 137
    assert_one_line_error(fwdlearn(*args, "--seed", "9"), "different configuration")
    assert fwdlearn(*args, "--seed", "9", "--fresh").returncode == 0


def test_a_run_halted_on_one_backend_resumes_on_the_other(tmp_path, tiny_preset):
    """``--backend`` changes how gradients are computed, not what is trained: the checkpoint is accepted."""
    out = tmp_path / "run"
    args = ("train", "scff-mlp", "--preset", str(tiny_preset), "--out", str(out), "--no-progress")
    assert fwdlearn(*args, "--backend", "torch", env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"}).returncode == 137
    result = fwdlearn(*args, "--backend", "fused")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    assert json.loads((out / "results.json").read_text())["config"]["backend"] == "fused"


def test_digits_default_runs_with_short_overrides(tmp_path):
    out = tmp_path / "digits"
    result = fwdlearn("train", "scff-mlp", "--epochs", "1", "--probe-epochs", "2", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "results.json").read_text())["experiment"] == "digits"


ZERO_OVERRIDES = [("scff-mlp", "--seed", "seed"), ("scff-mlp", "--bp-epochs", "bp.epochs"),
                  ("scff-mlp", "--weight-bits", "quant.weight_bits"), ("scff-mlp", "--act-bits", "quant.act_bits"),
                  ("scff-rnn", "--bptt-epochs", "bptt.epochs"), ("lac-mlp", "--bp-epochs", "bp.epochs"),
                  ("lac-mlp", "--finetune-epochs", "finetune.epochs"), ("lac-mlp", "--seed", "seed")]


@pytest.mark.parametrize("learner, option, path", ZERO_OVERRIDES)
def test_an_option_set_to_zero_overrides_the_preset(learner, option, path):
    """``--bptt-epochs 0`` skips the baseline, ``--seed 0`` is seed 0: a zero is a value, not an absent option."""
    from fwdlearn.cli import _apply_overrides, build_parser
    from fwdlearn.presets import load_preset
    from fwdlearn.registry import default_preset

    *parents, name = path.split(".")
    args = build_parser().parse_args(["train", learner, option, "0"])
    args.preset = default_preset(learner, None)
    config = load_preset(args.preset)
    section = config
    for part in parents:
        section = getattr(section, part)
    setattr(section, name, 3)                                  # the preset's value, before the option
    config = _apply_overrides(config, args)
    for part in parents:
        config = getattr(config, part)
    assert getattr(config, name) == 0


def _rule_names() -> list[str]:
    from fwdlearn.registry import rules
    return list(rules())


@pytest.mark.parametrize("learner", _rule_names())
def test_probe_epochs_sets_the_probe_of_every_rule(learner):
    from fwdlearn.cli import _apply_overrides, build_parser
    from fwdlearn.presets import load_preset
    from fwdlearn.registry import default_preset

    args = build_parser().parse_args(["train", learner, "--probe-epochs", "7"])
    args.preset = default_preset(learner, None)
    config = load_preset(args.preset)
    assert config.probe.epochs != 7
    assert _apply_overrides(config, args).probe.epochs == 7


def test_mnist_without_a_data_directory(tmp_path):
    assert_one_line_error(fwdlearn("train", "scff-mlp", "--preset", "mnist-paper", "--out", str(tmp_path)),
                          "--data-dir")


def test_missing_data_directory(tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line_error(fwdlearn("train", "scff-mlp", "--preset", "mnist-paper", "--data-dir", str(missing),
                                   "--out", str(tmp_path / "o")), str(missing), "does not exist")


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    path.write_bytes(gzip.compress(struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload))


def test_truncated_mnist_file(tmp_path):
    data = tmp_path / "mnist"
    data.mkdir()
    _write_idx(data / "train-images-idx3-ubyte.gz", 2051, (10, 28, 28), bytes(28 * 28 * 9))   # one image short
    _write_idx(data / "train-labels-idx1-ubyte.gz", 2049, (10,), bytes(10))
    _write_idx(data / "t10k-images-idx3-ubyte.gz", 2051, (2, 28, 28), bytes(28 * 28 * 2))
    _write_idx(data / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes(2))
    out = tmp_path / "out"
    result = fwdlearn("train", "scff-mlp", "--preset", "mnist-paper", "--data-dir", str(tmp_path), "--out", str(out))
    assert_one_line_error(result, "train-images-idx3-ubyte.gz", "truncated")
    assert not out.exists() or not any(out.iterdir())


def test_invalid_preset_value(tmp_path, tiny_preset):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_preset.read_text().replace("lr_decay = 0.9", "lr_decay = 1.5"))
    assert_one_line_error(fwdlearn("train", "scff-mlp", "--preset", str(bad), "--out", str(tmp_path / "o")),
                          "bad.toml", "layers[0].lr_decay")


def test_invalid_command_line_value(tmp_path):
    assert_one_line_error(fwdlearn("train", "scff-mlp", "--epochs", "-3", "--out", str(tmp_path)), "--epochs")
    result = fwdlearn("train", "scff-mlp", "--threads", "0")
    assert result.returncode == 2 and "--threads" in result.stderr


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint at all")
    assert_one_line_error(fwdlearn("eval", str(path)), str(path))
    assert_one_line_error(fwdlearn("eval", str(tmp_path / "absent.pt")), "not found")
