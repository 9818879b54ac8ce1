"""The ``fwdlearn`` command: train, evaluate, export, benchmark an update, and list presets.

Every user error (missing data, corrupt file, invalid preset value) ends with one line,
``fwdlearn: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .config import BACKENDS
from .data import DATA_DIR_ENV, DATASETS
from .data.batching import BATCHING
from .distributed.processes import LAUNCHED_ENV, LOST_CONTACT, launched_by_torchrun
from .errors import ConfigError, FwdlearnError
from .presets import check_for_rule, load_preset, preset_names
from .baselines.self_supervised import METHODS as SELF_SUPERVISED_METHODS
from .bench.updates import bench_rules
from .registry import default_preset, rules

# Each option that overrides a preset value, and the config field it sets ("*" : every layer's).
OVERRIDES = {"dataset": "data.dataset", "holdout_speakers": "data.holdout_speakers", "batching": "data.batching",
             "bptt_epochs": "bptt.epochs", "bp_epochs": "bp.epochs", "finetune_epochs": "finetune.epochs",
             "target": "target", "seed": "seed", "probe_epochs": "probe.epochs", "schedule": "schedule",
             "method": "method", "weight_bits": "quant.weight_bits", "act_bits": "quant.act_bits", "per_channel": "quant.per_channel",
             "backend": "backend"}

def epilog() -> str:
    """Examples for ``--help``: one line per registered rule, then the other commands."""
    lines = ["examples:"]
    for name, rule in rules().items():
        lines.append(f"  fwdlearn train {name:<33} # {rule.presets[None]} preset: {rule.summary}")
    lines += [
        "  fwdlearn train scff-mlp --preset mnist-paper --data-dir ../shared/data",
        "  fwdlearn train scff-rnn --dataset fsdd --data-dir ../shared/data   # spoken digits (Table F.4)",
        "  fwdlearn eval runs/digits/checkpoint.pt          # probe a saved network again",
        "  fwdlearn export runs/digits/checkpoint.pt        # ONNX of network + read-out, checked in onnxruntime",
        "  fwdlearn bench --depth 2 4 8                     # time, memory, MACs, energy of one update per rule",
        "  fwdlearn bench --checkpoint runs/digits/checkpoint.pt   # activation sparsity, effective MACs on test data",
        "  fwdlearn tune digits --space space.toml --trials 20   # Optuna search on validation, test read once",
        "  fwdlearn presets                                 # what each preset runs",
        "",
        f"Data sets that are not embedded are read from --data-dir or ${DATA_DIR_ENV}.",
        "An interrupted run resumes when the same command is run again (use --fresh to restart).",
    ]
    return "\n".join(lines) + "\n"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwdlearn", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog(),
        description="Forward-only, layer-local learning: train networks with rules a chip could run "
                    "(no backward pass across layers), then read them out with a linear probe.")
    parser.add_argument("--version", action="version", version=f"fwdlearn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a network with a local learning rule",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog(),
                                description="Train with a local rule, evaluate with a linear probe beside an "
                                            "untrained network and the raw inputs, write results.json and plots.")
    found = rules()
    train.add_argument("learner", choices=list(found), metavar="LEARNER",
                       help="; ".join(f"{name}: {rule.summary} (default preset {rule.presets[None]})"
                                      for name, rule in found.items()))
    train.add_argument("--preset",
                       help=f"shipped preset ({', '.join(preset_names())}) or a TOML file (default: the learner's "
                            f"embedded preset; with --dataset, that data set's paper preset)")
    train.add_argument("--dataset", choices=list(DATASETS),
                       help="data set (default: the preset's); alone, picks that data set's paper preset")
    train.add_argument("--holdout-speakers", nargs="+", metavar="NAME",
                       help="fsdd: test on all recordings of these speakers instead of the official split")
    train.add_argument("--bptt-epochs", type=int, help="scff-rnn: epochs of the BPTT baseline (0 skips it)")
    train.add_argument("--batching", choices=list(BATCHING),
                       help="scff-rnn: random batches, or batches of similar-length sequences (less padding)")
    train.add_argument("--target", choices=["reconstruct", "flip"],
                       help="lac: reconstruct the input, or its left-right mirror image")
    train.add_argument("--bp-epochs", type=int,
                       help="lac: epochs of the BP autoencoder baseline; scff-mlp and ssl-*: epochs of the supervised "
                            "BP baseline, the same network trained end to end (0 skips either)")
    train.add_argument("--finetune-epochs", type=int, help="lac: fine-tuning epochs (0 skips fine-tuning)")
    train.add_argument("--method", choices=list(SELF_SUPERVISED_METHODS),
                       help="ssl-mlp, ssl-cnn, ssl-rnn: the self-supervised method trained by back-propagation")
    train.add_argument("--weight-bits", type=int, metavar="BITS",
                       help="quantisation-aware training with BITS-bit weights (2-8; 0 = float)")
    train.add_argument("--act-bits", type=int, metavar="BITS",
                       help="each layer's input rounded to BITS bits (2-8; 0 = float)")
    train.add_argument("--per-channel", action="store_true",
                       help="one weight scale per output unit or channel instead of one per layer")
    train.add_argument("--data-dir", help=f"folder holding the data set (default: ${DATA_DIR_ENV})")
    train.add_argument("--out", type=Path, help="run directory (default: runs/<preset name>)")
    train.add_argument("--seed", type=int, help="random seed (overrides the preset)")
    train.add_argument("--epochs", type=int, help="unsupervised epochs for every layer (overrides the preset)")
    train.add_argument("--probe-epochs", type=_positive_int,
                       help="linear-probe epochs (overrides the preset)")
    train.add_argument("--schedule", choices=["sequential", "simultaneous"],
                       help="sequential: each layer trained then frozen; simultaneous: all layers at once")
    train.add_argument("--backend", choices=BACKENDS,
                       help="how a local step computes its gradient: fused (default; closed form, one kernel "
                            "between the projection and the weight-gradient product, no autograd graph) or torch "
                            "(autograd, the reference; equal to float rounding)")
    train.add_argument("--threads", type=_positive_int, help="CPU threads for PyTorch (default: all cores)")
    train.add_argument("--device", help="cpu (default) or cuda: where the rule trains and computes the probe's "
                                        "features (the probe itself runs on the CPU); cuda: "
                                        + ", ".join(n for n, r in found.items() if "cuda" in r.devices))
    train.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--nproc", type=_positive_int, default=1,
                       help="train in N processes on this machine (what 'torchrun --nproc-per-node N -m fwdlearn "
                            "train ...' starts; for several machines use torchrun, see README)")
    train.add_argument("--parallel", choices=["data", "pipeline"], default="data",
                       help="with several processes: data (default; each trains on its rows of every batch, "
                            "gradients summed per layer; every rule) or pipeline (each trains a contiguous stage of "
                            "SCFF layers under the simultaneous schedule; pairs travel forward only)")

    evaluate = commands.add_parser("eval", help="probe a saved checkpoint again",
                                   description="Reload a checkpoint, train the linear probe on its frozen features "
                                               "and report per-layer and combined test accuracy.")
    evaluate.add_argument("checkpoint", type=Path, help="checkpoint.pt written by 'fwdlearn train'")
    evaluate.add_argument("--data-dir", help=f"folder holding the data set (default: ${DATA_DIR_ENV})")
    evaluate.add_argument("--out", type=Path, help="where results.json goes (default: <checkpoint dir>/eval)")
    evaluate.add_argument("--no-baselines", action="store_true", help="skip the untrained and raw-input probes")
    evaluate.add_argument("--threads", type=_positive_int, help="CPU threads for PyTorch")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")

    export = commands.add_parser(
        "export", help="export a trained network and its read-out to ONNX (float, QCDQ, QONNX), verified",
        description="Join a finished run's encoder to its trained linear read-out (readout.pt beside the "
                    "checkpoint) and write ONNX with the preprocessing in its metadata: float (dynamic batch) "
                    "for float models; QCDQ (dynamic batch) or QONNX (batch 1) for quantised ones. Before the "
                    "file is written it must pass onnx.checker (full check) and give PyTorch's logits in "
                    "onnxruntime (QONNX: qonnx's executor): max abs difference <= 1e-4 for float models, one "
                    "step of the 8-bit output grid for quantised ones. A report (<name>.report.json: "
                    "operators, parameters, bytes, MACs per inference) goes beside it. Needs the export extras "
                    "(pip install 'fwdlearn[export]'; quantised models: 'fwdlearn[hardware]').")
    export.add_argument("checkpoint", type=Path, help="checkpoint.pt of a finished 'fwdlearn train' run")
    export.add_argument("--out", type=Path, help="the .onnx file (default: model.onnx beside the checkpoint)")
    export.add_argument("--readout", type=Path,
                        help="read-out file (default: readout.pt beside the checkpoint, else eval/readout.pt)")
    export.add_argument("--format", choices=["float", "qcdq", "qonnx"],
                        help="float ONNX (float models; the default for them), QCDQ (quantised models, run by "
                             "onnxruntime and most runtimes; their default) or QONNX (quantised, for FINN/hls4ml)")
    export.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default: 18): float from 13, qcdq from 18, each up to the newest "
                             "the installed torch exporter writes; qonnx takes none (Brevitas chooses)")
    export.add_argument("--hls4ml", action="store_true",
                        help="with --format qonnx: also convert with hls4ml, compile its C++ model (g++) and check "
                             "it against PyTorch (QONNX MLPs: the LAC-MLP encoder)")
    export.add_argument("--sequence-length", type=_positive_int,
                        help="scff-rnn: frames the graph is unrolled for (default: the longest training sequence)")
    export.add_argument("--update", action="store_true",
                        help="also export the local update itself, one ONNX graph per trainable stage (inference "
                             "operators only: batch, parameters, optimiser state, step, lr in; new parameters and "
                             "state out), verified against the learner's own steps in onnxruntime; with "
                             "update.npz and the manifest update.json beside the model, for on-device learning "
                             "(fwdlearn.ondevice.runtime drives them with numpy alone)")
    export.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                        help="with --update: the optimiser in the update graph (default: adamw, the learner's own)")
    export.add_argument("--lr", type=float,
                        help="with --update: the learning rate recorded in update.json (default: each stage's "
                             "rate at the end of training); the graphs take it as an input")

    bench = commands.add_parser(
        "bench", help="measure what one learning update costs: time, memory, MACs, energy (every rule, BP)",
        description="Build the same fully connected encoder (DEPTH hidden layers of WIDTH units on INPUT_DIM "
                    "inputs) for each rule and measure one training update on a fixed batch: wall time "
                    "(median and quartiles over --repeats), peak tensor memory (CUDA allocator peak; on the "
                    "CPU the allocator's own events, recorded by the torch profiler), MACs counted from the "
                    "operations the update runs (forward, weight gradients, input gradients), energy modelled "
                    "from hardware/energy.py (Horowitz 2014, fp32 and int8) and measured where a counter exists "
                    "(NVML on NVIDIA GPUs, RAPL on Linux CPUs). Rules: " + "; ".join(
                        f"{name} ({doc})" for name, doc in bench_rules().items()) + ". "
                    "With --checkpoint, instead: a trained run's inference on the real test split of its data "
                    "set: per layer the activation sparsity (fraction of exactly zero outputs, and of the raw "
                    "input) and the multiply-accumulates per inference, dense (every product) and effective "
                    "(those with a non-zero input and weight, NeuroBench's Effective_MACs; an SCFF layer's "
                    "per-sample standardisation folded, so the raw sparse input counts, plus one correction per "
                    "output unit or channel), beside the effective count on the standardised input the literal "
                    "graph multiplies. The sweep's untrained encoders on a uniform random batch have no zeros to "
                    "count, so it reports none.")
    bench.add_argument("--rules", nargs="+", default=list(bench_rules()), metavar="RULE",
                       help=f"any of {', '.join(bench_rules())} (default: all)")
    bench.add_argument("--depth", nargs="+", type=_positive_int, default=[2, 4, 8], help="hidden layers (default: 2 4 8)")
    bench.add_argument("--width", nargs="+", type=_positive_int, default=[512], help="units per layer (default: 512)")
    bench.add_argument("--batch", type=_positive_int, default=100, help="samples per update (default: 100)")
    bench.add_argument("--input-dim", type=_positive_int, default=784, help="input features (default: 784)")
    bench.add_argument("--repeats", type=_positive_int, default=20, help="timed updates (default: 20)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    bench.add_argument("--out", type=Path, help="write the results as JSON to this file")
    bench.add_argument("--threads", type=_positive_int, help="CPU threads for PyTorch")
    bench.add_argument("--checkpoint", type=Path,
                       help="instead of the update sweep: measure this trained run (checkpoint.pt) on its test "
                            "split: activation sparsity per layer, dense and effective MACs per inference "
                            "(NeuroBench definitions); prints a table, --out writes JSON")
    bench.add_argument("--data-dir", help=f"with --checkpoint: folder holding the data set (else ${DATA_DIR_ENV}; "
                                          f"the embedded digits and sequences need none)")
    bench.add_argument("--samples", type=_positive_int,
                       help="with --checkpoint: test samples, spread over the split (default: all)")

    tune = commands.add_parser(
        "tune", help="search a preset's hyper-parameters with Optuna on a validation split, then test the best once",
        description="An Optuna study (TPE sampler) over the values SPACE.toml names, each trial scored by the "
                    "rule's linear probe on a validation split carved from the training data (FSDD: takes 5-9 of "
                    "the training recordings; otherwise --validation of the training samples per class). The "
                    "test split is sealed while the study runs; afterwards the best settings are trained on the "
                    "whole training set and tested once. The study lives in Optuna's RDB storage (default: an "
                    "SQLite file in --out), so running the same command again resumes it, and workers on other "
                    "machines can share it (--storage postgresql://user:password@host/db). Writes study.json, "
                    "best.toml (a preset), history.png and importances.png. Needs 'fwdlearn[tune]'.",
        epilog='SPACE.toml, one line per value (dotted preset keys, "*" = every layer):\n'
               '  "layers.0.lr" = { low = 1e-4, high = 1e-2, log = true }\n'
               '  "layers.*.penalty" = { low = 0.0, high = 0.02 }\n'
               '  "layers.0.epochs" = { low = 5, high = 20, int = true }\n'
               '  "data.negatives" = { choices = [1, 2] }',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("preset", help="a shipped preset (fwdlearn presets) or a preset TOML file")
    tune.add_argument("--space", type=Path, required=True, help="the search space (TOML, see below)")
    tune.add_argument("--trials", type=_positive_int, required=True,
                      help="trials the study should have completed (a resumed study runs only the missing ones)")
    tune.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    tune.add_argument("--workers", type=_positive_int, default=1,
                      help="worker processes sharing the study (each with cores / workers threads)")
    tune.add_argument("--validation", type=float, default=0.1,
                      help="fraction of the training samples per class held out for validation (not FSDD)")
    tune.add_argument("--seed", type=int, default=0, help="the samplers' seed")
    tune.add_argument("--data-dir", help=f"folder holding the data set (else ${DATA_DIR_ENV})")
    tune.add_argument("--out", type=Path, help="output folder (default: runs/tune-PRESET)")
    tune.add_argument("--stale-after", type=float, default=120.0,
                      help="seconds without a heartbeat after which a trial whose worker was killed is failed and "
                           "run again with the same settings (default 120)")
    tune.add_argument("--pruner", choices=("median", "none"), default="median",
                      help="median (default): after every epoch a trial is scored by a closed-form ridge read-out "
                           "on validation and stopped when below the median of earlier trials at that epoch; "
                           "none: every trial runs to the end")
    tune.add_argument("--no-final", action="store_true", help="stop after the study: do not train the best on the "
                                                              "whole training set nor read the test split")

    commands.add_parser("presets", help="list the shipped presets")
    return parser


def _choose_preset(args) -> str:
    return args.preset or default_preset(args.learner, args.dataset)


def _set_path(config, path: str, value, option: str) -> None:
    """Set ``config.<path>`` (dotted) to ``value``; a one-line error if the rule's config has no such field."""
    *parents, name = path.split(".")
    target = config
    for part in parents:
        target = getattr(target, part, None)
    if target is None or not hasattr(target, name):
        raise ConfigError(f"--{option.replace('_', '-')} does not apply to {config.learner}")
    setattr(target, name, value)


def set_epochs(config, epochs: int) -> None:
    """``--epochs``: every layer's epochs where the rule has layers of their own, else the rule's ``epochs``."""
    if epochs < 1:
        raise ConfigError(f"--epochs must be >= 1 (0 would report an untrained network), got {epochs}")
    layers = getattr(config, "layers", None)
    if layers and hasattr(layers[0], "epochs"):
        for layer in layers:
            layer.epochs = epochs
    else:
        _set_path(config, "epochs", epochs, "epochs")


def _apply_overrides(config, args):
    if config.learner != args.learner:
        raise ConfigError(f"preset {args.preset} is for {config.learner}, not {args.learner}")
    for option, path in OVERRIDES.items():
        value = getattr(args, option)
        if value is not None and value is not False and value != []:   # 0 is a value (--seed 0, --bp-epochs 0)
            _set_path(config, path, list(value) if isinstance(value, list) else value, option)
    if args.epochs is not None:
        set_epochs(config, args.epochs)
    return check_for_rule(config.validate(f"preset {args.preset}"), f"preset {args.preset}")


def _set_threads(threads: int | None) -> None:
    """``--threads``: PyTorch's threads and the Numba kernels' (the linear probe)."""
    if threads:
        import numba
        import torch
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        for name in preset_names():
            print(f"{name:16s} {load_preset(name).description}")
        return 0
    _set_threads(getattr(args, "threads", None))
    if args.command == "train":
        from .run import train_run
        args.preset = _choose_preset(args)
        config = _apply_overrides(load_preset(args.preset), args)
        out = args.out or Path("runs") / config.name
        if args.nproc > 1 and not launched_by_torchrun():
            from .distributed.launch import launch
            if args.parallel == "pipeline":
                from .distributed.pipeline import check_pipeline
                check_pipeline(config, args.nproc, rules()[config.learner].learner)
            return launch(_without_nproc(argv if argv is not None else sys.argv[1:]), args.nproc, str(out))
        train_run(config, out, args.data_dir, fresh=args.fresh, show_progress=not args.no_progress,
                  device=args.device or "cpu", parallel=args.parallel)
        return 0
    if args.command == "export":
        return _export(args)
    if args.command == "bench":
        return _bench(args)
    if args.command == "tune":
        from .tune.study import run_study
        out = args.out or Path("runs") / f"tune-{Path(args.preset).stem}"
        report = run_study(args.preset, args.space, args.trials, out, args.storage, args.workers, args.data_dir,
                           args.seed, args.validation, stale_after=args.stale_after, final=not args.no_final,
                           prune=args.pruner)
        best = report["best"]
        print(f"best trial {best['number']}: validation {best['validation_accuracy']:.2%}; preset {out / 'best.toml'}"
              + (f"; test {report['test']['test_accuracy']:.2%}" if "test" in report else "")
              + f"; study {out / 'study.json'}")
        return 0
    from .run import evaluate_checkpoint
    evaluate_checkpoint(args.checkpoint, args.data_dir, args.out, show_progress=not args.no_progress,
                        baselines=not args.no_baselines)
    return 0


def _export(args) -> int:
    try:
        from .export import export_onnx, load_deployable, report_path
    except ImportError as exc:
        raise ConfigError(f"export needs the export extras ({exc.name} is missing): "
                          f"pip install 'fwdlearn[export]'") from None
    deployable = load_deployable(args.checkpoint, args.readout, sequence_length=args.sequence_length)
    out = args.out or args.checkpoint.parent / "model.onnx"
    learnable = args.update and not deployable.quantised   # a quantised graph's weights are int8, folded at export
    report = export_onnx(deployable, out, args.format, args.opset, hls4ml=args.hls4ml, learnable=learnable)
    check = report["verification"].get("onnxruntime") or report["verification"]["qonnx"]
    print(f"wrote {out} ({report['format']}, {report['model_bytes']:,} bytes, opset {report['opset']}, "
          f"{report['parameters']:,} parameters, {report['macs_per_inference']['total']:,} MACs per inference)")
    print(f"  verified: onnx.checker full check; {check['runtime']} matches PyTorch to "
          f"{check['max_abs_difference']:.1e} (tolerance {check['tolerance']:.1e}; "
          + (f"PyTorch one sample at a time: {check['pytorch_one_at_a_time']['differing_fraction']:.1%} of logits "
             f"off its batched level; " if "pytorch_one_at_a_time" in check else "")
          + (f"{check['differing_fraction']:.1%} of logits off PyTorch's level; " if check["output_step"] else "")
          + f"same class {check['same_class']}) on {check['inputs']}")
    if "hls4ml" in report["verification"]:
        hls = report["verification"]["hls4ml"]
        print(f"  {hls['runtime']}: matches PyTorch to {hls['max_abs_difference']:.1e} on {hls['samples']} samples "
              f"(one output step {hls['tolerance']:.1e}; same class {hls['same_class']})")
    print(f"  operators: {', '.join(f'{k} {v}' for k, v in report['operators'].items())}")
    print(f"  report: {report_path(out)}")
    if args.update:
        from .ondevice.export import export_update
        frames = deployable.example_inputs[0].shape[1] if deployable.is_sequence else None
        update = export_update(args.checkpoint, out.parent, args.optimizer, args.lr, frames=frames,
                               log=lambda line: print(f"  {line}"))
        cost = update.report["cost_per_update"]
        print(f"  on-device update: {update.manifest} ({len(update.report['stages'])} stages; one update of "
              f"every stage {cost['macs']:,} MACs, {cost['bytes_in_out']:,} bytes in and out, "
              f"{cost['energy']['arithmetic_joules']['fp32'] * 1e3:.3f} mJ fp32 arithmetic modelled)")
        if deployable.quantised:
            print(f"  note: {out.name} holds the trained weights as int8 initialisers; the update graphs step the "
                  f"float weights (update.npz), which a device quantises again to run inference")
    elif args.optimizer != "adamw" or args.lr is not None:
        raise ConfigError("--optimizer and --lr apply to --update only")
    return 0


def _check_json_out(path: Path, option: str) -> None:
    """Before any work: ``path`` can be written as a ``.json`` file (its folder need not exist yet)."""
    from .atomic import folder_problem

    if path.suffix != ".json":
        raise ConfigError(f"{option} {path}: the results file must end in .json")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; name a .json file")
    problem = folder_problem(path.parent)
    if problem:
        raise ConfigError(f"{option} {path}: {problem}")


def _bench(args) -> int:
    from .atomic import save_json
    from .bench.sweep import run_sweep

    if args.batch < 2:
        raise ConfigError(f"--batch must be >= 2, got {args.batch}")
    if args.out:
        _check_json_out(args.out, "--out")
    if args.checkpoint:
        return _bench_sparsity(args)
    if args.data_dir or args.samples:
        raise ConfigError("--data-dir and --samples apply to --checkpoint only")
    document = run_sweep(args.rules, args.depth, args.width, args.batch, args.input_dim, args.repeats, args.device)
    if args.out:
        print(f"results: {save_json(document, args.out)}")
    return 0


def _bench_sparsity(args) -> int:
    from .atomic import save_json
    from .bench.sparsity import checkpoint_sparsity, sparsity_document, sparsity_table

    entry = checkpoint_sparsity(args.checkpoint, args.data_dir, args.samples)
    print(sparsity_table(entry))
    if args.out:
        command = f"fwdlearn bench --checkpoint {args.checkpoint}" + "".join(
            f" --{option.replace('_', '-')} {getattr(args, option)}" for option in ("data_dir", "samples")
            if getattr(args, option))
        print(f"results: {save_json(sparsity_document([entry], command), args.out)}")
    return 0


def torch_distributed_errors() -> tuple[type, ...]:
    """What a collective raises when a peer process died (only when this run is one of several processes)."""
    if not launched_by_torchrun():
        return ()
    import torch.distributed as dist
    return (dist.DistError, RuntimeError)


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line each process runs: the same, less ``--nproc N``."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else None
    try:
        return run(argv)
    except FwdlearnError as exc:
        if not rank:                       # every process refuses the same input: rank 0 says it
            print(f"fwdlearn: error: {exc}", file=sys.stderr)
        return 2
    except torch_distributed_errors() as exc:
        if not os.environ.get(LAUNCHED_ENV):    # under --nproc the launcher names the process that died
            print(f"fwdlearn: error: rank {rank}: lost contact with another process "
                  f"({str(exc).splitlines()[0][:160]})", file=sys.stderr)
        return LOST_CONTACT
    except KeyboardInterrupt:
        print("fwdlearn: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
