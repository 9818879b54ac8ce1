"""Learning on the device: an SCFF Bi-RNN adapts to a speaker it never heard, in onnxruntime alone.

    python examples/on_device_adaptation.py --data-dir ../shared/data --speaker theo
    python examples/on_device_adaptation.py --data-dir ../shared/data --all-speakers \
        --record benchmarks/results/on-device-adaptation.json

For each held-out speaker:
  1. train ``fsdd-paper`` (SCFF Bi-RNN, section 3.5) on the other five speakers, with its linear read-out;
  2. export the inference model (``model.onnx``) and the update graphs (``fwdlearn export --update``: one per
     recurrent direction, AdamW in the graph, verified against the learner's own steps);
  3. on the device side (``fwdlearn.ondevice.runtime``: numpy and onnxruntime, no torch), adapt the encoder on
     that speaker's *unlabelled* recordings, takes 5-49, with the read-out fixed;
  4. report that speaker's accuracy on takes 0-4 before and after, beside the same adaptation done by the
     PyTorch learner (same batches, same draws), and the seconds per on-device update.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fwdlearn.atomic import save_json
from fwdlearn.data.fsdd import find_fsdd_dir, list_recordings
from fwdlearn.export import export_onnx, load_deployable
from fwdlearn.ondevice.adaptation import accuracy, adapt_in_pytorch, adapt_on_device
from fwdlearn.ondevice.export import export_update, relative_error
from fwdlearn.ondevice.runtime import fit_frames, read_manifest, read_parameters
from fwdlearn.presets import load_preset
from fwdlearn.run import device_description, load_run_dataset, train_run

HELD_OUT_TAKES = range(5)     # the official FSDD test takes: evaluated, never adapted on


def adapt_speaker(speaker: str, args, log=print) -> dict:
    config = load_preset(args.preset)
    layers = [dataclasses.replace(c, epochs=args.epochs or c.epochs) for c in config.layers]
    config = dataclasses.replace(config, name=f"adapt-{speaker}", layers=layers, seed=args.seed,
                                 data=dataclasses.replace(config.data, holdout_speakers=[speaker]),
                                 bptt=dataclasses.replace(config.bptt, epochs=0))
    out = Path(args.out) / speaker
    started = time.perf_counter()
    train_run(config, out, args.data_dir, show_progress=not args.no_progress, log=log)
    train_seconds = time.perf_counter() - started
    checkpoint = out / "checkpoint.pt"
    deployable = load_deployable(checkpoint)
    export_onnx(deployable, out / "model.onnx", "float", None, learnable=True)
    frames = int(deployable.example_inputs[0].shape[1])
    export_update(checkpoint, out, frames=frames, data_dir=args.data_dir, log=lambda line: log(f"  {line}"))

    dataset = load_run_dataset(config, args.data_dir)
    takes = np.array([r.index for r in list_recordings(find_fsdd_dir(Path(args.data_dir))) if r.speaker == speaker])
    test = dataset.test                              # the held-out speaker's recordings, in file-name order
    x, lengths = fit_frames(test.x.numpy(), test.lengths.numpy(), frames)
    y = test.y.numpy()
    held = np.isin(takes, HELD_OUT_TAKES)
    adapt = ~held
    start = read_parameters(out / "update.npz")
    model = out / "model.onnx"
    lr = args.lr                                      # None: each direction's rate at the end of training
    before = accuracy(model, start, x[held], lengths[held], y[held])
    device = adapt_on_device(out / "update.json", x[adapt], lengths[adapt], args.adapt_epochs, args.seed, lr)
    after = accuracy(model, device.parameters, x[held], lengths[held], y[held])
    twin = adapt_in_pytorch(checkpoint, out / "update.json", x[adapt], lengths[adapt], args.adapt_epochs, args.seed, lr)
    deployable.model.encoder.load_state_dict({k: torch.from_numpy(v) for k, v in twin.parameters.items()})
    with torch.no_grad():
        logits = deployable.model(torch.from_numpy(x[held]), torch.from_numpy(lengths[held]))
    after_pytorch = float((logits.argmax(1).numpy() == y[held]).mean())
    differs = max(relative_error(device.parameters[k], twin.parameters[k]) for k in device.parameters)
    row = {"speaker": speaker, "adapted_on": int(adapt.sum()), "evaluated_on": int(held.sum()),
           "updates": len(device.losses), "lr": lr or read_manifest(out / "update.json")["stages"][0]["lr"], "before": before, "after_onnxruntime": after,
           "after_pytorch": after_pytorch, "weights_onnxruntime_vs_pytorch": differs,
           "seconds_per_update_onnxruntime": device.seconds_per_update,
           "seconds_per_update_pytorch": twin.seconds_per_update,
           "loss_first_epoch": _mean_loss(device.losses[:len(device.losses) // args.adapt_epochs]),
           "loss_last_epoch": _mean_loss(device.losses[-(len(device.losses) // args.adapt_epochs):]),
           "train_seconds": train_seconds}
    log(f"{speaker:10s} takes 0-4: {before:.1%} before, {after:.1%} after {row['updates']} on-device updates "
        f"(PyTorch: {after_pytorch:.1%}; weights agree to {differs:.1e}); "
        f"{device.seconds_per_update * 1e3:.1f} ms per on-device update")
    return row


def _mean_loss(losses: list[dict[str, float]]) -> float:
    return float(np.mean([sum(step.values()) for step in losses])) if losses else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding FSDD (recordings/)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--speaker", nargs="+", help="speaker(s) to hold out, one run each")
    who.add_argument("--all-speakers", action="store_true", help="every FSDD speaker in turn")
    parser.add_argument("--preset", default="fsdd-paper")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    parser.add_argument("--adapt-epochs", type=int, default=5, help="passes over the speaker's takes 5-49")
    parser.add_argument("--lr", type=float, help="adaptation learning rate (default: each direction's rate at the "
                                                  "end of training, as update.json records it)")
    parser.add_argument("--out", default="runs/on-device", help="one folder per speaker under it")
    parser.add_argument("--record", type=Path, help="write the rows (and the command) to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ["FWDLEARN_DATA_DIR"] = str(Path(args.data_dir).resolve())   # the exporters verify on real recordings
    speakers = args.speaker or sorted({r.speaker for r in list_recordings(find_fsdd_dir(Path(args.data_dir)))})
    rows = [adapt_speaker(s, args) for s in speakers]
    if args.record:
        save_json({"kind": "on-device-adaptation", "experiment": "on-device-adaptation", "command": "python " + " ".join(sys.argv),
                   "device": device_description(), "preset": args.preset, "epochs": args.epochs,
                   "adapt_epochs": args.adapt_epochs, "rows": rows,
                   "mean": {k: float(np.mean([r[k] for r in rows])) for k in
                            ("before", "after_onnxruntime", "after_pytorch", "seconds_per_update_onnxruntime")}},
                  args.record)
        print(f"recorded: {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
