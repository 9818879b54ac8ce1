"""Benchmark: what one update costs under each local rule and back-propagation, against depth and width.

    python benchmarks/update_cost.py                       # CPU: depth 2/4/8 at width 1024, widths at depth 4
    python benchmarks/update_cost.py --device cuda         # the same on a GPU (NVML energy where readable)
    python benchmarks/update_cost.py --rules scff-mlp bp   # some rules only

Runs ``fwdlearn bench`` twice (a depth sweep and a width sweep, batch 1000 so that activations,
which BP keeps for every layer and a local rule for one, are a visible part of the memory) over
every benchable rule of the registry and ``bp``, and writes
``benchmarks/results/update-cost-<device>.json``, plots beside it in
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
from fwdlearn.bench.updates import bench_rules  # noqa: E402
from fwdlearn.registry import report_label, rules  # noqa: E402

BP = "bp"


def style(rule: str, index: int) -> dict:
    """Line colour and legend of a rule: back-propagation red, each local rule its own colour, named by
    the registry (``SCFF (local, scff-mlp)``)."""
    if rule == BP:
        return {"color": "tab:red", "label": "back-propagation"}
    local = rules()[rule].local if rule in rules() else False
    return {"color": f"C{index}" if f"C{index}" != "C3" else "C9",     # C3 is tab:red
            "label": f"{report_label(rule)} ({'local, ' if local else ''}{rule})"}


def plot(rows: list[dict], x_key: str, title: str, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for index, rule in enumerate(dict.fromkeys(r["rule"] for r in rows)):
        mine = sorted((r for r in rows if r["rule"] == rule), key=lambda r: r[x_key])
        xs = [r[x_key] for r in mine]
        line = dict(marker="o", **style(rule, index))
        axes[0].plot(xs, [r["memory"]["peak_above_resident_bytes"] / 1e6 for r in mine], **line)
        axes[1].plot(xs, [r["memory"]["peak_bytes"] / 1e6 for r in mine], **line)
        axes[2].plot(xs, [r["seconds"]["median"] * 1e3 for r in mine], **line)
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
    parser.add_argument("--rules", nargs="+", default=list(bench_rules()), choices=list(bench_rules()),
                        help=f"any of {', '.join(bench_rules())} (default: all)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    command = " ".join(["python", "benchmarks/update_cost.py"] + sys.argv[1:])
    chosen = list(args.rules)
    print(f"== depth sweep, width {args.depth_width}, batch {args.batch}", flush=True)
    depth = run_sweep(chosen, args.depths, [args.depth_width], args.batch, repeats=args.repeats, device=args.device)
    print(f"== width sweep, depth {args.width_depth}, batch {args.batch}", flush=True)
    width = run_sweep(chosen, [args.width_depth], args.widths, args.batch, repeats=args.repeats, device=args.device)
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
