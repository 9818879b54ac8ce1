"""The one run path of every rule: train (or resume) -> baselines -> evaluate -> write results and plots.

A run directory holds ``checkpoint.pt`` (rewritten after every epoch), ``results.json``,
``readout.pt`` (the trained linear read-out), ``learning_curves.png``, ``probe_accuracy.png`` and
whatever the rule draws as it trains (LAC: ``reconstructions/``). Running the same command again on
a directory whose checkpoint is unfinished resumes from it; the result equals that of an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from .atomic import prepare_folder, save_json
from .checkpoint import load_checkpoint, resume_from_checkpoint, save_checkpoint
from .data import LabelledDataset, load_dataset
from .distributed.processes import current_processes, default_processes
from .distributed.setup import describe_processes, distribute, processes_record
from .errors import CheckpointError, ConfigError, DivergenceError
from .eval.report import evaluate, summary_lines
from .progress import bars_visible
from .registry import get_rule
from .rule import Rule
from .learner import Learner, TrainedBaseline

HALT_ENV = "FWDLEARN_HALT_AFTER_EPOCHS"   # test hook: hard-exit after N epochs, as a kill would
HALT_RANK_ENV = "FWDLEARN_HALT_RANK"       # with it: only that rank of a distributed run exits

# What a run writes into its folder (files and folders); ``--fresh`` or a run without a checkpoint clears
# them first, so nothing of an older run (a read-out, results, an export) stays beside the new checkpoint.
RUN_OUTPUTS = ("checkpoint.pt", "results.json", "readout.pt", "learning_curves.png", "test_curves.png",
               "probe_accuracy.png", "reconstructions", "eval", "model.onnx", "model.report.json")


def device_description(device: str = "cpu") -> str:
    if torch.device(device).type == "cuda":
        from .bench.sweep import describe_device
        return f"cuda ({describe_device(device)})"
    return f"cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def check_train_device(rule: Rule, device: str) -> None:
    """A one-line ``ConfigError`` for a device that does not exist here or that the rule cannot use."""
    from .bench.sweep import check_device
    check_device(device)
    kind = torch.device(device).type
    if kind not in rule.devices:
        able = [name for name, r in _rules_with_device(kind)]
        raise ConfigError(f"--device {device}: {rule.name} trains on {', '.join(rule.devices)} only "
                          f"({kind}: {', '.join(able) or 'no rule'})")


def _rules_with_device(kind: str):
    from .registry import rules
    return [(name, r) for name, r in rules().items() if kind in r.devices]


def untrained_network(config, input_dim) -> torch.nn.Module:
    """The network exactly as the rule initialises it, before any update (a baseline)."""
    return get_rule(config.learner).learner.build_network(config, input_dim)


def load_run_dataset(config, data_dir: str | Path | None) -> LabelledDataset:
    return load_dataset(config.data.dataset, data_dir, holdout_speakers=config.data.holdout_speakers,
                        max_unlabelled=config.data.max_unlabelled or None)


def _last_epoch(history: list[dict]) -> list[dict]:
    """The records of the most recent epoch (one per group trained in it)."""
    last = history[-1]
    return [r for r in history if r["epoch"] == last["epoch"] and r["seconds"] == last["seconds"]]


def _epoch_line(learner: Learner) -> str:
    records = _last_epoch(learner.history)
    parts = [f"{r['group']}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k not in ("group", "epoch", "seconds"))
             for r in records]
    return f"  epoch {records[0]['epoch']}: " + "; ".join(parts) + f", {records[0]['seconds']:.1f} s"


def train_run(config, out_dir: str | Path, data_dir: str | Path | None = None, fresh: bool = False,
              show_progress: bool = True, command: str = "", log: Callable[[str], None] = print,
              device: str = "cpu", dataset: LabelledDataset | None = None,
              on_epoch: Callable[[Learner], None] | None = None, parallel: str = "data") -> dict:
    """Train (or resume), train the baselines, evaluate, and write the run's files. Returns the results dict.

    ``device``: where the rule trains and computes probe features (the probe itself runs on the CPU).
    ``dataset``: the data to use instead of loading the config's (a tuning trial's training and validation split).
    ``on_epoch``: called with the learner after each epoch is checkpointed (a study's per-epoch score; what it
    raises ends the run, the checkpoint kept).
    ``parallel``: under ``torchrun`` (several processes), ``data`` (each trains on its rows of every batch) or
    ``pipeline`` (each trains a stage of layers); rank 0 alone writes, and returns the results (the others ``{}``).
    """
    out_dir = Path(out_dir)
    rule = get_rule(config.learner)
    check_train_device(rule, device)
    processes = current_processes(device)            # several processes when torchrun started this one
    main = processes is None or processes.is_main
    if processes is not None:
        device = processes.place(device)            # one GPU per process
    if not main:                                     # rank 0 alone talks and writes
        log, show_progress = (lambda *_: None), False
    prepare_folder(out_dir, "--out")
    folder_existed = out_dir.exists()
    dataset = dataset if dataset is not None else load_run_dataset(config, data_dir)
    input_dim = rule.network_input(dataset)
    learner = rule.learner(config, input_dim, device=device)
    learner.prepare(dataset)
    checkpoint_path, data = out_dir / "checkpoint.pt", dataset.fingerprint()
    resume = checkpoint_path.exists() and not fresh
    if not resume and main:
        clear_run_outputs(out_dir)
    if processes is not None:
        processes.barrier()                          # every process decided from the same folder
    if resume:
        resume_from_checkpoint(learner, checkpoint_path, config, log, data)
    if processes is not None:
        distribute(learner, processes, parallel)
    halt_after = int(os.environ.get(HALT_ENV, "0"))
    halt_rank = os.environ.get(HALT_RANK_ENV)
    halts = halt_after and (halt_rank is None or processes is None or int(halt_rank) == processes.rank)
    epochs_this_process = 0

    def on_epoch_end(current: Learner) -> None:
        nonlocal epochs_this_process
        if main:
            save_checkpoint(checkpoint_path, config, input_dim, current.state_dict(), current.finished, data)
            current.epoch_artifacts(out_dir, dataset)
        if not bars_visible(show_progress):   # one line per epoch where no bar shows it
            log(_epoch_line(current))
        epochs_this_process += 1
        if on_epoch is not None:
            on_epoch(current)
        if halts and epochs_this_process >= halt_after and not current.finished:
            os._exit(137)

    x, lengths, y = rule.learner.train_inputs(dataset)
    unlabelled = getattr(dataset, "unlabelled", None) is not None and x is dataset.unlabelled
    log(f"{rule.name.upper()} {rule.learner.describe(config, input_dim)} on {dataset.name}: {len(x)} training"
        f"{' (unlabelled)' if unlabelled else ''}, {len(dataset.test)} test samples ({dataset.source}); "
        f"{learner.total_epochs} epochs{_schedule(config)}, {device}{describe_processes(processes, parallel)}")
    learner.epoch_artifacts(out_dir, dataset, first=True)
    started = time.perf_counter()
    try:
        learner.train(x, lengths, y, on_epoch_end=on_epoch_end, show_progress=show_progress)
    except DivergenceError as exc:
        if checkpoint_path.exists():
            kept = (f"the last finite checkpoint ({learner.completed_epochs}/{learner.total_epochs} epochs) is kept "
                    f"in {checkpoint_path}")
        else:   # nothing worth keeping: leave the folder as it was
            clear_run_outputs(out_dir)
            if not folder_existed and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            kept = "nothing was written"
        raise DivergenceError(f"{exc}; {kept}") from None
    train_seconds = time.perf_counter() - started
    if main and not checkpoint_path.exists():   # nothing was left to train: still leave a checkpoint to evaluate
        save_checkpoint(checkpoint_path, config, input_dim, learner.state_dict(), True, data)
    log(f"training done in {train_seconds:.1f} s")
    baselines = {"untrained": TrainedBaseline(untrained_network(config, input_dim))}
    with default_processes(processes):               # back-propagation baselines train data parallel too
        baselines.update(rule.learner.baselines(config, dataset, input_dim, show_progress, log))
    if not main:                                     # rank 0 evaluates and writes the results
        return {}
    for baseline in baselines.values():
        baseline.network.to(device)
    log(f"probing (linear read-out, {config.probe.epochs} epochs) the trained network and its baselines")
    results = evaluate_run(rule, learner.network, baselines, dataset, config, show_progress, command,
                           out_dir / "readout.pt", device)
    results["timing"]["seconds_per_epoch"] = learner.seconds_per_epoch()
    results["timing"]["train_seconds"] = round(sum(_epoch_seconds(learner.history)), 2)   # across resumes
    results["timing"]["train_seconds_this_process"] = round(train_seconds, 2)
    results["history"] = learner.history
    if processes is not None:
        results["processes"] = processes_record(learner, processes, parallel)
    for name, baseline in baselines.items():
        if baseline.history:
            results["timing"][f"{name}_train_seconds"] = round(baseline.seconds, 2)
            results.setdefault("baseline_history", {})[name] = baseline.history
    write_results(results, out_dir, log)
    return results


def clear_run_outputs(out_dir: Path) -> None:
    """Remove what an earlier run wrote into ``out_dir`` (``RUN_OUTPUTS``); nothing else."""
    import shutil

    for name in RUN_OUTPUTS:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _schedule(config) -> str:
    return f", {config.schedule} schedule" if getattr(config, "schedule", None) and len(config.layers) > 1 else ""


def _epoch_seconds(history: list[dict]) -> list[float]:
    """One wall time per epoch (groups trained together share their epoch's time)."""
    seen = {}
    for record in history:
        seen[(record["epoch"], record["seconds"])] = record["seconds"]
    return list(seen.values())


def evaluate_run(rule: Rule, network: torch.nn.Module, baselines: dict[str, TrainedBaseline], dataset: LabelledDataset,
                 config, show_progress: bool, command: str = "", readout_to: Path | None = None,
                 device: str = "cpu", raw_inputs: bool = True) -> dict:
    """The results dict for a trained network beside its baselines (architecture.md's results format)."""
    started = time.perf_counter()
    report = evaluate(rule, network, {k: b.network for k, b in baselines.items()}, dataset, config, show_progress,
                      raw_inputs=raw_inputs, readout_to=readout_to)
    return {
        "experiment": config.name, "learner": config.learner, "dataset": dataset.name,
        "command": command or " ".join(["fwdlearn"] + sys.argv[1:]), "device": device_description(device),
        "seeds": [config.seed], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **report,
        "timing": {"evaluation_seconds": round(time.perf_counter() - started, 2)},
        "config": config.to_dict(),
    }


def write_results(results: dict, out_dir: Path, log: Callable[[str], None] = print) -> Path:
    """``results.json`` and the figures; then the summary table for a person."""
    from .plots import plot_learning_curves, plot_probe_accuracy, plot_test_curves

    path = save_json(results, out_dir / "results.json")
    if results.get("history"):
        plot_learning_curves(results["history"], out_dir / "learning_curves.png", get_rule(results["learner"]).label)
        plot_test_curves(results, out_dir / "test_curves.png")
    plot_probe_accuracy(results, out_dir / "probe_accuracy.png")
    for line in summary_lines(results, get_rule(results["learner"]).label):
        log(line)
    log(f"results: {path}  (plots beside it)")
    return path


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path | None, out: str | Path | None,
                        show_progress: bool = True, baselines: bool = True, log: Callable[[str], None] = print) -> dict:
    """Reload a checkpoint's network and evaluate it again (probe, and the rule's own evaluation)."""
    payload = load_checkpoint(checkpoint)
    out_dir = Path(out) if out else Path(checkpoint).parent / "eval"
    prepare_folder(out_dir, "--out")
    config = payload["config"]
    rule = get_rule(config.learner)
    if not payload["finished"]:
        log(f"note: {checkpoint} is from an unfinished run; evaluating the network as it stands")
    dataset = load_run_dataset(config, data_dir)
    expected, saved = rule.network_input(dataset), payload["input_dim"]
    if _as_list(expected) != _as_list(saved):      # an image shape may come back from the file as a list
        raise CheckpointError(f"{checkpoint}: network expects {_as_list(saved)} inputs but {dataset.name} has "
                              f"{_as_list(expected)}")
    network = untrained_network(config, saved)
    try:
        network.load_state_dict(payload["state"]["network"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not match its configuration ({str(exc).splitlines()[0]})") from None
    compared = {"untrained": TrainedBaseline(untrained_network(config, saved))} if baselines else {}
    results = evaluate_run(rule, network, compared, dataset, config, show_progress, readout_to=out_dir / "readout.pt",
                           raw_inputs=baselines)
    results["checkpoint"] = str(checkpoint)
    write_results(results, out_dir, log)
    return results


def _as_list(input_dim) -> int | list[int]:
    return list(input_dim) if isinstance(input_dim, (tuple, list)) else input_dim
