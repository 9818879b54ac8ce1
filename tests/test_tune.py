"""``fwdlearn tune``: search spaces refused in one line, the test split sealed during a study, a study resumed
after kill -9 from its SQLite file, two workers sharing one study (embedded digits, a few seconds per trial)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fwdlearn.errors import ConfigError, DataError

optuna = pytest.importorskip("optuna")

TINY = """
name = "tiny"
learner = "scff-mlp"
batch_size = 50
[data]
dataset = "digits"
[[layers]]
width = 16
lr = 1e-2
theta_pos = 4.0
theta_neg = 6.0
epochs = 2
[probe]
epochs = 2
"""
SPACE = ('"layers.0.lr" = { low = 1e-3, high = 3e-2, log = true }\n"layers.0.theta_neg" = { choices = [4.0, 6.0] }\n'
         '"probe.epochs" = 1\n')


@pytest.fixture
def files(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "space.toml").write_text(SPACE)
    return tmp_path


@pytest.mark.parametrize("space, message", [
    ('"layers.0.lrate" = { low = 1e-3, high = 1e-2 }', "no value layers.0.lrate"),
    ('"layers.3.lr" = { low = 1e-3, high = 1e-2 }', "no layers.3"),
    ('"layers.0.lr" = { low = 1e-2, high = 1e-3 }', "low 0.01 is above high 0.001"),
    ('"layers.0.lr" = { low = 0.0, high = 1e-2, log = true }', "log range must lie above 0"),
    ('"layers.0.lr" = { low = 1e-3, high = 1e-2, spread = 2 }', "unknown field 'spread'"),
    ('"data.negatives" = { choices = [] }', "non-empty list"),
    ('"layers.0.lr" = [0.1]', "expected a table"),
    ('"probe.epochz" = 0', "no value probe.epochz"),
])
def test_a_bad_search_space_is_refused_in_one_line(files, space, message):
    from fwdlearn.presets import load_preset
    from fwdlearn.tune.space import read_space
    (files / "bad.toml").write_text(space + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        read_space(files / "bad.toml", load_preset(str(files / "tiny.toml")).to_dict())
    assert "\n" not in str(info.value)


def test_cli_refuses_a_bad_space_before_any_trial(files):
    (files / "bad.toml").write_text('"layers.0.lr" = { low = 1e-2, high = 1e-3 }\n')
    run = subprocess.run([sys.executable, "-m", "fwdlearn", "tune", str(files / "tiny.toml"), "--space",
                          str(files / "bad.toml"), "--trials", "2", "--out", str(files / "out")],
                         capture_output=True, text=True, check=False)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "above high" in run.stderr
    assert not (files / "out" / "study.db").exists()


def test_the_test_split_is_sealed_while_a_study_runs():
    from fwdlearn.data import load_dataset
    from fwdlearn.tune.validation import carve, sealed_test_split
    with sealed_test_split():
        dataset = load_dataset("digits")
        with pytest.raises(DataError, match="sealed while a study runs"):
            _ = dataset.test.x
        with pytest.raises(DataError, match="sealed"):
            len(dataset.test)
        carved = carve(dataset, 0.1, 0)                 # trials train and validate on the training split only
        assert len(carved.train) + len(carved.test) == len(dataset.train)
    assert len(load_dataset("digits").test) > 0        # readable again once the study is over


def test_a_trial_that_reads_the_test_split_fails(files, monkeypatch):
    from fwdlearn.tune import study as study_module
    original = study_module.Objective.__call__

    def peeking(self, trial):
        from fwdlearn.data import load_dataset
        load_dataset("digits").test.x             # what a careless objective might do
        return original(self, trial)

    monkeypatch.setattr(study_module.Objective, "__call__", peeking)
    with pytest.raises(Exception, match="no trial completed"):
        study_module.run_study(str(files / "tiny.toml"), files / "space.toml", 1, files / "out", final=False,
                               log=lambda *_: None)


def _states(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("select number, state from trials order by number").fetchall()


def test_a_killed_study_resumes_from_its_sqlite_file(files):
    command = [sys.executable, "-m", "fwdlearn", "tune", str(files / "tiny.toml"), "--space", str(files / "space.toml"),
               "--trials", "6", "--out", str(files / "out"), "--no-final", "--stale-after", "2",
               "--pruner", "none"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    db = files / "out" / "study.db"
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists():
            try:
                states = _states(db)
            except sqlite3.OperationalError:
                continue
            if sum(state == "COMPLETE" for _, state in states) >= 2 and states[-1][1] == "RUNNING":
                break
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _states(db)
    complete_before = [n for n, s in before if s == "COMPLETE"]
    assert 2 <= len(complete_before) < 6
    time.sleep(2.5)                                        # the killed trial's heartbeat goes stale
    subprocess.run(command, capture_output=True, text=True, check=True)
    after = _states(db)
    complete_after = [n for n, s in after if s == "COMPLETE"]
    assert len(complete_after) == 6
    assert set(complete_before) <= set(complete_after)     # nothing finished was run again
    killed = [n for n, s in before if s == "RUNNING"]
    assert all(dict(after)[n] == "FAIL" for n in killed)   # the interrupted trial was failed ...
    report = json.loads((files / "out" / "study.json").read_text())
    retried = {t["retry_of"] for t in report["trials"] if t["retry_of"] is not None}
    assert set(killed) <= retried                           # ... and run again with its settings


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_run_again(files):
    """The kill can land between Optuna creating a trial and its first heartbeat: that trial has no heartbeat
    row at all, and must still be failed (and enqueued again) once it is older than the grace period, while a
    trial whose worker still beats is left running."""
    from fwdlearn.tune.storage import fail_stale_trials, open_storage, storage_url
    (files / "out").mkdir()
    storage = open_storage(storage_url(None, files / "out"), stale_after=1)
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    silent, beating = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), study.ask()
    time.sleep(1.5)
    storage.record_heartbeat(beating._trial_id)
    fail_stale_trials(study)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[silent.number] == "FAIL" and states[beating.number] == "RUNNING"
    retry = [t for t in study.get_trials() if t.number not in (silent.number, beating.number)]
    assert len(retry) == 1 and retry[0].state.name == "WAITING" and retry[0].params == silent.params


def test_two_workers_share_one_study_without_repeating_a_trial(files):
    from fwdlearn.tune.study import run_study
    report = run_study(str(files / "tiny.toml"), files / "space.toml", 4, files / "out", workers=2, final=False,
                       prune="none", log=lambda *_: None)
    numbers = [t["number"] for t in report["trials"]]
    assert sorted(numbers) == [0, 1, 2, 3]
    assert all(t["state"] == "COMPLETE" for t in report["trials"])
    assert len({json.dumps(t["params"], sort_keys=True) for t in report["trials"]}) == 4
    assert (files / "out" / "best.toml").exists() and (files / "out" / "history.png").exists()
    trial = json.loads((files / "out" / "trials" / "0000" / "results.json").read_text())
    assert trial["config"]["probe"]["epochs"] == 1                  # the fixed value, in every trial ...
    import tomllib
    best = tomllib.loads((files / "out" / "best.toml").read_text())
    assert best["probe"]["epochs"] == 2                            # ... but not in the best settings
    assert best["layers"][0]["lr"] == report["best"]["params"]["layers.0.lr"]


@pytest.mark.parametrize("space", sorted((Path(__file__).parents[1] / "benchmarks" / "spaces").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_the_recorded_search_spaces_fit_their_presets(space):
    """Each space under benchmarks/spaces names values its preset has (a typo fails here, not after a study)."""
    from fwdlearn.presets import load_preset
    from fwdlearn.tune.space import read_space
    assert read_space(space, load_preset(space.stem).to_dict()).dimensions


def test_recorded_sweeps_stay_readable(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from read_sweep import summarise
    lines = [{"settings": {}, "val_accuracy": 88.0, "train_seconds": 10.0},
             {"settings": {"lr": 1e-4}, "val_accuracy": 91.0, "train_seconds": 12.0},
             {"settings": {"lr": 1e-4}, "val_accuracy": 89.0, "train_seconds": 14.0}]
    (tmp_path / "sweep.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    rows = summarise(tmp_path / "sweep.jsonl")
    assert [(r[0], r[2], r[3]) for r in rows] == [(90.0, 2, '{"lr": 0.0001}'), (88.0, 1, "{}")]
    assert rows[0][4] == 13.0
    assert summarise(Path(__file__).parents[1] / "benchmarks/results/fsdd-paper/sweep.jsonl")


def test_an_unusable_storage_is_refused_in_one_line(files):
    from fwdlearn.tune.study import run_study
    with pytest.raises(ConfigError, match="--storage nosuchdb://x: cannot open") as info:
        run_study(str(files / "tiny.toml"), files / "space.toml", 1, files / "out", storage="nosuchdb://x",
                  final=False, log=lambda *_: None)
    assert "\n" not in str(info.value)


def test_a_trial_below_the_median_is_pruned_after_its_warm_up_epochs(files):
    """Two wide trials set the median; a one-unit network scores far below it and stops after epoch 2 of 4."""
    from fwdlearn.tune.study import run_study, storage_url
    (files / "tiny.toml").write_text(TINY.replace("epochs = 2\n[probe]", "epochs = 4\n[probe]"))
    (files / "space.toml").write_text('"layers.0.width" = { choices = [1, 64] }\n"probe.epochs" = 1\n')
    (files / "out").mkdir()
    study = optuna.create_study(study_name="tiny", storage=storage_url(None, files / "out"), direction="maximize")
    for width in (64, 64, 1):
        study.enqueue_trial({"layers.0.width": width})
    lines = []
    report = run_study(str(files / "tiny.toml"), files / "space.toml", 3, files / "out", final=False, log=lines.append)
    states = [t["state"] for t in report["trials"]]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    wide, narrow = report["trials"][0]["epoch_scores"], report["trials"][2]["epoch_scores"]
    assert sorted(wide) == [1, 2, 3, 4] and sorted(narrow) == [1, 2]     # one score per epoch; stopped at 2
    assert max(narrow.values()) < min(wide.values())
    assert wide[4] > 0.8                                                  # the read-out sees what was learned
    checkpoint = files / "out" / "trials" / "0002" / "checkpoint.pt"
    from fwdlearn.checkpoint import load_checkpoint
    assert not load_checkpoint(checkpoint)["finished"]                    # its training really stopped
    assert any("trial 2: pruned after 2 epochs" in line for line in lines), lines


def test_the_pruner_is_checked_before_a_study_starts(files):
    from fwdlearn.tune.study import run_study
    with pytest.raises(ConfigError, match="--pruner must be one of median, none"):
        run_study(str(files / "tiny.toml"), files / "space.toml", 2, files / "out", prune="hyperband")
