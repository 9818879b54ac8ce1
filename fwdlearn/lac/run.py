"""A LAC run from start to results: pretraining (resumable), baselines, down-stream protocols, files.

The run directory holds ``checkpoint.pt`` (rewritten after every epoch), ``results.json``,
``reconstructions/epoch_NNN.png`` (test images above their reconstructions, written as training
goes: before it, then every epoch or, for long runs, about ten times), ``reconstruction_error.png`` (LAC's test reconstruction error per epoch beside the BP
autoencoder's) and ``downstream.png``.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from ..atomic import save_json
from ..baselines import train_bp_autoencoder
from ..checkpoint import resume_from_checkpoint, save_checkpoint
from ..data import load_dataset
from ..errors import CheckpointError
from ..plots import plot_downstream, plot_reconstruction_error, plot_reconstructions
from ..progress import bars_visible
from .config import LACConfig
from .downstream import downstream
from .learner import LACLearner, reconstruction_target
from .network import Autoencoder, build_autoencoder

HALT_ENV = "FWDLEARN_HALT_AFTER_EPOCHS"
GRID_IMAGES = 10
GRID_FILES = 10
LABELS = {"no_pretraining": "no pretraining", "bp_autoencoder": "BP autoencoder"}


def save_reconstruction_grid(network: Autoencoder, images: torch.Tensor, target: str, path: Path, title: str) -> Path:
    was_training = network.training
    network.eval()
    with torch.no_grad():
        outputs = network(images)
    network.train(was_training)
    shown = reconstruction_target(images, target) if target == "flip" else images
    return plot_reconstructions(shown, outputs, path, title)


def train_lac_run(config: LACConfig, out_dir: str | Path, data_dir: str | Path | None = None, fresh: bool = False,
                  show_progress: bool = True, command: str = "", log: Callable[[str], None] = print) -> dict:
    """Pretrain (or resume), train the baselines, run both down-stream protocols, write the files."""
    out_dir = Path(out_dir)
    dataset = load_dataset(config.data.dataset, data_dir)
    learner = LACLearner(config, dataset.sample_shape)
    checkpoint_path, data = out_dir / "checkpoint.pt", dataset.fingerprint()
    if checkpoint_path.exists() and not fresh:
        resume_from_checkpoint(learner, checkpoint_path, config, log, data)
    grid = dataset.test.x[:GRID_IMAGES]
    grids = out_dir / "reconstructions"
    grid_every = -(-config.epochs // GRID_FILES)       # at most about GRID_FILES grids per run
    halt_after = int(os.environ.get(HALT_ENV, "0"))
    epochs_this_process = 0

    def on_epoch_end(current: LACLearner) -> None:
        nonlocal epochs_this_process
        save_checkpoint(checkpoint_path, config, dataset.num_features, current.state_dict(), current.finished, data)
        record = current.history[-1]
        if record.epoch % grid_every == 0 or current.finished:
            save_reconstruction_grid(current.network, grid, config.target, grids / f"epoch_{record.epoch:03d}.png",
                                     f"LAC epoch {record.epoch}: test MSE {record.test_reconstruction_error:.4f}")
        if not bars_visible(show_progress):
            log(f"  epoch {record.epoch}: hidden contrast {record.hidden_loss:.2f}, reconstruction "
                f"{record.reconstruction_loss:.2f}, test MSE per pixel {record.test_reconstruction_error:.4f}, "
                f"{record.seconds:.1f} s")
        epochs_this_process += 1
        if halt_after and epochs_this_process >= halt_after and not current.finished:
            os._exit(137)

    sizes = "-".join(map(str, config.hidden))
    log(f"{config.learner.upper()} {sizes} ({config.target}) on {dataset.name}: {len(dataset.train)} training, "
        f"{len(dataset.test)} test images ({dataset.source}); {config.epochs} epochs")
    if learner.completed_epochs == 0:
        save_reconstruction_grid(learner.network, grid, config.target, grids / "epoch_000.png", "initial weights")
    started = time.perf_counter()
    learner.train(dataset.train.x, dataset.test.x, on_epoch_end=on_epoch_end, show_progress=show_progress)
    train_seconds = time.perf_counter() - started
    if not checkpoint_path.exists():
        save_checkpoint(checkpoint_path, config, dataset.num_features, learner.state_dict(), True, data)
    log(f"LAC pretraining done in {train_seconds:.1f} s")

    baselines = {"no_pretraining": build_autoencoder(config, dataset.sample_shape)}
    curves = {"LAC": [learner.initial_test_error] + [r.test_reconstruction_error for r in learner.history]}
    epoch_seconds = [r.seconds for r in learner.history]
    timing = {"lac_train_seconds": round(sum(epoch_seconds), 2),  # all epochs, across resumes
              "lac_train_seconds_this_process": round(train_seconds, 2),
              "lac_seconds_per_epoch": round(sum(epoch_seconds) / max(1, len(epoch_seconds)), 2)}
    if config.bp_epochs:
        log(f"BP autoencoder baseline: the same autoencoder trained end to end for {config.bp_epochs} epochs")
        bp = build_autoencoder(config, dataset.sample_shape)
        seconds, errors = train_bp_autoencoder(bp, dataset.train.x, dataset.test.x, config.bp_epochs, config.bp_lr,
                                               config.batch_size, config.target, config.seed, show_progress)
        baselines["bp_autoencoder"] = bp
        curves["BP autoencoder"] = [curves["LAC"][0]] + errors
        timing["bp_train_seconds"] = round(seconds, 2)
        save_reconstruction_grid(bp, grid, config.target, out_dir / "bp_reconstructions.png",
                                 f"BP autoencoder: test MSE {errors[-1]:.4f}")

    log(f"down-stream: linear evaluation ({config.downstream.linear_epochs} epochs) and fine-tuning "
        f"({config.downstream.finetune_epochs} epochs) of every encoder")
    started = time.perf_counter()
    metrics = downstream(learner.network, dataset, config.downstream, config.seed, show_progress,
                         readout_to=out_dir / "readout.pt")
    metrics["test_accuracy"] = metrics["linear_evaluation"]["test_accuracy"]
    metrics["reconstruction_error"] = curves["LAC"][-1]
    baseline_metrics = {name: downstream(net, dataset, config.downstream, config.seed, show_progress)
                        for name, net in baselines.items()}
    timing["downstream_seconds_total"] = round(time.perf_counter() - started, 2)
    results = {
        "experiment": config.name, "learner": config.learner, "dataset": dataset.name,
        "command": command or " ".join(["fwdlearn"] + sys.argv[1:]),
        "device": f"cpu, {torch.get_num_threads()} threads", "seeds": [config.seed],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics, "baselines": baseline_metrics, "reconstruction_error": curves, "timing": timing,
        "config": config.to_dict(), "history": [vars(r) for r in learner.history],
    }
    path = save_json(results, out_dir / "results.json")
    plot_reconstruction_error(curves, out_dir / "reconstruction_error.png")
    plot_downstream(results, out_dir / "downstream.png")
    for line in summary_lines(results):
        log(line)
    log(f"results: {path}  (plots and reconstructions/ beside it)")
    return results


def summary_lines(results: dict) -> list[str]:
    """The table a person reads at the end of a LAC run."""
    rows = [("LAC pretraining", results["metrics"])] + [(LABELS.get(k, k), v) for k, v in results["baselines"].items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {'encoder'.ljust(width)}  linear evaluation  fine-tuning"]
    for name, entry in rows:
        fine = entry.get("fine_tuning")
        lines.append(f"  {name.ljust(width)}  {100 * entry['linear_evaluation']['test_accuracy']:15.2f} %  "
                     + (f"{100 * fine['test_accuracy']:9.2f} %" if fine else "        –"))
    curve = results["reconstruction_error"]["LAC"]
    lines.append(f"  test reconstruction error (MSE per pixel), LAC: {curve[0]:.4f} before training, {curve[-1]:.4f} after")
    return lines


def evaluate_lac_checkpoint(checkpoint: str | Path, payload: dict, data_dir: str | Path | None, out: str | Path | None,
                            show_progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run the down-stream protocols again on a saved LAC autoencoder."""
    config: LACConfig = payload["config"]
    dataset = load_dataset(config.data.dataset, data_dir)
    network = build_autoencoder(config, dataset.sample_shape)
    try:
        network.load_state_dict(payload["state"]["network"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not match its configuration ({str(exc).splitlines()[0]})") from None
    out_path = Path(out) if out else Path(checkpoint).parent / "eval" / "results.json"
    metrics = downstream(network, dataset, config.downstream, config.seed, show_progress,
                         readout_to=out_path.parent / "readout.pt")
    metrics["test_accuracy"] = metrics["linear_evaluation"]["test_accuracy"]
    results = {"experiment": config.name, "learner": config.learner, "dataset": dataset.name,
               "checkpoint": str(checkpoint), "seeds": [config.seed], "metrics": metrics, "baselines": {},
               "reconstruction_error": {"LAC": [payload["state"]["initial_test_error"]]
                                        + [r["test_reconstruction_error"] for r in payload["state"]["history"]]}}
    path = save_json(results, out_path)
    for line in summary_lines(results):
        log(line)
    log(f"results: {path}")
    return results
