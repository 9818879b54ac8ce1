"""An Optuna study over a preset's values, scored on a validation split; the test split read once at the end.

``run_study`` (``fwdlearn tune``):

1. reads the preset and the search space (``space.py``: refused in one line before anything runs);
2. opens or resumes the study in Optuna's RDB storage (an SQLite file in the output folder by default; any
   SQLAlchemy URL, e.g. ``postgresql://user:password@host/db``, lets workers on several machines share it);
   trials a killed process left running are failed once their heartbeat is older than ``stale_after`` seconds
   and run again with the same settings (``RetryFailedTrialCallback``);
3. starts from the preset as it is (trial 0, when its values lie in the space), then runs the trials still missing (``trials`` minus those already complete) in ``workers`` processes, each
   with its own TPE sampler seed and ``cores / workers`` threads; each trial trains the preset with its drawn
   values on the training data minus the validation split (``validation.carve``) and is scored by the rule's
   linear probe on the validation split; the test split is sealed meanwhile (``validation.sealed_test_split``);
4. trains the best trial's settings on the whole training set and evaluates them on the test split, once;
5. writes ``study.json`` (every trial, the best, the final results), ``best.toml`` (a preset), and Optuna's
   history and parameter-importance plots.

Pruning (``pruner="median"``, the default): after every training epoch a trial reports the validation accuracy
of a closed-form ridge read-out of the network as it stands (``pruning.EpochScore``; the linear probe itself
runs once, after training), and Optuna's median pruner stops a trial that falls below the median of earlier
trials at the same epoch. A pruned trial counts towards ``trials``; ``pruner="none"`` runs every trial to the end.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from pathlib import Path
from typing import Any

from ..atomic import atomic_write, save_figure, save_json
from ..errors import ConfigError, FwdlearnError
from ..preset_files import read_preset
from ..presets import config_from_dict
from .pruning import PRUNERS, EpochScore, pruner
from .space import SearchSpace, apply, read_space
from .storage import fail_stale_trials, open_storage, optuna_module, storage_url
from .validation import carve, sealed_test_split

def _finished(study) -> list:
    optuna = optuna_module()
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def run_study(preset: str, space_path: str | Path, trials: int, out: str | Path, storage: str | None = None,
              workers: int = 1, data_dir: str | Path | None = None, seed: int = 0, fraction: float = 0.1,
              stale_after: float = 120.0, final: bool = True, prune: str = "median", log=print) -> dict:
    optuna = optuna_module()
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if not 0 < fraction < 1:
        raise ConfigError(f"--validation must lie in (0, 1), got {fraction}")
    if prune not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {prune!r}")
    base, values = _preset(preset)
    space = read_space(space_path, values)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = storage_url(storage, out)
    name = base.name
    study = optuna.create_study(study_name=name, storage=open_storage(url, stale_after), direction="maximize",
                                sampler=_sampler(seed, trials), pruner=pruner(prune, trials), load_if_exists=True)
    fail_stale_trials(study)
    start = space.current(values)
    if not study.trials and start is not None:
        study.enqueue_trial(start)                    # trial 0: the preset as it is
    missing = trials - len(_finished(study))
    log(f"study {name!r} in {url}: {len(_finished(study))} of {trials} trials done, {max(missing, 0)} to run "
        f"in {workers} worker(s); searching {', '.join(d.path for d in space.searched)}")
    if missing > 0:
        shares = [missing // workers + (i < missing % workers) for i in range(workers)]
        jobs = [(url, name, preset, str(space_path), share, trials, str(data_dir) if data_dir else None, seed + i + 1,
                 fraction, str(out), stale_after, max(1, (os.cpu_count() or 1) // workers), prune) for i, share in
                enumerate(shares) if share]
        with sealed_test_split():
            if len(jobs) == 1:
                _work(*jobs[0], log=log)
            else:
                context = multiprocessing.get_context("spawn")
                with context.Pool(len(jobs)) as pool:
                    pool.starmap(_work, jobs)
    study = optuna.load_study(study_name=name, storage=open_storage(url, stale_after))
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise FwdlearnError(f"study {name!r}: no trial completed (see the failures in {out / 'study.json'})")
    best = study.best_trial
    report = {"kind": "tune", "preset": preset, "study": name, "storage": url, "space": _describe(space),
              "validation": best.user_attrs.get("split", ""), "trials": [_trial_row(t) for t in study.trials],
              "best": {"number": best.number, "validation_accuracy": best.value, "params": best.params}}
    tuned = apply(values, best.params)                 # the searched values only: fixed ones were for the trials
    tuned["name"] = f"{base.name}-tuned"
    tuned["description"] = (f"{values.get('description', base.name)}; tuned by fwdlearn tune ({len(done)} trials, "
                            f"validation accuracy {best.value:.2%})")
    atomic_write(out / "best.toml", lambda tmp: _write_toml(tmp, tuned))
    _plots(study, out)
    if final:
        from ..run import train_run
        log(f"best trial {best.number}: validation {best.value:.2%}; training it on the whole training set and "
            f"reading the test split once")
        config = config_from_dict(tuned, str(out / "best.toml"))
        results = train_run(config, out / "best", data_dir, show_progress=False, log=log)
        report["test"] = {"test_accuracy": results["metrics"]["test_accuracy"],
                          "baselines": {k: v.get("test_accuracy") for k, v in results.get("baselines", {}).items()},
                          "results": str(out / "best" / "results.json")}
    save_json(report, out / "study.json")
    return report


def _work(url, name, preset, space_path, trials, total, data_dir, seed, fraction, out, stale_after, threads,
          prune, log=None):
    """One worker: ``trials`` trials of the shared study (of ``total``)."""
    import torch
    optuna = optuna_module()
    torch.set_num_threads(threads)
    log = log or (lambda line: print(line, flush=True))
    base, values = _preset(preset)
    space = read_space(space_path, values)
    from ..run import load_run_dataset
    data = carve(load_run_dataset(base, data_dir), fraction, base.seed, data_dir)
    study = optuna.load_study(study_name=name, storage=open_storage(url, stale_after), sampler=_sampler(seed, total),
                              pruner=pruner(prune, total))
    objective = Objective(values, space, data, Path(out), data_dir)
    study.optimize(objective, n_trials=trials, catch=(FwdlearnError,), callbacks=[_progress(log)])


def _sampler(seed: int, trials: int):
    """TPE, its random start scaled to the study's size (Optuna's default, 10 random trials, would leave a
    study of 10 trials a random search)."""
    optuna = optuna_module()
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)))


def _preset(preset: str):
    """The preset's config and its every value, defaults included (what a search space may name)."""
    values, where = read_preset(preset)
    base = config_from_dict(values, where)
    return base, base.to_dict()


class Objective:
    """Validation accuracy of the preset with one trial's values (the rule's linear probe on the validation
    split)."""

    def __init__(self, values: dict[str, Any], space: SearchSpace, data, out: Path, data_dir):
        self.values, self.space, self.data, self.out, self.data_dir = values, space, data, out, data_dir

    def __call__(self, trial) -> float:
        from ..run import train_run
        chosen = self.space.suggest(trial)
        trial.set_user_attr("split", self.data.meta.get("split", ""))
        config = config_from_dict(apply(self.values, chosen), f"trial {trial.number}")
        started = time.perf_counter()
        try:
            results = train_run(config, self.out / "trials" / f"{trial.number:04d}", fresh=True, show_progress=False,
                                log=lambda *_: None, dataset=self.data, on_epoch=EpochScore(trial, self.data, config))
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        accuracy = results["metrics"]["test_accuracy"]        # the validation split, passed as the run's test
        if not math.isfinite(accuracy):
            raise FwdlearnError(f"trial {trial.number}: no finite validation accuracy")
        return accuracy


def _progress(log):
    def report(study, trial) -> None:
        settings = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        if trial.state != trial.state.COMPLETE:        # pruned (its value: the last read-out) or failed
            steps = trial.intermediate_values
            where = (f" after {max(steps)} epochs (read-out {steps[max(steps)]:.2%})" if steps else "")
            log(f"trial {trial.number}: {trial.state.name.lower()}{where} ({settings})")
            return
        log(f"trial {trial.number}: validation {trial.value:.2%} in {trial.user_attrs.get('seconds', 0):.0f} s "
            f"({settings}); best {study.best_value:.2%} (trial {study.best_trial.number})")
    return report


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _trial_row(trial) -> dict:
    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params,
            "seconds": trial.user_attrs.get("seconds"), "retry_of": trial.system_attrs.get("failed_trial"),
            "epoch_scores": {int(k): round(v, 5) for k, v in sorted(trial.intermediate_values.items())}}


def _describe(space: SearchSpace) -> dict:
    return {d.path: ({"fixed": d.value} if d.fixed else {"choices": list(d.choices)} if d.choices is not None else
                     {"low": d.low, "high": d.high, "log": d.log, "int": d.integer}) for d in space.dimensions}


def _write_toml(path: Path, values: dict) -> None:
    import tomli_w
    path.write_text(tomli_w.dumps(values))


def _plots(study, out: Path) -> None:
    """Optuna's optimisation history and parameter importances (matplotlib), when there is enough to plot."""
    from optuna.visualization import matplotlib as plots
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # Optuna marks its matplotlib plots experimental
        for name, draw in (("history", plots.plot_optimization_history),
                           ("importances", plots.plot_param_importances)):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError):         # too few completed trials for importances
                continue
            save_figure(axes.figure, out / f"{name}.png")
            import matplotlib.pyplot as plt
            plt.close(axes.figure)
