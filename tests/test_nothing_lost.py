"""Nothing lost, nothing wrong, no traceback: read-outs bound to their network, divergence stopped with the last
finite checkpoint kept, storage failures in one line, no debris, no resume on other data.

Each case is the one a user met, re-run as written: one line, a non-zero exit, and no file left that was not
there before.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from test_cli import TINY_PRESET, fwdlearn
from test_cli_lac import tiny_lac
from test_data import tiny_mnist

from fwdlearn.cli import main

TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"   # torch.save, ENOSPC


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def one_line_error(capsys, status: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert status == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fwdlearn: error: "), captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tiny(tmp_path: Path, **replace: str) -> Path:
    text = TINY_PRESET
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / f"tiny-{len(list(tmp_path.glob('tiny-*.toml')))}.toml"
    path.write_text(text)
    return path


def train(preset: Path, out: Path, *extra: str) -> int:
    return main(["train", "scff-mlp", "--preset", str(preset), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two finished tiny digits runs, seeds 0 and 1."""
    root = tmp_path_factory.mktemp("runs")
    preset = root / "tiny.toml"
    preset.write_text(TINY_PRESET)
    for seed in (0, 1):
        assert train(preset, root / f"seed{seed}", "--seed", str(seed)) == 0
    return root / "seed0", root / "seed1"


# ----- 1. a read-out is bound to the network it was trained on --------------------------------------------------
def test_export_refuses_the_read_out_of_another_run(two_runs, capsys):
    pytest.importorskip("onnxruntime")
    a, b = two_runs
    before = files_under(a)
    status = main(["export", str(a / "checkpoint.pt"), "--readout", str(b / "readout.pt")])
    one_line_error(capsys, status, str(b / "readout.pt"), str(a / "checkpoint.pt"), "another network")
    assert files_under(a) == before
    assert main(["export", str(a / "checkpoint.pt"), "--out", str(a / "own.onnx")]) == 0   # its own read-out binds


def test_fresh_clears_what_belonged_to_the_old_run(two_runs, tmp_path):
    a, _ = two_runs
    run = tmp_path / "run"
    for name in ("checkpoint.pt", "readout.pt", "results.json", "probe_accuracy.png"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes((a / name).read_bytes())
    (run / "eval").mkdir()
    (run / "eval" / "readout.pt").write_bytes((a / "readout.pt").read_bytes())
    (run / "notes.txt").write_text("mine")
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY_PRESET)
    killed = fwdlearn("train", "scff-mlp", "--preset", str(preset), "--out", str(run), "--fresh", "--no-progress",
                      env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"})
    assert killed.returncode == 137, killed.stderr
    # the old run's read-out and results are gone: nothing can bind them to the new checkpoint
    assert files_under(run) == {"checkpoint.pt", "notes.txt"}


def test_a_lac_checkpoint_with_an_scff_read_out_is_one_line(two_runs, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    a, _ = two_runs
    preset = tmp_path / "lac.toml"
    preset.write_text(tiny_lac(finetune_epochs=0, bp_epochs=0))
    lac = tmp_path / "lac"
    assert main(["train", "lac-mlp", "--preset", str(preset), "--out", str(lac), "--no-progress"]) == 0
    capsys.readouterr()
    status = main(["export", str(lac / "checkpoint.pt"), "--readout", str(a / "readout.pt")])
    one_line_error(capsys, status, str(a / "readout.pt"), str(lac / "checkpoint.pt"))
    assert not (lac / "model.onnx").exists()


def test_a_read_out_written_before_binding_is_refused(two_runs, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    a, _ = two_runs
    old = torch.load(a / "readout.pt", weights_only=True)
    old["version"] = 1
    del old["encoder_digest"]
    torch.save(old, tmp_path / "old.pt")
    status = main(["export", str(a / "checkpoint.pt"), "--readout", str(tmp_path / "old.pt")])
    one_line_error(capsys, status, "old.pt", "fwdlearn eval")


# ----- 2. divergence -------------------------------------------------------------------------------------------
def test_divergence_in_the_first_epoch_stops_in_one_line_and_writes_nothing(tmp_path, capsys):
    preset = tiny(tmp_path, **{"lr = 3e-3": "lr = 1e30"})   # overflows float32 weights within the first epoch
    status = train(preset, tmp_path / "run")
    one_line_error(capsys, status, "layer1 diverged in epoch 1", "nothing was written")
    assert not (tmp_path / "run").exists()


def test_divergence_keeps_the_last_finite_checkpoint_and_never_marks_it_finished(tmp_path, capsys):
    preset = tiny(tmp_path, **{"lr = 2e-3": "lr = 1e30"})    # layer 2 diverges after layer 1 trained well
    run = tmp_path / "run"
    status = train(preset, run)
    one_line_error(capsys, status, "layer2 diverged in epoch 1", str(run / "checkpoint.pt"), "2/4 epochs")
    kept = torch.load(run / "checkpoint.pt", weights_only=True)
    assert kept["finished"] is False and kept["state"]["position"] == [1, 0]
    assert all(torch.isfinite(t).all() for t in kept["state"]["network"].values())
    assert files_under(run) == {"checkpoint.pt"}               # no results, no read-out of a diverged run
    status = train(preset, run)                                # the same command again: the same one line
    one_line_error(capsys, status, "layer2 diverged in epoch 1")


def test_lac_divergence_stops_in_one_line(tmp_path, capsys):
    preset = tmp_path / "lac.toml"
    preset.write_text(tiny_lac(finetune_epochs=0, bp_epochs=0).replace("hidden_lr = 1e-3", "hidden_lr = 1e30")
                      .replace("output_lr = 1e-2", "output_lr = 1e30"))
    status = main(["train", "lac-mlp", "--preset", str(preset), "--out", str(tmp_path / "lac"), "--no-progress"])
    one_line_error(capsys, status, "diverged in epoch 1")
    assert not (tmp_path / "lac" / "results.json").exists()


@pytest.mark.parametrize("bad", ["nan", "inf", "int"])
def test_the_python_api_refuses_inputs_no_rule_can_learn_from(bad):
    from conftest import tiny_learner
    from fwdlearn.errors import DataError

    learner, batch = tiny_learner("scff-mlp")
    x = batch.x[:8].clone()
    if bad == "int":
        x = (x * 10).long()
    else:
        x.view(8, -1)[5, 3] = float(bad)
    before = {k: v.clone() for k, v in learner.network.state_dict().items()}
    with pytest.raises(DataError, match="sample 5" if bad != "int" else "floating-point"):
        learner.train(x, show_progress=False)
    assert all(torch.equal(before[k], v) for k, v in learner.network.state_dict().items())


def test_results_files_are_strict_json(tmp_path):
    from fwdlearn.atomic import save_json

    path = save_json({"loss": float("nan"), "history": [{"x": float("inf")}, {"x": 1.5}]}, tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}")) == \
        {"loss": None, "history": [{"x": None}, {"x": 1.5}]}


# ----- 3. storage failures ------------------------------------------------------------------------------------
@pytest.fixture
def full_disk(monkeypatch):
    """``torch.save`` fails as it does on a full disk: part of the file written, then torch's opaque error."""
    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError(TORCH_FULL_DISK)
    monkeypatch.setattr(torch, "save", save)


def test_train_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, full_disk):
    status = train(tiny(tmp_path), tmp_path / "run")
    one_line_error(capsys, status, "cannot write", "checkpoint.pt", "full")
    assert not (tmp_path / "run").exists()                   # not even the folder made for it


def test_eval_on_a_full_disk_is_one_line(two_runs, tmp_path, capsys, monkeypatch):
    a, _ = two_runs

    def save(obj, path, *args, **kwargs):
        raise RuntimeError(TORCH_FULL_DISK)
    monkeypatch.setattr(torch, "save", save)
    status = main(["eval", str(a / "checkpoint.pt"), "--out", str(tmp_path / "eval"), "--no-progress"])
    one_line_error(capsys, status, "cannot write", "readout.pt")
    assert not [p for p in files_under(tmp_path / "eval") if p.endswith(".tmp")]


def test_a_real_full_disk_is_one_line(tmp_path, capsys):
    """On a 64 kB tmpfs where this machine lets us mount one (root): the real ENOSPC, not a simulation."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        status = train(tiny(tmp_path), mount / "run")
        one_line_error(capsys, status, "cannot write", str(mount / "run"))
        assert not [p for p in files_under(mount) if p.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_the_fsdd_feature_cache_on_a_full_disk_is_a_warning(tmp_path, monkeypatch):
    from test_fsdd import load, tiny_fsdd

    tiny_fsdd(tmp_path / "rec")

    def save(obj, path, *args, **kwargs):
        raise RuntimeError(TORCH_FULL_DISK)
    monkeypatch.setattr(torch, "save", save)
    with pytest.warns(RuntimeWarning, match="feature cache not written"):
        dataset = load(tmp_path / "rec", tmp_path / "cache")
    assert len(dataset.train) > 0
    assert not list((tmp_path / "cache").glob(".*"))


# ----- 4. debris of interrupted writes -------------------------------------------------------------------------
def test_a_rerun_removes_temporary_files_a_killed_write_left(two_runs, tmp_path):
    a, _ = two_runs
    run = tmp_path / "run"
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY_PRESET)
    run.mkdir()
    stale = [run / ".checkpoint.pt.k3j_x9q2.tmp", run / ".results.json.0aZ9abcd.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    (run / ".keep.tmp").write_text("not ours")             # not a name atomic_write makes: kept
    assert train(preset, run, "--epochs", "1") == 0
    assert not any(p.exists() for p in stale) and (run / ".keep.tmp").exists()


def test_out_that_is_a_file_is_refused_before_loading_data(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FWDLEARN_DATA_DIR", raising=False)
    (tmp_path / "afile").write_text("x")
    status = main(["train", "scff-mlp", "--dataset", "mnist", "--out", str(tmp_path / "afile" / "run")])
    one_line_error(capsys, status, "--out", "afile is a file")         # not "MNIST needs a data directory"


# ----- 5. resume on other data -----------------------------------------------------------------------------------
def test_a_run_does_not_resume_on_other_images_of_the_same_counts(tmp_path, capsys):
    tiny_mnist(tmp_path / "a", n_train=40, n_test=10, seed=0)
    tiny_mnist(tmp_path / "b", n_train=40, n_test=10, seed=1)
    preset = tiny(tmp_path, **{'dataset = "digits"': 'dataset = "mnist"', "batch_size = 50": "batch_size = 20"})
    args = ("train", "scff-mlp", "--preset", str(preset), "--out", str(tmp_path / "run"), "--no-progress")
    killed = fwdlearn(*args, "--data-dir", str(tmp_path / "a"), env={"FWDLEARN_HALT_AFTER_EPOCHS": "1"})
    assert killed.returncode == 137, killed.stderr
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    status = main([*args, "--data-dir", str(tmp_path / "b")])
    one_line_error(capsys, status, "other data", "content")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert main([*args, "--data-dir", str(tmp_path / "a")]) == 0             # the right data resumes
    assert "resuming" in capsys.readouterr().out
