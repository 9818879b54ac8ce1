"""torch.distributed on 2 gloo processes (CPU): data parallel equals one process with the whole batch for every
rule whose objective the split keeps (SCFF MLP/CNN/RNN, FF, LAC, the BP baselines); the layer pipeline equals the
one-process simultaneous schedule; a process that dies ends the job with one line and a checkpoint that resumes.

One spawn of 2 processes trains every case (``_train_cases``); each test compares one case with a one-process
learner trained on the same samples here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import tiny_config
from fwdlearn.baselines.end_to_end import EndToEndLearner
from fwdlearn.checkpoint import load_checkpoint
from fwdlearn.config import BPTTConfig
from fwdlearn.data import load_dataset
from fwdlearn.registry import get_rule, rule_names

WORLD = 2
SAMPLES = 40          # 5 batches of 8 (4 rows per process), one epoch
BATCH = 8
# Rules whose objective couples the samples of a batch in a way rows per process do not reproduce: contrastive
# self-supervised losses take their negatives from the process's own rows (as DDP without a gather does).
COUPLED = {name for name in rule_names() if name.startswith("ssl-")}
# LAC: the biases before a batch norm and the batch norms' shifts get gradients that are zero up to rounding (the
# norm removes any constant), so RMSprop's first step follows the sign of rounding noise in any two implementations
# (the one-process closed form and autograd differ there alike). One batch, those tensors left out, the rest exact.
NOISE_DRIVEN = ("transform.bias", "norm.bias")


def _config(name: str, **changes):
    config = tiny_config(name)
    config.batch_size = BATCH
    for layer in getattr(config, "layers", []):
        layer.epochs = min(layer.epochs, 1) or 1
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def _learner_and_data(case: str):
    """A fresh learner of ``case`` (a rule name, ``bp``, or ``pipeline``/``pipeline-alg1``) and its samples."""
    if case == "bp":
        dataset = load_dataset("digits")
        network = get_rule("scff-mlp").learner.build_network(_config("scff-mlp"), dataset.num_features)

        def features(batch):
            return torch.cat(network(batch.x), 1)
        width = sum(layer.linear.out_features for layer in network.layers)
        learner = EndToEndLearner(network, features, width, dataset.num_classes,
                                  BPTTConfig(epochs=1, batch_size=BATCH, lr=1e-2, grad_clip=1.0))
        return learner, dataset.train.x[:SAMPLES], None, dataset.train.y[:SAMPLES]
    name, changes = case, {}
    if case.startswith("pipeline"):
        name, changes = "scff-mlp", {"schedule": "simultaneous"}
    config = _config(name, **changes)
    if case == "pipeline-alg1":
        config.layers[1].algorithm = 1
    if name == "lac-mlp":
        config.backend = "torch"   # data parallel LAC runs autograd (the closed form takes local batch statistics)
    rule = get_rule(name)
    dataset = load_dataset(config.data.dataset)
    learner = rule.learner(config, rule.learner.network_input(dataset))
    learner.prepare(dataset)
    x, lengths, y = rule.learner.train_inputs(dataset)
    if rule.learner.needs_labels:
        y = dataset.train.y
    n = BATCH if name.startswith("lac-") else SAMPLES
    return learner, x[:n], None if lengths is None else lengths[:n], None if y is None else y[:n]


CASES = sorted(rule_names()) + ["bp", "pipeline", "pipeline-alg1"]


def _train_cases(rank: int, folder: str) -> None:
    from fwdlearn.distributed import DataParallel, Processes
    from fwdlearn.distributed.pipeline import LayerPipeline

    from fwdlearn.distributed.launch import loopback_only
    os.environ.update(loopback_only())
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    processes = Processes(rank, WORLD, "gloo")
    for case in CASES:
        learner, x, lengths, y = _learner_and_data(case)
        if case.startswith("pipeline"):
            LayerPipeline(learner, processes)
        else:
            learner.distribute(DataParallel(processes))
        learner.train(x, lengths, y, show_progress=False)
        torch.save(learner.network.state_dict(), Path(folder) / f"{case}-rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    mp.start_processes(_train_cases, args=(str(folder),), nprocs=WORLD, start_method="spawn")
    return folder


def _one_process(case: str) -> dict[str, torch.Tensor]:
    learner, x, lengths, y = _learner_and_data(case)
    learner.train(x, lengths, y, show_progress=False)
    return learner.network.state_dict()


def _largest_difference(a: dict, b: dict, leave_out: tuple[str, ...] = ()) -> tuple[float, str]:
    return max(((a[k].double() - b[k].double()).abs().max().item(), k) for k in a
               if a[k].is_floating_point() and not k.endswith(leave_out))


@pytest.mark.parametrize("case", CASES)
def test_every_process_ends_with_the_same_weights(trained, case):
    ranks = [torch.load(trained / f"{case}-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert _largest_difference(ranks[0], ranks[1])[0] == 0.0


@pytest.mark.parametrize("case", [c for c in CASES if c not in COUPLED])
def test_two_processes_equal_one_with_the_whole_batch(trained, case):
    mine = torch.load(trained / f"{case}-rank0.pt", weights_only=True)
    reference = _one_process(case)
    untrained = _learner_and_data(case)[0].network.state_dict()
    moved = _largest_difference(reference, untrained)[0]
    assert moved > 1e-3, f"{case}: one epoch did not move the weights ({moved})"
    difference, where = _largest_difference(mine, reference, NOISE_DRIVEN if case.startswith("lac-") else ())
    assert difference < 1e-4 * max(1.0, moved), f"{case}: {where} differs by {difference} (training moved {moved})"


def _fwdlearn(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fwdlearn", *args], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})})


def test_a_killed_process_ends_the_job_in_one_line_and_the_checkpoint_resumes(tmp_path):
    train = ["train", "scff-mlp", "--epochs", "2", "--probe-epochs", "1", "--no-progress", "--bp-epochs", "0"]
    halted = _fwdlearn(train + ["--nproc", "2", "--out", str(tmp_path / "two")],
                       {"FWDLEARN_HALT_AFTER_EPOCHS": "1", "FWDLEARN_HALT_RANK": "1"})
    assert halted.returncode == 1
    errors = [line for line in halted.stderr.splitlines() if line.startswith("fwdlearn: error")]
    assert errors == [errors[0]] and "rank 1 of 2 was killed" in errors[0], halted.stderr
    checkpoint = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert not checkpoint["finished"] and checkpoint["state"]["position"] == [0, 1]
    assert not (tmp_path / "two" / "results.json").exists()

    resumed = _fwdlearn(train + ["--nproc", "2", "--out", str(tmp_path / "two")])
    assert resumed.returncode == 0, resumed.stderr
    assert "resum" in resumed.stdout
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["processes"]["world"] == 2 and results["processes"]["bytes_reduced_rank0"] > 0

    payload = load_checkpoint(tmp_path / "two" / "checkpoint.pt")   # the same run in one process, uninterrupted
    rule, dataset = get_rule(payload["config"].learner), load_dataset(payload["config"].data.dataset)
    alone = rule.learner(payload["config"], payload["input_dim"])
    alone.prepare(dataset)
    alone.train(*rule.learner.train_inputs(dataset), show_progress=False)
    assert _largest_difference(payload["state"]["network"], alone.network.state_dict())[0] < 1e-5


def test_a_pipeline_with_more_processes_than_layers_is_refused_in_one_line_before_any_process_starts(tmp_path, capsys):
    from fwdlearn.cli import main
    code = main(["train", "scff-mlp", "--nproc", "3", "--parallel", "pipeline", "--schedule", "simultaneous",
                 "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "fwdlearn: error: --pipeline: 3 processes but 2 layers (at most one stage per layer)"]
    assert not (tmp_path / "run").exists()
