"""A training run from start to results: data, resumable training, evaluation, files.

A run directory holds ``checkpoint.pt`` (rewritten after every epoch), ``results.json``,
``learning_curves.png`` and ``probe_accuracy.png``. Running the same command again on a
directory whose checkpoint is unfinished resumes from it; the result equals that of an
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

from .atomic import save_json
from .baselines import train_bptt, train_supervised
from .checkpoint import load_checkpoint, resume_from_checkpoint, save_checkpoint
from .config import SCFFConfig
from .data import LabelledDataset, load_dataset
from .errors import CheckpointError, ConfigError
from .eval.report import evaluate, summary_lines
from .learners import LEARNERS
from .progress import bars_visible

HALT_ENV = "FWDLEARN_HALT_AFTER_EPOCHS"   # test hook: hard-exit after N epochs, as a kill would


DEVICE_LEARNERS = tuple(LEARNERS)   # learners that train on --device cuda: every SCFF learner (LAC: CPU only)


def device_description(device: str = "cpu") -> str:
    if torch.device(device).type == "cuda":
        from .bench.sweep import describe_device
        return f"cuda ({describe_device(device)})"
    return f"cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def network_input(config: SCFFConfig, dataset: LabelledDataset) -> int | tuple[int, ...]:
    """What the learner's network is built for: the image shape ``[C, H, W]`` (scff-cnn), else the
    number of features per sample or per step."""
    return dataset.sample_shape if config.learner == "scff-cnn" else dataset.num_features


def _as_list(input_dim: int | tuple[int, ...] | list[int]) -> int | list[int]:
    return list(input_dim) if isinstance(input_dim, (tuple, list)) else input_dim


def check_train_device(config: SCFFConfig, device: str) -> None:
    """A one-line ``ConfigError`` for a device that does not exist here or that the learner cannot use."""
    from .bench.sweep import check_device
    check_device(device)
    if torch.device(device).type != "cpu" and config.learner not in DEVICE_LEARNERS:
        raise ConfigError(f"--device {device}: {config.learner} trains on the CPU only "
                          f"(cuda: {', '.join(DEVICE_LEARNERS)})")


def untrained_network(config: SCFFConfig, input_dim: int | tuple[int, ...]) -> torch.nn.Module:
    """The network exactly as the learner initialises it, before any update (a baseline)."""
    return LEARNERS[config.learner].build_network(config, input_dim)


def load_run_dataset(config: SCFFConfig, data_dir: str | Path | None) -> LabelledDataset:
    return load_dataset(config.data.dataset, data_dir, holdout_speakers=config.data.holdout_speakers,
                        max_unlabelled=config.data.max_unlabelled or None)


def train_run(config: SCFFConfig, out_dir: str | Path, data_dir: str | Path | None = None, fresh: bool = False,
              show_progress: bool = True, command: str = "", log: Callable[[str], None] = print,
              device: str = "cpu") -> dict:
    """Train (or resume), evaluate with baselines, and write the run's files. Returns the results dict.

    ``device``: where scff-mlp / scff-cnn / scff-rnn train and compute probe features (the probe itself runs on
    the CPU). A data set with an ``unlabelled`` split (STL-10) trains SCFF on it; the probe reads train/test.
    """
    out_dir = Path(out_dir)
    check_train_device(config, device)
    dataset = load_run_dataset(config, data_dir)
    input_dim = network_input(config, dataset)
    learner = LEARNERS[config.learner](config, input_dim, device=device)
    checkpoint_path, data = out_dir / "checkpoint.pt", dataset.fingerprint()
    if checkpoint_path.exists() and not fresh:
        resume_from_checkpoint(learner, checkpoint_path, config, log, data)
    halt_after = int(os.environ.get(HALT_ENV, "0"))
    epochs_this_process = 0

    def on_epoch_end(current) -> None:
        nonlocal epochs_this_process
        save_checkpoint(checkpoint_path, config, input_dim, current.state_dict(), current.finished, data)
        if not bars_visible(show_progress):   # one line per epoch where no bar shows it
            record = current.history[-1]
            log(f"  layer {record.layer} epoch {record.epoch}: loss {record.loss:.4f}, goodness positive "
                f"{record.goodness_pos:.3f} / negative {record.goodness_neg:.3f}, {record.seconds:.1f} s")
        epochs_this_process += 1
        if halt_after and epochs_this_process >= halt_after and not current.finished:
            os._exit(137)

    first = "x".join(map(str, input_dim)) if isinstance(input_dim, tuple) else str(input_dim)
    widths = "-".join([first] + [str(layer.width) for layer in config.layers])
    unlabelled = getattr(dataset, "unlabelled", None)
    train_x, train_lengths = (dataset.train.x, dataset.train.lengths) if unlabelled is None else (unlabelled, None)
    log(f"{config.learner.upper()} {widths} on {dataset.name}: {len(train_x)} training"
        f"{' (unlabelled)' if unlabelled is not None else ''}, {len(dataset.test)} test samples "
        f"({dataset.source}); {config.schedule} schedule, {learner.total_epochs} epochs, {device}")
    started = time.perf_counter()
    learner.train(train_x, train_lengths, on_epoch_end=on_epoch_end, show_progress=show_progress)
    train_seconds = time.perf_counter() - started
    if not checkpoint_path.exists():   # nothing was left to train: still leave a checkpoint to evaluate
        save_checkpoint(checkpoint_path, config, input_dim, learner.state_dict(), True, data)
    log(f"training done in {train_seconds:.1f} s")
    baselines = {"untrained": untrained_network(config, input_dim).to(device)}
    end_to_end = train_end_to_end_baseline(config, dataset, baselines, show_progress, log)
    log(f"probing (linear read-out, {config.probe.epochs} epochs) the trained network and its baselines")
    results = evaluate_run(learner.network, baselines, dataset, config, show_progress, command, out_dir / "readout.pt",
                           device)
    if end_to_end is not None:
        key, seconds, history = end_to_end
        results["timing"][f"{key}_train_seconds"] = round(seconds, 2)
        results[f"{key}_history"] = history
    results["timing"]["seconds_per_epoch"] = learner.seconds_per_epoch()
    results["timing"]["train_seconds_this_process"] = round(train_seconds, 2)
    results["history"] = [vars(r) for r in learner.history]
    write_results(results, out_dir, log)
    return results


def train_end_to_end_baseline(config: SCFFConfig, dataset: LabelledDataset, baselines: dict[str, torch.nn.Module],
                              show_progress: bool, log: Callable[[str], None]) -> tuple[str, float, list] | None:
    """The same network trained end to end by back-propagation (BPTT for scff-rnn, supervised BP for
    scff-mlp), added to ``baselines``; returns its key, wall time and history, or None if skipped."""
    recurrent = config.learner == "scff-rnn"
    section = config.bptt if recurrent else config.bp
    if not section.epochs:
        return None
    key = "bptt" if recurrent else "bp"
    network = baselines[key] = untrained_network(config, dataset.num_features)
    log(f"{key.upper()} baseline: the same network trained end to end for {section.epochs} epochs")
    train = dataset.train
    if recurrent:
        seconds, history = train_bptt(network, train.x, train.lengths, train.y, dataset.num_classes, section,
                                      config.seed, show_progress, config.data.batching)
    else:
        seconds, history = train_supervised(network, train.x, train.y, dataset.num_classes, section,
                                            config.probe.layers, config.probe.standardize, config.seed, show_progress)
    return key, seconds, history


def evaluate_run(network: torch.nn.Module, baselines: dict[str, torch.nn.Module], dataset: LabelledDataset,
                 config: SCFFConfig, show_progress: bool, command: str, readout_to: Path | None = None,
                 device: str = "cpu") -> dict:
    """The results dict for a trained network beside its baselines (architecture.md's results format)."""
    started = time.perf_counter()
    report = evaluate(network, baselines, dataset, config, show_progress, readout_to=readout_to)
    return {
        "experiment": config.name, "learner": config.learner, "dataset": dataset.name,
        "command": command or " ".join(["fwdlearn"] + sys.argv[1:]), "device": device_description(device),
        "seeds": [config.seed], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **report,
        "timing": {"probe_seconds_total": round(time.perf_counter() - started, 2)},
        "config": config.to_dict(),
    }


def write_results(results: dict, out_dir: Path, log: Callable[[str], None] = print) -> Path:
    """``results.json`` and the figures; then the summary table for a person."""
    from .plots import plot_learning_curves, plot_probe_accuracy

    path = save_json(results, out_dir / "results.json")
    if results.get("history"):
        plot_learning_curves(results["history"], out_dir / "learning_curves.png")
    plot_probe_accuracy(results, out_dir / "probe_accuracy.png")
    for line in summary_lines(results):
        log(line)
    log(f"results: {path}  (plots beside it)")
    return path


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path | None, out: str | Path | None,
                        show_progress: bool = True, baselines: bool = True, log: Callable[[str], None] = print) -> dict:
    """Reload a checkpoint's network and probe it again."""
    payload = load_checkpoint(checkpoint)
    config: SCFFConfig = payload["config"]
    if config.learner.startswith("lac"):
        from .lac.run import evaluate_lac_checkpoint
        out_path = Path(out) / "results.json" if out else None
        return evaluate_lac_checkpoint(checkpoint, payload, data_dir, out_path, show_progress, log)
    if not payload["finished"]:
        log(f"note: {checkpoint} is from an unfinished run; evaluating the network as it stands")
    dataset = load_run_dataset(config, data_dir)
    expected, saved = network_input(config, dataset), payload["input_dim"]
    if _as_list(expected) != _as_list(saved):      # an image shape may come back from the file as a list
        raise CheckpointError(f"{checkpoint}: network expects {saved} inputs but {dataset.name} has {expected}")
    network = untrained_network(config, saved)
    try:
        network.load_state_dict(payload["state"]["network"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not match its configuration ({str(exc).splitlines()[0]})") from None
    out_dir = Path(out) if out else Path(checkpoint).parent / "eval"
    report = evaluate(network, {"untrained": untrained_network(config, saved)} if baselines else {},
                      dataset, config, show_progress, raw_inputs=baselines, readout_to=out_dir / "readout.pt")
    results = {"experiment": config.name, "learner": config.learner, "dataset": dataset.name,
               "checkpoint": str(checkpoint), "device": device_description(), "seeds": [config.seed], **report}
    write_results(results, out_dir, log)
    return results
