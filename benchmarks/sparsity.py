"""Benchmark: activation sparsity and synaptic operations per inference of trained models, on their full test split.

    python benchmarks/sparsity.py benchmarks/runs/mnist-paper-seed0 benchmarks/runs/mnist-conv-seed0 \\
        benchmarks/runs/fsdd-paper-seed0 --data-dir ../shared/data

Each RUN is a run folder holding ``checkpoint.pt`` (``fwdlearn train``, ``benchmarks/train_preset.py``) or the
checkpoint itself. Every model is measured on every sample of the test split of the data set it was trained
on (``--samples``: fewer, spread over it), by NeuroBench's definitions (``fwdlearn/hardware/sparsity.py``):
per layer the fraction of exactly zero activations (and of the raw input), and the dense and effective
multiply-accumulates per inference (effective: those with a non-zero input and weight; an SCFF layer's
per-sample standardisation folded, so its raw sparse input counts, plus one correction per output unit or
channel). Writes
``benchmarks/results/sparsity.json`` (``--results``: another folder), one entry per model, and regenerates the
folder's ``README.md``. ``--append`` keeps the file's entries of other checkpoints (a model measured again
replaces its entry), so models can be added one run at a time.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_table import write_table  # noqa: E402

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.bench.sparsity import checkpoint_sparsity, sparsity_document, sparsity_table  # noqa: E402
from fwdlearn.errors import FwdlearnError  # noqa: E402


def checkpoint_of(run: Path) -> Path:
    """``run`` itself if it is a file, else its ``checkpoint.pt``."""
    return run if run.is_file() else run / "checkpoint.pt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders (or checkpoint.pt files)")
    parser.add_argument("--data-dir", help="folder holding the data sets (else $FWDLEARN_DATA_DIR)")
    parser.add_argument("--samples", type=int, help="test samples per model, spread over the split (default: all)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--append", action="store_true", help="keep the recorded entries of other checkpoints")
    args = parser.parse_args(argv)
    models = []
    try:
        for run in args.runs:
            models.append(checkpoint_sparsity(checkpoint_of(run), args.data_dir, args.samples))
            print(sparsity_table(models[-1]) + "\n")
    except FwdlearnError as exc:
        print(f"sparsity.py: error: {exc}", file=sys.stderr)
        return 2
    command = "python benchmarks/sparsity.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    target = args.results / "sparsity.json"
    if args.append and target.exists():
        try:
            recorded = json.loads(target.read_text())
            measured = {m["checkpoint"] for m in models}
            models = [m for m in recorded["models"] if m["checkpoint"] not in measured] + models
            command = f"{recorded['command']}; {command}"
        except (ValueError, KeyError, TypeError) as exc:
            print(f"sparsity.py: error: {target}: not a sparsity record to append to ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
            return 2
    path = save_json(sparsity_document(models, command), target)
    print(f"results: {path}; table: {write_table(args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
