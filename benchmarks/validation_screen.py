"""Benchmark: one-change-at-a-time variants of a layer-wise preset, scored on the validation split.

    python benchmarks/validation_screen.py --preset mnist-paper --variants benchmarks/screens/mnist-paper.toml \
        --data-dir ../shared/data

Where one ``fwdlearn tune`` trial of a deep preset costs ten minutes on two cores, a screen asks cheaper
questions: does this one value move the validation accuracy by more than its noise? The variants file lists
``[[variant]]`` tables, each with a ``name``, the preset values it ``set``s (dotted paths as in a search space,
``"data.translate" = 3``, ``"layers.1.lr_decay" = 0.9``), an optional ``layers = K`` (train and read out the
first K layers only) and an optional ``seed``. In a preset trained layer after layer, variants that differ only
in their deeper layers' settings train the first layer once; each trains its own deeper layers on it from the
same random state, as a run of its settings would.

Every variant trains on the training split minus the validation split of ``fwdlearn tune`` (10 % of each
class, seed 0) with the test split sealed (reading it raises), and is scored by the preset's linear probe on
the validation split: all its layers together and each layer alone. Results go to
``benchmarks/results/<preset>-screen.json`` after every variant; a rerun skips the variants already recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import tomllib
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fwdlearn.atomic import save_json  # noqa: E402
from fwdlearn.errors import FwdlearnError  # noqa: E402
from fwdlearn.eval.report import probe_network  # noqa: E402
from fwdlearn.preset_files import read_preset  # noqa: E402
from fwdlearn.presets import config_from_dict  # noqa: E402
from fwdlearn.registry import get_rule  # noqa: E402
from fwdlearn.run import load_run_dataset  # noqa: E402
from fwdlearn.tune.space import apply, preset_value  # noqa: E402
from fwdlearn.tune.validation import carve, sealed_test_split  # noqa: E402


def variant_values(base: dict, variant: dict) -> dict:
    """The preset's values with the variant's changes, cut to its first ``layers`` layers."""
    values = apply(base, variant.get("set", {}))
    if "seed" in variant:
        values["seed"] = variant["seed"]
    keep = variant.get("layers", len(values["layers"]))
    values["layers"] = values["layers"][:keep]
    values.setdefault("probe", {})["layers"] = list(range(1, keep + 1))
    return values


def checked_variants(path: Path, base: dict) -> list[tuple[dict, dict]]:
    """The variants of ``path`` with their preset values, each a valid config of the preset: a bad name, path or
    value is one line, before anything trains."""
    try:
        variants = tomllib.loads(path.read_text())["variant"]
        names = [v["name"] for v in variants]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise FwdlearnError(f"{path}: not a list of [[variant]] tables with names ({exc})") from None
    if len(set(names)) != len(names):
        raise FwdlearnError(f"{path}: variant names repeat")
    checked = []
    for variant in variants:
        where = f"{path}: variant {variant['name']!r}"
        unknown = set(variant) - {"name", "set", "layers", "seed"}
        if unknown:
            raise FwdlearnError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (name, set, layers, seed)")
        for key in variant.get("set", {}):
            preset_value(base, key, where)
        depth = len(base["layers"])
        keep = variant.get("layers", depth)
        if not isinstance(keep, int) or not 1 <= keep <= depth:
            raise FwdlearnError(f"{where}: layers must lie in 1..{depth}, got {keep!r}")
        values = variant_values(base, variant)
        config_from_dict(values, where)
        checked.append((variant, values))
    return checked


def first_layer_key(values: dict) -> str:
    """Every value but the read-out's and the deeper layers' own settings (their shapes kept, so that a stored
    network loads whole): variants with the same key train the same first layer."""
    shapes = [(layer.get("width"), layer.get("algorithm"), layer.get("conv")) for layer in values["layers"][1:]]
    return json.dumps({**{k: v for k, v in values.items() if k != "probe"},
                       "layers": [values["layers"][0], shapes]}, sort_keys=True)


def train(values: dict, dataset, first_layers: dict) -> tuple:
    """Train ``values``' network on ``dataset``, reusing a first layer already trained with the same settings."""
    config = config_from_dict(values, values["name"])
    rule = get_rule(config.learner)
    learner = rule.learner(config, rule.network_input(dataset))
    learner.prepare(dataset)
    key = first_layer_key(values)
    shares = len(config.layers) > 1 and len(learner.stages) == len(config.layers)   # one stage per layer
    stored = first_layers.get(key) if shares else None
    if stored is not None:   # the first stage done: its weights, random state and history
        learner.network.load_state_dict(stored["network"])
        learner.generator.set_state(stored["generator"])
        learner.history = [dict(r) for r in stored["history"]]
        learner.next_stage, learner.next_epoch = stored["position"]

    def keep_first_layer(current) -> None:
        if shares and current.next_stage == 1 and current.next_epoch == 0 and key not in first_layers:
            first_layers[key] = copy.deepcopy(current.state_dict())

    x, lengths, y = rule.learner.train_inputs(dataset)
    started = time.perf_counter()
    learner.train(x, lengths, y, on_epoch_end=keep_first_layer, show_progress=False)
    return config, rule, learner, time.perf_counter() - started


def score(config, rule, learner, dataset) -> dict:
    """Validation accuracy of the probe on every layer together and on each alone (fractions; and on the
    probe's own training data)."""
    n = len(config.layers)
    sets = [list(range(1, n + 1))] + ([[i] for i in range(1, n + 1)] if n > 1 else [])
    results = probe_network(rule.learner.probe_network(learner.network), dataset, config, sets, "screen", False)
    return {"+".join(map(str, s)): {"validation_accuracy": round(r.test_accuracy, 5),
                                    "train_accuracy": round(r.train_accuracy, 5)} for s, r in zip(sets, results)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--variants", required=True, help="TOML file of [[variant]] tables")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/<preset>-screen.json)")
    args = parser.parse_args(argv)
    base, _ = read_preset(args.preset)
    try:
        variants = checked_variants(Path(args.variants), base)
    except FwdlearnError as exc:
        print(f"validation_screen: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or HERE / "results" / f"{base['name']}-screen.json")
    record = json.loads(out.read_text()) if out.exists() else {
        "kind": "validation-screen", "experiment": f"{base['name']}-screen", "preset": args.preset,
        "variants_file": str(args.variants),
        "command": "python benchmarks/validation_screen.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": f"cpu, {torch.get_num_threads()} threads", "runs": []}
    done = {r["name"] for r in record["runs"]}
    first_layers: dict = {}
    with sealed_test_split():
        config = config_from_dict(base, args.preset)
        dataset = carve(load_run_dataset(config, args.data_dir), 0.1, 0, args.data_dir)
        record["validation"] = dataset.meta["split"]
        for variant, values in variants:
            if variant["name"] in done:
                continue
            config, rule, learner, seconds = train(values, dataset, first_layers)
            last = {h["group"]: h for h in learner.history}
            run = {"name": variant["name"], "set": variant.get("set", {}), "layers": len(config.layers),
                   "seed": config.seed, "probe": score(config, rule, learner, dataset),
                   "train_seconds": round(seconds, 1),
                   "last_epoch": {g: {k: round(v, 4) for k, v in h.items() if k not in ("group", "seconds")}
                                  for g, h in last.items()}}
            record["runs"].append(run)
            save_json(record, out)
            print(json.dumps({k: run[k] for k in ("name", "set", "probe")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
