"""Benchmark: the seven self-supervised back-propagation baselines on one encoder, each over the same seeds.

    python benchmarks/ssl_baselines.py --preset ssl-mnist --epochs 3 --bp-epochs 3 --data-dir ../shared/data --seeds 0 1 2
    python benchmarks/ssl_baselines.py --preset ssl-fsdd --methods simclr sce --data-dir ../shared/data --seeds 0 1 2

For each method, ``train_preset.py --preset P --method M`` (every seed through ``fwdlearn.run.train_run``),
recorded as ``benchmarks/results/<preset>-<method>.json``; ``--bp-epochs`` trains the supervised BP baseline
on the same encoder beside the first method only (it does not depend on the method). The results table
(``benchmarks/results/README.md``) then shows them beside the local rule whose preset is their encoder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_preset  # noqa: E402

from fwdlearn.baselines.self_supervised import METHODS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True, help="a self-supervised preset (ssl-mnist, ssl-mnist-conv ...)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, help="self-supervised epochs (default: the preset's)")
    parser.add_argument("--bp-epochs", type=int, default=0, help="supervised BP baseline epochs (0: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir")
    args, rest = parser.parse_known_args(argv)
    for index, method in enumerate(args.methods):
        forwarded = ["--preset", args.preset, "--method", method, "--seeds", *map(str, args.seeds),
                     "--bp-epochs", str(args.bp_epochs if index == 0 else 0), *rest]
        forwarded += ["--epochs", str(args.epochs)] if args.epochs else []
        forwarded += ["--data-dir", args.data_dir] if args.data_dir else []
        train_preset.main(forwarded)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
