"""Benchmark: training throughput and peak memory of each layer of a convolutional SCFF preset.

    python benchmarks/conv_throughput.py --device cuda                                   # cifar10-paper, full size
    python benchmarks/conv_throughput.py --preset stl10-paper --device cuda
    python benchmarks/conv_throughput.py --device cpu --batches 2 --width-scale 0.25     # reduced, on a CPU
    python benchmarks/conv_throughput.py --device cuda --backend torch                   # fused (default) vs autograd

Synthetic images in the preset's real shape (cifar10 [N, 3, 32, 32], stl10 [N, 3, 96, 96], mnist
[N, 1, 28, 28], digits [N, 1, 8, 8]) stand in for the data set, so no download is needed. For each
layer in turn, ``--batches`` timed updates of that layer alone (after ``--warmup`` untimed ones) run
exactly as in the sequential schedule: the frozen layers below compute its input without gradients,
then the layer takes its own AdamW step. Reported per layer: images per second, seconds per batch
(median) and the peak tensor memory of one update. CUDA: ``torch.cuda.max_memory_allocated``
(absolute, everything live on the device, and the peak above what was live when the update started);
CPU: the allocator's own allocation events recorded by the torch profiler (``fwdlearn/bench/memory.py``),
the peak above what was live at the start plus the bytes of the network and its optimisers' state.
``--width-scale`` multiplies every layer's channel count (at least 1), for a reduced run on a CPU.
Writes ``benchmarks/results/conv-throughput-<preset>-<device>.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.config import BACKENDS  # noqa: E402
from fwdlearn.bench.memory import optimizer_tensors, peak_tensor_bytes, tensor_bytes  # noqa: E402
from fwdlearn.bench.sweep import check_device, describe_device  # noqa: E402
from fwdlearn.learner import Batch  # noqa: E402
from fwdlearn.presets import check_for_rule, load_preset  # noqa: E402
from fwdlearn.registry import get_rule  # noqa: E402
from fwdlearn.rules.scff import SCFFConvLearner  # noqa: E402

SHAPES = {"cifar10": (3, 32, 32), "stl10": (3, 96, 96), "mnist": (1, 28, 28), "digits": (1, 8, 8)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_layer(learner: SCFFConvLearner, index: int, images: torch.Tensor, batches: int, warmup: int) -> dict:
    """Time ``batches`` updates of layer ``index`` (its parameter group alone, the layers below frozen)
    and measure one update's peak tensor memory."""
    device = learner.device
    batch, active = Batch(images), [f"layer{index + 1}"]
    for _ in range(warmup):
        learner.train_batch(batch, active)
    seconds = []
    for _ in range(batches):
        _sync(device)
        started = time.perf_counter()
        learner.train_batch(batch, active)
        _sync(device)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    entry = {"layer": index + 1, "channels": learner.config.layers[index].width,
             "images_per_second": round(images.shape[0] / median, 1), "seconds_per_batch_median": round(median, 5),
             "seconds_per_batch": [round(s, 5) for s in seconds]}
    above = peak_tensor_bytes(lambda: learner.train_batch(batch, active), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        learner.train_batch(batch, active)
        _sync(device)
        entry["memory"] = {"peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
                           "peak_above_start_bytes": above,
                           "measure": "measured: torch.cuda.max_memory_allocated (absolute) and its rise during "
                                      "one update"}
    else:
        resident = tensor_bytes(list(learner.network.parameters()) + [images]
                                + optimizer_tensors(group.optimizer for group in learner.groups.values()))
        entry["memory"] = {"peak_allocated_bytes": above + resident, "peak_above_start_bytes": above,
                           "measure": "measured: CPU allocator events (torch profiler) during one update, plus the "
                                      "network, optimiser state and batch live before it"}
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10-paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=20, help="timed updates per layer (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates first (default 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per update (default: the preset's)")
    parser.add_argument("--width-scale", type=float, default=1.0, help="multiply every layer's channels by this")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="the local step's backend (default: the preset's); recorded in the file name")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    check_device(args.device)
    device = torch.device(args.device)
    config = load_preset(args.preset)
    rule = get_rule(config.learner)
    if not issubclass(rule.learner, SCFFConvLearner) or config.data.dataset not in SHAPES:
        parser.error(f"{args.preset} is not a convolutional SCFF preset on {', '.join(SHAPES)}")
    for layer in config.layers:
        layer.width = max(1, round(layer.width * args.width_scale))
    config.batch_size = args.batch_size or config.batch_size
    config.backend = args.backend or config.backend
    shape = SHAPES[config.data.dataset]
    learner = rule.learner(check_for_rule(config.validate()), shape, device=device)
    batch = torch.rand(config.batch_size, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    layers = []
    for index in range(len(config.layers)):
        layers.append(measure_layer(learner, index, batch, args.batches, args.warmup))
        print(f"layer {index + 1} ({layers[-1]['channels']} channels): {layers[-1]['images_per_second']:,.1f} images/s, "
              f"peak {layers[-1]['memory']['peak_allocated_bytes'] / 1e6:,.1f} MB")
    device_text = (f"cuda ({describe_device(args.device)})" if device.type == "cuda"
                   else f"cpu, {torch.get_num_threads()} threads")
    experiment = args.preset if args.backend is None else f"{args.preset}-{args.backend}"
    document = {"kind": "conv-throughput", "experiment": experiment, "backend": config.backend,
                "device": device_text, "torch": torch.__version__,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["python", "benchmarks/conv_throughput.py"] + sys.argv[1:]),
                "input_shape": list(shape), "batch_size": config.batch_size, "width_scale": args.width_scale,
                "batches": args.batches, "data": "synthetic (uniform random images of the data set's shape)",
                "layers": layers}
    out = args.out or HERE / "results" / f"conv-throughput-{experiment}-{device.type}.json"
    print(f"results: {save_json(document, out)}")
    if out.parent == HERE / "results":
        write_table(out.parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
