"""Benchmark: what one update costs under SCFF, LAC and back-propagation, against depth and width.

    python benchmarks/update_cost.py                       # CPU: depth 2/4/8 at width 1024, widths at depth 4
    python benchmarks/update_cost.py --device cuda         # the same on a GPU (NVML energy where readable)

Runs ``fwdlearn bench`` twice (a depth sweep and a width sweep, batch 1000 so that activations,
which BP keeps for every layer and a local rule for one, are a visible part of the memory), and
writes ``benchmarks/results/update-cost-<device>.json``, plots beside it in
``benchmarks/results/update-cost-<device>/`` and regenerates ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_figure, save_json  # noqa: E402
from fwdlearn.bench.sweep import run_sweep  # noqa: E402

COLOURS = {"scff": "tab:blue", "lac": "tab:green", "bp": "tab:red"}
LABELS = {"scff": "SCFF (local)", "lac": "LAC (local)", "bp": "back-propagation"}


def plot(rows: list[dict], x_key: str, title: str, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for rule in COLOURS:
        mine = sorted((r for r in rows if r["rule"] == rule), key=lambda r: r[x_key])
        if not mine:
            continue
        xs = [r[x_key] for r in mine]
        style = dict(color=COLOURS[rule], marker="o", label=LABELS[rule])
        axes[0].plot(xs, [r["memory"]["peak_above_resident_bytes"] / 1e6 for r in mine], **style)
        axes[1].plot(xs, [r["memory"]["peak_bytes"] / 1e6 for r in mine], **style)
        axes[2].plot(xs, [r["seconds"]["median"] * 1e3 for r in mine], **style)
    for ax, label in zip(axes, ["tensor memory the update allocates (MB)", "peak tensor memory incl. "
                                "parameters, optimiser state, batch (MB)", "wall time per update (ms, median)"]):
        ax.set_xlabel(x_key)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xticks(sorted({r[x_key] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--depth-width", type=int, default=1024)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--width-depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    command = " ".join(["python", "benchmarks/update_cost.py"] + sys.argv[1:])
    rules = list(COLOURS)
    print(f"== depth sweep, width {args.depth_width}, batch {args.batch}", flush=True)
    depth = run_sweep(rules, args.depths, [args.depth_width], args.batch, repeats=args.repeats, device=args.device)
    print(f"== width sweep, depth {args.width_depth}, batch {args.batch}", flush=True)
    width = run_sweep(rules, [args.width_depth], args.widths, args.batch, repeats=args.repeats, device=args.device)
    name = f"update-cost-{'cuda' if args.device.startswith('cuda') else 'cpu'}"
    figures = args.results / name
    plot(depth["rows"], "depth", f"one update, {args.depth_width} units per layer, batch {args.batch} "
         f"({depth['device']})", figures / "depth.png")
    plot(width["rows"], "width", f"one update, {args.width_depth} hidden layers, batch {args.batch} "
         f"({width['device']})", figures / "width.png")
    document = {"kind": "update-cost", "experiment": name, "command": command, "device": depth["device"],
                "torch": depth["torch"], "date": depth["date"], "batch": args.batch, "repeats": args.repeats,
                "depth_sweep": depth["rows"], "width_sweep": width["rows"]}
    path = save_json(document, args.results / f"{name}.json")
    write_table(args.results)
    print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
