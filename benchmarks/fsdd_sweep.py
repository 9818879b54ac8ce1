"""Validation sweep of the fsdd-paper preset's SCFF hyper-parameters, chosen as Appendix F chooses them.

    python benchmarks/fsdd_sweep.py export --data-dir ../shared/data --out fsdd-train.pt
    python benchmarks/fsdd_sweep.py run --features fsdd-train.pt --trials 40 --seeds 0 1 2 3 \\
        --holdout takes --workers 16 --gpu-workers 6 --device cuda --out sweep.jsonl
    python benchmarks/fsdd_sweep.py summary sweep.jsonl

Only the official *training* recordings are used: 300 of them (drawn with seed 123, as in
``results/fsdd-paper/README.md``, or with ``--holdout takes`` takes 5-9) are held out for
validation, SCFF trains on the other 2,400 and the preset's probe is fitted on those 2,400 and
scored on the 300. ``export`` writes the training split's MFCC features to one file (so a machine
without librosa can run the sweep); the test recordings are never exported.

``run`` draws ``--trials`` settings at random from ``SPACE`` (trial 0 is the preset as it is now; the
draw is seeded, so trial numbers are stable and ``--only`` re-runs chosen ones at more seeds) and
trains each at every seed, one job per (trial, seed) in a pool of worker processes with one
CPU thread each. Results are appended to the JSONL file as they finish, so a sweep stopped by
``--deadline`` (or killed) keeps what it finished, and running it again skips those jobs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import time
from pathlib import Path

import torch

SPLIT_SEED, N_VALIDATION = 123, 300

# what a trial may change in the preset's one layer (and data.negatives); trial 0 changes nothing
SPACE = {
    "lr": [5e-5, 1e-4, 2e-4, 4e-4],
    "epochs": [10, 20],
    "lr_decay": [0.7, 0.8, 0.9],
    "theta_pos": [0.0, 0.5],
    "theta_neg": [0.5, 1.0, 1.5],
    "penalty": [0.0, 7.5e-3, 2e-2],
    "weight_decay": [0.0, 1e-3, 1e-2],
    "negatives": [1, 2],
}

_STATE: dict = {}


def export_features(data_dir: str, out: str, trim_db: float | None = None) -> None:
    """The training recordings' features as the loader makes them (``trim_db``: another silence trim)."""
    from fwdlearn.atomic import save_torch
    from fwdlearn.data.fsdd import TEST_INDICES, MFCCSettings, find_fsdd_dir, list_recordings, load_fsdd
    settings = MFCCSettings() if trim_db is None else MFCCSettings(trim_db=trim_db)
    train = load_fsdd(Path(data_dir), settings=settings).train
    takes = [r.index for r in list_recordings(find_fsdd_dir(Path(data_dir))) if r.index not in TEST_INDICES]
    valid = torch.arange(train.x.shape[1])[None, :] < train.lengths[:, None]
    save_torch({"frames": train.x[valid], "y": train.y, "lengths": train.lengths,   # unpadded: 1/4 the bytes
                "takes": torch.tensor(takes)}, out)
    print(f"wrote {len(train)} training recordings' features to {out}")


def validation_split(blob: dict, holdout: str = "random"):
    """(fit, validation) ``Split``s of the training recordings: the same 300 held out every time.

    ``random``: 300 drawn with ``SPLIT_SEED``; ``takes``: every recording of takes 5-9 (300 in FSDD),
    as the official test set is takes 0-4 (neighbouring takes of one session are near-duplicates, so
    a random hold-out shares sessions with the recordings the probe is fitted on; the test set does not).
    """
    from fwdlearn.data.dataset import Split
    lengths = blob["lengths"]
    x = blob["frames"].new_zeros(lengths.shape[0], int(lengths.max()), blob["frames"].shape[-1])
    x[torch.arange(x.shape[1])[None, :] < lengths[:, None]] = blob["frames"]
    if holdout == "takes":
        held = (blob["takes"] >= 5) & (blob["takes"] <= 9)
        order, n_held = torch.cat([held.nonzero()[:, 0], (~held).nonzero()[:, 0]]), int(held.sum())
    else:
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_held = N_VALIDATION

    def subset(rows: torch.Tensor) -> Split:
        steps = int(lengths[rows].max())
        return Split(x[rows, :steps].contiguous(), blob["y"][rows], lengths[rows])
    return subset(order[n_held:]), subset(order[:n_held])


def draw_trials(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    trials, seen = [{}], set()
    while len(trials) < n:
        trial = {name: rng.choice(values) for name, values in SPACE.items()}
        key = json.dumps(trial, sort_keys=True)
        if key not in seen:
            seen.add(key)
            trials.append(trial)
    return trials


def _init_worker(features: str, holdout: str, device: str, gpu_workers: int, counter) -> None:
    """Each worker: one CPU thread; the first ``gpu_workers`` to start train on ``device``, the rest on the CPU."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    with counter.get_lock():
        index, counter.value = counter.value, counter.value + 1
    _STATE["split"] = validation_split(torch.load(features, weights_only=True), holdout)
    _STATE["holdout"] = holdout
    _STATE["features"] = Path(features).name
    _STATE["device"] = device if index < gpu_workers else "cpu"


def run_job(job: tuple[int, dict, int]) -> dict:
    """Train SCFF with one trial's settings at one seed; probe accuracy on the held-out recordings."""
    from fwdlearn.data.dataset import LabelledDataset
    from fwdlearn.data.fsdd import CLASS_NAMES
    from fwdlearn.eval.report import probe_network
    from fwdlearn.presets import check_for_rule, load_preset
    from fwdlearn.rules.scff_rnn import SCFFRNNLearner
    trial_id, trial, seed = job
    config = load_preset("fsdd-paper")
    config.seed = seed
    layer = config.layers[0]
    for name, value in trial.items():
        if name == "untrained":             # {"untrained": true}: the network as initialised, not trained
            continue
        if name == "negatives":
            config.data.negatives = value
        else:
            setattr(layer, name, value)
    check_for_rule(config.validate())
    fit, val = _STATE["split"]
    started = time.perf_counter()
    learner = SCFFRNNLearner(config, fit.x.shape[-1], device=_STATE["device"])
    if not trial.get("untrained"):
        learner.train(fit.x, fit.lengths, show_progress=False)
    train_seconds = time.perf_counter() - started
    dataset = LabelledDataset("fsdd", fit, val, CLASS_NAMES, "validation split", {})
    (result,) = probe_network(learner.network, dataset, config, [[1]], "trained", False)
    return {"trial": trial_id, "settings": trial, "seed": seed, "val_accuracy": round(100 * result.test_accuracy, 2),
            "fit_accuracy": round(100 * result.train_accuracy, 2), "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1), "device": _STATE["device"],
            "holdout": _STATE["holdout"], "features": _STATE["features"]}


def done_jobs(out: Path, holdout: str, features: str = "") -> set[tuple[str, int]]:
    """(settings, seed) of the jobs ``out`` already holds for this hold-out (records without one: random)
    and features file (by name; records without one match any)."""
    if not out.exists():
        return set()
    records = map(json.loads, out.read_text().splitlines())
    return {(json.dumps(r["settings"], sort_keys=True), r["seed"]) for r in records
            if r.get("holdout", "random") == holdout and r.get("features", features) == features}


def run_sweep(args: argparse.Namespace) -> None:
    out = Path(args.out)
    done = done_jobs(out, args.holdout, Path(args.features).name)
    trials = draw_trials(args.trials, args.draw_seed)
    chosen = set(args.only or ([] if args.settings else range(len(trials))))
    for extra in args.settings or []:           # explicit settings, numbered after the drawn trials
        chosen.add(len(trials))
        trials.append(json.loads(extra))
    jobs = [(i, t, s) for s in args.seeds for i, t in enumerate(trials)
            if i in chosen and (json.dumps(t, sort_keys=True), s) not in done]
    gpu_workers = args.workers if args.gpu_workers is None else args.gpu_workers
    where = "cpu" if args.device == "cpu" else f"{min(gpu_workers, args.workers)} on {args.device}, the rest on cpu"
    print(f"{len(jobs)} jobs ({len(trials)} trials x {len(args.seeds)} seeds, {len(done)} already done), "
          f"{args.workers} workers ({where})", flush=True)
    deadline = time.monotonic() + args.deadline if args.deadline else float("inf")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):   # one thread per worker: no
        os.environ[name] = "1"                                                  # oversubscribed cores
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    init_args = (args.features, args.holdout, args.device, gpu_workers, counter)
    with context.Pool(args.workers, _init_worker, init_args) as pool, \
            out.open("a") as sink:
        def record(result: dict) -> None:      # runs in the pool's result thread, as each job ends
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            print(json.dumps(result), flush=True)
        handles = [pool.apply_async(run_job, (job,), callback=record) for job in jobs]
        while not all(h.ready() for h in handles):
            if time.monotonic() > deadline:
                print(f"deadline reached: {sum(not h.ready() for h in handles)} unfinished jobs dropped", flush=True)
                pool.terminate()
                break
            time.sleep(1.0)
        for handle in handles:
            if handle.ready() and not handle.successful():
                handle.get()                    # re-raise a job's error


def summarise(path: str, top: int) -> None:
    groups: dict[str, list[dict]] = {}
    for record in map(json.loads, Path(path).read_text().splitlines()):
        groups.setdefault(json.dumps(record["settings"], sort_keys=True), []).append(record)
    rows = []
    for key, records in groups.items():
        accs = [r["val_accuracy"] for r in records]
        rows.append((statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, len(accs), key,
                     statistics.fmean(r["train_seconds"] for r in records)))
    rows.sort(reverse=True)
    print(f"{'val mean':>8} {'std':>5} {'n':>2} {'train s':>7}  settings (empty: the preset)")
    for mean, std, n, key, seconds in rows[:top]:
        print(f"{mean:8.2f} {std:5.2f} {n:2d} {seconds:7.1f}  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the training recordings' MFCC features to one file")
    export.add_argument("--data-dir", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--trim-db", type=float, help="silence trim in dB (0: none; default: the loader's)")
    run = sub.add_parser("run", help="train and validate (trial, seed) jobs in parallel")
    run.add_argument("--features", required=True, help="file written by `export`")
    run.add_argument("--holdout", choices=["random", "takes"], default="random",
                     help="which 300 training recordings validate: random ones, or takes 5-9 (like the test set's 0-4)")
    run.add_argument("--trials", type=int, default=20)
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    run.add_argument("--only", type=int, nargs="+", help="run these trial numbers only (e.g. the best, at more seeds)")
    run.add_argument("--settings", nargs="+", metavar="JSON",
                     help='explicit settings to run as well, e.g. \'{"lr": 1e-4, "epochs": 10}\'; '
                          '\'{"untrained": true}\' probes the network as initialised')
    run.add_argument("--draw-seed", type=int, default=0, help="seed of the random draw of trials")
    run.add_argument("--workers", type=int, default=max(1, (multiprocessing.cpu_count() or 2) - 1))
    run.add_argument("--device", default="cpu")
    run.add_argument("--gpu-workers", type=int, help="how many workers use --device (default: all); the rest the CPU")
    run.add_argument("--deadline", type=float, help="seconds after which unfinished jobs are dropped")
    run.add_argument("--out", required=True, help="JSONL file the results are appended to")
    summary = sub.add_parser("summary", help="mean validation accuracy per trial, best first")
    summary.add_argument("results")
    summary.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if args.command == "export":
        export_features(args.data_dir, args.out, args.trim_db)
    elif args.command == "run":
        run_sweep(args)
    else:
        summarise(args.results, args.top)


if __name__ == "__main__":
    main()
