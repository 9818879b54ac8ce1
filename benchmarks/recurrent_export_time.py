"""Wall time of exporting the FSDD-sized Bi-RNN to ONNX at 183 frames, float and w8a8 QCDQ, against a limit.

    python benchmarks/recurrent_export_time.py --data-dir ../shared/data

The network is ``fsdd-paper``'s (39 MFCCs, 500 units per direction), untrained and seeded, with a read-out
fitted to its final states by least squares: the cost of an export depends on the frames and the graph's
size, not on what the weights learned. Each direction's recurrent weight is scaled by ``RECURRENT_SCALE``:
at ``nn.RNN``'s initialisation the untrained 8-bit recurrence is chaotic, float32 round-off alone deciding
where its states round (PyTorch in float64 against PyTorch in float32: 43 of 64 FSDD test recordings'
logits apart, by up to 24 output steps, at 54 frames). No runtime can then match PyTorch to one output step,
and the exporter refuses the file however the graph is built (traced whole or from one step, the logits are
the same bit for bit); scaled by 1/8, the recurrence forgets such round-off and the check can pass.

Each export is ``export_onnx`` as ``fwdlearn export`` runs it: the graph built from one traced step
(``fwdlearn/export/recurrent.py``), ``onnx.checker``, parity with PyTorch in onnxruntime (FSDD test
recordings where ``--data-dir`` has them, else random sequences; the row says which), the report. Each
export runs in a fresh Python process, as ``fwdlearn export`` does, timed from the call (modules imported,
network built) to the written file: the exporter's first-trace warm-up and reading the data set count.

Writes ``benchmarks/results/recurrent-export-time.json`` (``--out``): per format the seconds, the limit, the
frames, the graph's nodes, initialisers and bytes, and the exporter's parity figures. Exits 1 if an export
took longer than ``--limit`` seconds. Timings are only comparable on a quiet machine: the load average
before the run is recorded beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fwdlearn.atomic import save_json
from fwdlearn.eval.readout import Readout
from fwdlearn.export import export_onnx
from fwdlearn.export.deployable import Deployable, deployable_from
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.presets import load_preset
from fwdlearn.registry import get_rule
from fwdlearn.run import device_description

HERE = Path(__file__).resolve().parent
PRESET = "fsdd-paper"
FEATURES = 39          # MFCCs per frame
FRAMES = 183           # the longest FSDD training recording the export is unrolled over
LIMIT_SECONDS = 60.0
FORMATS = {"float": QuantConfig(), "qcdq": QuantConfig(weight_bits=8, act_bits=8)}
RECURRENT_SCALE = 0.125   # W_hh of the untrained network (module docstring)


def untrained_deployable(export_format: str, frames: int, seed: int = 0) -> Deployable:
    """``fsdd-paper``'s Bi-RNN, untrained (seed ``seed``, ``W_hh`` scaled by ``RECURRENT_SCALE``), quantised for
    ``qcdq``, with a least-squares read-out of its final states on random sequences (logit range from the same)."""
    config = dataclasses.replace(load_preset(PRESET), quant=FORMATS[export_format], seed=seed)
    rule = get_rule(config.learner)
    encoder = rule.learner.probe_network(rule.learner.build_network(config, FEATURES)).eval()
    with torch.no_grad():
        for direction in encoder.directions:
            direction.recurrent.weight.mul_(RECURRENT_SCALE)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, frames, FEATURES, generator=generator)
    lengths = torch.randint(max(1, frames // 2), frames + 1, (64,), generator=generator)
    x = x * (torch.arange(frames)[None, :, None] < lengths[:, None, None])
    with torch.no_grad():
        features = torch.cat([encoder(x, lengths)[0], torch.ones(64, 1)], dim=1)
    targets = torch.nn.functional.one_hot(torch.arange(64) % 10, 10).float() * 2 - 1
    solution = torch.linalg.lstsq(features, targets).solution.T
    weight, bias = solution[:, :-1].contiguous(), solution[:, -1].contiguous()
    head = Readout(weight=weight, bias=bias, layers=list(config.probe.layers), standardized=config.probe.standardize,
                   dataset=config.data.dataset, class_names=tuple(str(i) for i in range(10)),
                   sample_shape=(frames, FEATURES), test_accuracy=0.0,
                   logit_bound=float((features[:, :-1] @ weight.T + bias).abs().max()))
    return deployable_from(encoder, head, config, sequence_length=frames)


def graph_size(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path))
    return {"nodes": len(model.graph.node), "initialisers": len(model.graph.initializer),
            "initialiser_values": int(sum(_count(i.dims) for i in model.graph.initializer)),
            "bytes": path.stat().st_size}


def _count(dims) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def measure(export_format: str, frames: int, folder: Path) -> dict:
    """Export the network once in this process and describe it (``--measure``: run in a fresh process)."""
    deployable = untrained_deployable(export_format, frames)
    path = folder / f"{export_format}.onnx"
    started, cpu = time.perf_counter(), time.process_time()
    report = export_onnx(deployable, path, export_format)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    check = report["verification"]["onnxruntime"]
    return {"format": export_format, "quantisation": report["quantisation"], "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "graph": {**graph_size(path), "operators": report["operators"]}, "parameters": report["parameters"],
            "macs_per_inference": report["macs_per_inference"]["total"],
            "parity": {k: check[k] for k in ("runtime", "inputs", "samples", "max_abs_difference", "tolerance",
                                             "output_step", "differing_fraction", "same_class")}}


def measure_fresh(export_format: str, frames: int) -> dict:
    """``measure`` in a new Python process, as ``fwdlearn export`` runs: its first trace pays the exporter's
    warm-up (torch's dynamo exporter: several seconds), which a second export in the same process would not."""
    with tempfile.TemporaryDirectory(prefix="recurrent-export-") as folder:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", export_format,
                               "--frames", str(frames), "--folder", folder], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{export_format} export failed:\n{done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--limit", type=float, default=LIMIT_SECONDS, help="seconds an export may take")
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=list(FORMATS))
    parser.add_argument("--data-dir", help="folder holding fsdd/ (else $FWDLEARN_DATA_DIR; else random inputs)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "recurrent-export-time.json")
    parser.add_argument("--measure", choices=sorted(FORMATS), help=argparse.SUPPRESS)   # one export, this process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data_dir:
        os.environ["FWDLEARN_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if args.measure:
        print(json.dumps(measure(args.measure, args.frames, args.folder)))
        return 0
    load = os.getloadavg()
    rows = []
    for export_format in args.formats:
        row = measure_fresh(export_format, args.frames)
        row["within_limit"] = row["seconds"] <= args.limit
        rows.append(row)
        print(f"{export_format}: {row['seconds']:.1f} s for {args.frames} frames (limit {args.limit:g} s), "
              f"{row['graph']['nodes']:,} nodes, {row['graph']['bytes']:,} bytes; parity on "
              f"{row['parity']['inputs']}: max difference {row['parity']['max_abs_difference']:.3g}, "
              f"same class {row['parity']['same_class']}", flush=True)
    document = {
        "kind": "recurrent-export-time", "experiment": f"{PRESET} Bi-RNN export, {args.frames} frames",
        "preset": PRESET, "network": f"{FEATURES}-{load_preset(PRESET).layers[0].width}x2 (untrained, seed 0)",
        "frames": args.frames, "limit_seconds": args.limit, "rows": rows,
        "within_limit": all(r["within_limit"] for r in rows),
        "device": device_description(), "cpus": os.cpu_count(), "load_average_before": [round(v, 2) for v in load],
        "command": " ".join(["python", "benchmarks/recurrent_export_time.py",
                             *(sys.argv[1:] if argv is None else argv)]),
    }
    save_json(document, args.out)
    print(f"wrote {args.out}")
    return 0 if document["within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
