"""A real ``kill -9`` at chosen points of a training run, then the same command again.

The killed process runs a small helper script: it imports fwdlearn, installs one kill point by
monkeypatching and calls ``fwdlearn.cli.main``; the kill is ``os.kill(os.getpid(), SIGKILL)``, so
nothing in the process can clean up, exactly as with a kill from outside. Kill points: in the middle of
an epoch (after N updates of epoch K: the rule's own ``train_batch``, or the BP-autoencoder baseline's
or fine-tuning's, which run after LAC's training), and inside ``atomic_write`` (the temporary file half
written, the rename not done). The same command run again must give what an uninterrupted run with the
same seed gives (network weights bit for bit, probe and fine-tuning accuracies, history, the same files,
LAC's reconstruction grids included) and leave no ``.<name>.*.tmp`` file behind.

Only the killed run needs a process of its own; the uninterrupted runs and the reruns call the same
``main`` in this process, which saves two interpreter start-ups per case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numba
import pytest
import torch
from conftest import _dataset, tiny_config
from test_cli import TINY_PRESET
from test_cli_lac import tiny_lac

from fwdlearn.cli import main
from fwdlearn.rules.lac import LACLearner

KILLER = '''
"""Run ``fwdlearn.cli.main(sys.argv[2:])``, killed by SIGKILL at the point ``sys.argv[1]`` (JSON) names."""
import importlib, json, os, signal, sys
from pathlib import Path


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_update(cls, epoch, update):
    """Right after the ``update``-th ``train_batch`` of epoch ``epoch`` (1-based, over the learner's schedule)."""
    original, done = cls.train_batch, {}

    def train_batch(self, batch, active):
        stats = original(self, batch, active)
        key = (id(self), self.completed_epochs + 1)
        done[key] = done.get(key, 0) + 1
        if key[1] == epoch and done[key] == update:
            die()
        return stats

    cls.train_batch = train_batch


def kill_in_write(name, occurrence):
    """The ``occurrence``-th time ``atomic_write`` renames a temporary file to ``name``: cut the temporary file
    to half its length (a write under way), then die before the rename."""
    import fwdlearn.atomic
    replace, seen = fwdlearn.atomic.os.replace, []

    def killing_replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen.append(dst)
            if len(seen) == occurrence:
                os.truncate(src, os.path.getsize(src) // 2)
                die()
        return replace(src, dst, *args, **kwargs)

    fwdlearn.atomic.os.replace = killing_replace


spec, argv = json.loads(sys.argv[1]), sys.argv[2:]
if "write" in spec:
    kill_in_write(spec["write"], spec["occurrence"])
elif ":" in spec["updates_of"]:
    module, name = spec["updates_of"].split(":")
    kill_after_update(getattr(importlib.import_module(module), name), spec["epoch"], spec["update"])
else:
    from fwdlearn.registry import get_rule
    kill_after_update(get_rule(spec["updates_of"]).learner, spec["epoch"], spec["update"])
from fwdlearn.cli import main
sys.exit(main(argv))
'''

COMMON = ("--probe-epochs", "2", "--no-progress", "--threads", "1")
BP_AUTOENCODER = "fwdlearn.baselines.bp_autoencoder:BPAutoencoderLearner"
FINE_TUNING = "fwdlearn.eval.finetune:FinetuneLearner"


def quick_scff_preset() -> str:
    """``test_cli``'s tiny SCFF preset (64-48-32) in batches of 250: a quantised update costs about the same
    at any batch size here, so fewer, larger batches keep the quantised case quick."""
    assert "batch_size = 50\n" in TINY_PRESET
    return TINY_PRESET.replace("batch_size = 50\n", "batch_size = 250\n")


# Preset files the module writes, by the placeholder that stands for their path in a command.
PRESETS = {"<tiny-lac.toml>": lambda: tiny_lac(finetune_epochs=2, bp_epochs=2), "<tiny-scff.toml>": quick_scff_preset}
SIMULTANEOUS = ("scff-mlp", "--epochs", "2", "--schedule", "simultaneous")          # the embedded default
QUANTISED = ("scff-mlp", "--preset", "<tiny-scff.toml>", "--epochs", "1", "--weight-bits", "4", "--act-bits", "4")
LAC = ("lac-mlp", "--preset", "<tiny-lac.toml>")   # 2 epochs of LAC, then 2 of the BP autoencoder, 2 of fine-tuning


@dataclass(frozen=True)
class Kill:
    """Where the first process dies, and what its checkpoint then holds."""

    name: str
    args: tuple[str, ...]
    spec: dict
    position: list[int]             # [stage, epoch] in the checkpoint left behind
    finished: bool = False          # training was over (the kill came in a baseline or the evaluation)
    leaves_temporary: bool = False  # killed inside a write


KILLS = [
    Kill("scff-simultaneous-mid-epoch", SIMULTANEOUS, {"updates_of": "scff-mlp", "epoch": 2, "update": 10}, [0, 1]),
    Kill("scff-simultaneous-in-last-checkpoint-write", SIMULTANEOUS, {"write": "checkpoint.pt", "occurrence": 2},
         [0, 1], leaves_temporary=True),
    # sequential: layer 1 is stage 1 (one epoch), the kill comes in stage 2, layer 2's epoch
    Kill("quantised-mid-epoch-of-layer-2", QUANTISED, {"updates_of": "scff-mlp", "epoch": 2, "update": 3}, [1, 0]),
    # after LAC's epoch 1 was saved, before its reconstruction grid was renamed into place; epoch 2 retrained
    Kill("lac-in-reconstruction-grid-write", LAC, {"write": "epoch_001.png", "occurrence": 1}, [0, 1],
         leaves_temporary=True),
    Kill("lac-in-bp-autoencoder-baseline", LAC, {"updates_of": BP_AUTOENCODER, "epoch": 2, "update": 3}, [1, 0],
         finished=True),
    # after the probe wrote readout.pt, in the first fine-tuning (LAC's encoder)
    Kill("lac-in-fine-tuning", LAC, {"updates_of": FINE_TUNING, "epoch": 1, "update": 3}, [1, 0], finished=True),
]


@dataclass(frozen=True)
class Workspace:
    folder: Path
    killer: Path

    def command(self, args: tuple[str, ...], out: Path) -> list[str]:
        """``train`` with ``args`` (a preset placeholder replaced by its file), ``COMMON`` and ``--out``."""
        return ["train", *(str(self.folder / a.strip("<>")) if a in PRESETS else a for a in args), *COMMON,
                "--out", str(out)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    folder = tmp_path_factory.mktemp("kill")
    (folder / "killer.py").write_text(KILLER)
    for placeholder, text in PRESETS.items():
        (folder / placeholder.strip("<>")).write_text(text())
    return Workspace(folder, folder / "killer.py")


def run_here(command: list[str]) -> None:
    """``fwdlearn <command>`` in this process, as the command line would run it (thread counts restored).

    The probe's Numba kernel runs on one thread too (``--threads`` sets PyTorch's only): its parallel
    loops spin-wait, and on a busy two-core machine they take up to a hundred times longer."""
    threads, probe_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("FWDLEARN_HALT_AFTER_EPOCHS", raising=False)
            assert main(command) == 0
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(probe_threads)


@pytest.fixture(scope="module")
def uninterrupted(workspace):
    """The run folder of ``args`` trained straight through (each configuration once per module)."""
    runs: dict[tuple[str, ...], Path] = {}

    def run(args: tuple[str, ...]) -> Path:
        if args not in runs:
            out = workspace.folder / f"uninterrupted-{len(runs)}"
            run_here(workspace.command(args, out))
            runs[args] = out
        return runs[args]

    return run


def kill_run(workspace: Workspace, kill: Kill, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FWDLEARN_DATA_DIR", "FWDLEARN_HALT_AFTER_EPOCHS")}
    env["NUMBA_NUM_THREADS"] = "1"     # as in ``run_here``
    return subprocess.run([sys.executable, str(workspace.killer), json.dumps(kill.spec),
                           *workspace.command(kill.args, out)], capture_output=True, text=True, env=env,
                          cwd=workspace.folder, timeout=300)


def temporaries(folder: Path) -> list[Path]:
    """Temporary files ``atomic_write`` leaves when killed while writing (``.<name>.<random>.tmp``)."""
    return sorted(folder.rglob(".*.tmp"))


def without_timings(value):
    """``value`` without wall times (keys naming seconds): everything else must come out the same."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_run(resumed: Path, whole: Path) -> None:
    final = torch.load(resumed / "checkpoint.pt", weights_only=True)
    reference = torch.load(whole / "checkpoint.pt", weights_only=True)
    assert final["finished"] and final["state"]["position"] == reference["state"]["position"]
    a, b = reference["state"]["network"], final["state"]["network"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    expected = json.loads((whole / "results.json").read_text())
    found = json.loads((resumed / "results.json").read_text())
    for key in ("metrics", "baselines", "history", "baseline_history", "encoder_digest"):
        assert without_timings(found.get(key)) == without_timings(expected.get(key)), key
    assert files(resumed) == files(whole)      # every plot, and LAC's reconstruction grid of every epoch


@pytest.mark.parametrize("kill", KILLS, ids=[k.name for k in KILLS])
def test_a_run_killed_here_resumes_to_the_uninterrupted_result(kill, workspace, uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    killed = kill_run(workspace, kill, out)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "results.json").exists()
    left = torch.load(out / "checkpoint.pt", weights_only=True)     # the kill came where it was meant to
    assert left["state"]["position"] == kill.position and left["finished"] == kill.finished
    assert bool(temporaries(out)) == kill.leaves_temporary, temporaries(out)

    capsys.readouterr()
    run_here(workspace.command(kill.args, out))                     # the same command again
    assert "resuming from" in capsys.readouterr().out
    assert not temporaries(out), f"stale temporary files after a successful rerun: {temporaries(out)}"
    assert_same_run(out, uninterrupted(kill.args))


def test_a_resumed_lac_learner_writes_the_grid_of_the_epoch_it_resumes_after(tmp_path):
    """A kill after epoch 1's checkpoint but before its reconstruction grid was renamed into place: resuming
    (``epoch_artifacts(first=True)`` with one epoch done) writes ``epoch_001.png``, not the initial grid."""
    config = tiny_config("lac-mlp")
    config.epochs = 2
    dataset = _dataset(config.data.dataset)

    class Stop(Exception):
        pass

    def stop(learner):
        raise Stop

    first = LACLearner(config, dataset.sample_shape)
    first.monitor(dataset.test.x)
    with pytest.raises(Stop):
        first.train(dataset.train.x[:32], on_epoch_end=stop, show_progress=False)
    resumed = LACLearner(config, dataset.sample_shape)
    resumed.load_state_dict(first.state_dict())
    resumed.epoch_artifacts(tmp_path, dataset, first=True)
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["epoch_001.png"]
