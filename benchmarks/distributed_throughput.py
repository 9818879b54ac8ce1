"""Training throughput of SCFF on MNIST in 1 and 2 processes (data parallel and layer pipeline), beside BP.

    python benchmarks/distributed_throughput.py --data-dir ../shared/data

The network is ``mnist-paper``'s (784-2000-2000, batch 100, the authors' 2-pixel translations, layer 2 fed by
Algorithm 1) under the simultaneous schedule (every layer steps on every batch, what a pipeline needs), trained
for one epoch on the first ``--samples`` MNIST training images; the BP rows train the same network end to end
(cross-entropy on both layers' features, Adam, as the ``bp`` baseline). Each setting runs in fresh processes
(``torch.multiprocessing``, gloo over loopback), each process with the threads given; the epoch is timed from a
barrier to the last process's end, ``--repeats`` times in the same processes, the median kept.

The limit a 2-process figure is compared with is measured in the same run: twice the throughput of one process
with one thread (linear scaling on 2 cores); beside it, the ratio to one process using every thread (what the
machine gives without any communication: where the 2 cores are one physical core's hyper-threads, that is the
practical ceiling). ``bytes_per_batch`` is what one process hands to collectives or
sends per batch (payload, not counting the ring algorithm's copies): data parallel, every layer's gradient sums
plus SCFF's projections gathered and partner gradient rows summed; pipeline, the pairs stage 0 sends forward;
BP data parallel, the whole network's gradient sum. Writes ``benchmarks/results/distributed-throughput-cpu.json``
and regenerates the results README. Timings are only comparable on a quiet machine (the load average before
the run is recorded beside them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fwdlearn.atomic import save_json  # noqa: E402

SETTINGS = [  # name, rule, processes, threads per process, parallel
    ("scff, 1 process, 1 thread", "scff", 1, 1, None),
    ("scff, 1 process, 2 threads", "scff", 1, 2, None),
    ("scff, 2 processes, data parallel", "scff", 2, 1, "data"),
    ("scff, 2 processes, layer pipeline", "scff", 2, 1, "pipeline"),
    ("bp, 1 process, 1 thread", "bp", 1, 1, None),
    ("bp, 1 process, 2 threads", "bp", 1, 2, None),
    ("bp, 2 processes, data parallel", "bp", 2, 1, "data"),
]


def _config():
    from fwdlearn.presets import load_preset
    config = load_preset("mnist-paper")
    config.schedule = "simultaneous"
    for layer in config.layers:
        layer.epochs = 1
    return config


def _learner(rule: str, data_dir: str, samples: int):
    from fwdlearn.baselines.end_to_end import EndToEndLearner
    from fwdlearn.config import BPTTConfig
    from fwdlearn.data import load_dataset
    from fwdlearn.rules.scff import SCFFLearner

    config = _config()
    dataset = load_dataset("mnist", data_dir)
    x, y = dataset.train.x[:samples], dataset.train.y[:samples]
    if rule == "scff":
        return SCFFLearner(config, dataset.num_features), x, None
    network = SCFFLearner.build_network(config, dataset.num_features)

    def features(batch):
        return torch.cat(network(batch.x), 1)
    width = sum(layer.width for layer in config.layers)
    bp = BPTTConfig(epochs=1, batch_size=config.batch_size, lr=1e-3, grad_clip=0.0)
    return EndToEndLearner(network, features, width, dataset.num_classes, bp), x, y


def _run(rank: int, world: int, setting: tuple, data_dir: str, samples: int, repeats: int, folder: str) -> None:
    from fwdlearn.distributed import DataParallel, Processes
    from fwdlearn.distributed.pipeline import LayerPipeline

    name, rule, _, threads, parallel = setting
    torch.set_num_threads(threads)
    if world > 1:
        from fwdlearn.distributed.launch import loopback_only
        os.environ.update(loopback_only())
        dist.init_process_group("gloo", init_method=f"file://{folder}/store-{SETTINGS.index(setting)}", rank=rank,
                                world_size=world)
    seconds, sent, batches = [], [], 0
    for _ in range(repeats + 1):                         # the first epoch warms up (allocations, threads)
        learner, x, y = _learner(rule, data_dir, samples)
        if parallel == "data":
            learner.distribute(DataParallel(Processes(rank, world, "gloo")))
        elif parallel == "pipeline":
            LayerPipeline(learner, Processes(rank, world, "gloo"))
        if world > 1:
            dist.barrier()
        started = time.perf_counter()
        learner.train(x, None, y, show_progress=False)
        if world > 1:
            dist.barrier()
        seconds.append(time.perf_counter() - started)
        counter = learner.pipeline or learner.data_parallel
        sent.append(counter.bytes if counter is not None else 0)
        batches = len(learner.epoch_batches(len(x), None))
    if rank == 0:
        torch.save({"seconds": seconds[1:], "bytes": sent[1:], "batches": batches}, Path(folder) / f"{name}.pt")
    if world > 1:
        dist.destroy_process_group()


def measure(setting: tuple, data_dir: str, samples: int, repeats: int, folder: str) -> dict:
    name, rule, world, threads, parallel = setting
    mp.start_processes(_run, args=(world, setting, data_dir, samples, repeats, folder), nprocs=world,
                       start_method="spawn")
    got = torch.load(Path(folder) / f"{name}.pt", weights_only=True)
    median = statistics.median(got["seconds"])
    per_batch = got["bytes"][0] / got["batches"]
    return {"setting": name, "rule": rule, "processes": world, "threads_per_process": threads,
            "parallel": parallel or "none", "samples": samples, "seconds": [round(s, 3) for s in got["seconds"]],
            "samples_per_second": round(samples / median, 1), "bytes_per_batch": int(per_batch)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding mnist/")
    parser.add_argument("--samples", type=int, default=3000, help="training images per epoch (default 3000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per setting (median kept)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "distributed-throughput-cpu.json")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for setting in SETTINGS:
            rows.append(measure(setting, args.data_dir, args.samples, args.repeats, folder))
            print(f"{rows[-1]['setting']:36s} {rows[-1]['samples_per_second']:8.1f} samples/s  "
                  f"{rows[-1]['bytes_per_batch'] / 1e6:7.2f} MB per batch", flush=True)
    for rule in ("scff", "bp"):
        one = next(r for r in rows if r["rule"] == rule and r["processes"] == 1 and r["threads_per_process"] == 1)
        both = next(r for r in rows if r["rule"] == rule and r["processes"] == 1 and r["threads_per_process"] == 2)
        limit = 2 * one["samples_per_second"]
        for r in rows:
            if r["rule"] == rule and r["processes"] == 2:
                r["limit_samples_per_second"] = round(limit, 1)
                r["fraction_of_limit"] = round(r["samples_per_second"] / limit, 3)
                r["against_one_process_all_threads"] = round(r["samples_per_second"] / both["samples_per_second"], 3)
    document = {"kind": "distributed-throughput", "experiment": "mnist-paper 784-2000-2000, simultaneous, batch 100",
                "device": "cpu", "cores": os.cpu_count(), "load_average_before": round(load, 2),
                "command": "python benchmarks/distributed_throughput.py " + " ".join(argv or sys.argv[1:]),
                "limit": "2 processes against twice one process with one thread (linear scaling)", "rows": rows}
    print(f"results: {save_json(document, args.out)}")
    from make_table import write_table
    write_table(args.out.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
