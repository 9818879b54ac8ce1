"""Seconds per on-device update: the exported update graphs in onnxruntime against the learner's own update
(PyTorch, fused backend) on the same batches, measured alternately in one process.

    python benchmarks/on_device_update_time.py runs/on-device/theo --data-dir ../shared/data

``FOLDER`` holds a run exported with ``fwdlearn export --update`` (``update.json``, its checkpoint beside it).
Batches are drawn from the run's training data (the exported batch size; sequences cut or padded to the
exported frames). Writes ``benchmarks/results/on-device-update-<learner>-cpu.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fwdlearn.atomic import save_json
from fwdlearn.ondevice.export import continue_with, device_optimizer, load_learner
from fwdlearn.ondevice.offered import update_stages_for
from fwdlearn.ondevice.runtime import UpdateRunner, draw, fit_frames, read_manifest
from fwdlearn.run import device_description, load_run_dataset

HERE = Path(__file__).resolve().parent


def measure(folder: Path, data_dir: str | None, repeats: int) -> dict:
    manifest = read_manifest(folder / "update.json")
    checkpoint = Path(manifest["checkpoint"])
    payload, rule, learner = load_learner(checkpoint)
    train = load_run_dataset(payload["config"], data_dir).train
    x, lengths = train.x.numpy(), None if train.lengths is None else train.lengths.numpy()
    if lengths is not None:
        x, lengths = fit_frames(x, lengths, manifest["frames"])
    labels = train.y.numpy()
    runner = UpdateRunner(folder / "update.json")
    stages = update_stages_for(rule.name)(learner, sample_shape=tuple(x.shape[1:]), steps=manifest["frames"])
    described = {s["name"]: s for s in manifest["stages"]}
    for stage in stages:
        group = stage.group(learner)
        continue_with(group, device_optimizer(manifest["optimizer"]["name"], group.optimizer), described[stage.name]["lr"])
    rng = np.random.default_rng(0)
    device, torch_side = [], []
    for _ in range(repeats + 2):                                   # the first two warm both sides up
        index = rng.choice(len(x), size=runner.batch_size, replace=False)
        batch = (x[index], None if lengths is None else lengths[index], labels[index])
        started = time.perf_counter()
        runner.step(*batch)
        device.append(time.perf_counter() - started)
        feeds = [draw(described[s.name]["inputs"], rng, *batch) for s in stages]
        started = time.perf_counter()
        for stage, feed in reversed(list(zip(stages, feeds))):
            stage.reference_step(learner, {k: torch.from_numpy(np.asarray(v)) for k, v in feed.items()})
        torch_side.append(time.perf_counter() - started)
    device, torch_side = device[2:], torch_side[2:]
    return {"kind": "on-device-update-time", "learner": rule.name, "folder": str(folder),
            "stages": [s["name"] for s in manifest["stages"]], "batch_size": runner.batch_size,
            "frames": manifest["frames"], "repeats": repeats, "device": device_description(),
            "threads": torch.get_num_threads(),
            "onnxruntime_seconds": device, "pytorch_fused_seconds": torch_side,
            "onnxruntime_median": statistics.median(device), "pytorch_fused_median": statistics.median(torch_side),
            "ratio": statistics.median(device) / statistics.median(torch_side),
            "cost_per_update": manifest["cost_per_update"],
            "command": "python " + " ".join(sys.argv)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    row = measure(args.folder, args.data_dir, args.repeats)
    out = args.out or HERE / "results" / f"on-device-update-{row['learner']}-cpu.json"
    save_json(row, out)
    print(f"{row['learner']}: one update of {', '.join(row['stages'])} (batch {row['batch_size']}): onnxruntime "
          f"{row['onnxruntime_median'] * 1e3:.1f} ms, PyTorch fused {row['pytorch_fused_median'] * 1e3:.1f} ms "
          f"(x{row['ratio']:.2f}); {row['cost_per_update']['macs'] / 1e9:.2f} GMAC -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
