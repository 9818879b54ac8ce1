"""Compare the results files of the same presets and seeds run by two versions of fwdlearn.

    python benchmarks/compare_runs.py --before DIR --after DIR --out benchmarks/results/refactor/equivalence.json

Each DIR holds one run folder per preset and seed, named ``<preset>-s<seed>`` (``fwdlearn train ...
--out DIR/<preset>-s<seed>``). With ``--records benchmarks/results``, a run with no ``--before`` folder is
compared with the seed of the same preset recorded by ``train_preset.py`` (``<records>/<preset>.json``). For every pair the script records the headline test accuracy and every
baseline's, before and after, and whether they are equal; for presets run over several seeds, the mean
and standard deviation of each side. Old LAC files (``metrics.linear_evaluation``, ``baselines.no_pretraining``)
are read too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fwdlearn.atomic import save_json  # noqa: E402

RENAMED = {"no_pretraining": "untrained"}


def accuracies(results: dict) -> dict[str, float]:
    """Headline and per-baseline test accuracy (and fine-tuning where a run has it), under today's names."""
    metrics = results["metrics"]
    out = {"test_accuracy": metrics.get("test_accuracy", metrics.get("linear_evaluation", {}).get("test_accuracy"))}
    fine = metrics.get("fine_tuning")
    if fine:
        out["fine_tuning"] = fine["test_accuracy"]
    for name, entry in results.get("baselines", {}).items():
        name = RENAMED.get(name, name)
        out[f"{name}.test_accuracy"] = entry.get("test_accuracy", entry.get("linear_evaluation", {}).get("test_accuracy"))
        if entry.get("fine_tuning"):
            out[f"{name}.fine_tuning"] = entry["fine_tuning"]["test_accuracy"]
    return out


def recorded_seed(records: Path | None, preset: str, seed: int) -> dict | None:
    """The per-seed entry of ``<records>/<preset>.json`` (as ``train_preset.py`` writes it), if there is one."""
    path = records / f"{preset}.json" if records else None
    if path is None or not path.is_file():
        return None
    return next((run for run in json.loads(path.read_text()).get("runs", []) if run.get("seed") == seed), None)


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 5),
            "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0, "n": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--records", type=Path, help="recorded results (train_preset.py) for runs without --before")
    parser.add_argument("--note", default="", help="what changed between the two versions")
    args = parser.parse_args()
    runs = {}
    for folder in sorted(p for p in args.after.iterdir() if p.is_dir() and "-s" in p.name):
        before = args.before / folder.name / "results.json"
        after = folder / "results.json"
        preset, seed = folder.name.rsplit("-s", 1)
        if not after.is_file():
            continue
        if before.is_file():
            old = json.loads(before.read_text())
        else:
            old = recorded_seed(args.records, preset, int(seed))
            if old is None:
                continue
        a, b = accuracies(old), accuracies(json.loads(after.read_text()))
        runs.setdefault(preset, {})[int(seed)] = {
            key: {"before": a.get(key), "after": b.get(key), "equal": a.get(key) == b.get(key)}
            for key in dict.fromkeys([*a, *b])}
    presets = {}
    for preset, seeds in runs.items():
        keys = dict.fromkeys(k for s in seeds.values() for k in s)
        presets[preset] = {
            "seeds": seeds,
            "equal_seed_for_seed": {k: all(s[k]["equal"] for s in seeds.values() if k in s) for k in keys},
            "over_seeds": {k: {side: summary([s[k][side] for s in seeds.values() if s.get(k, {}).get(side) is not None])
                               for side in ("before", "after")}
                           for k in keys if all(s.get(k, {}).get("before") is not None and
                                                s.get(k, {}).get("after") is not None for s in seeds.values())},
        }
    document = {"experiment": "refactor-equivalence", "note": args.note,
                "command": " ".join(["python"] + sys.argv).replace(str(Path.cwd()) + "/", ""), "presets": presets}
    print(f"results: {save_json(document, args.out)}")
    for preset, entry in presets.items():
        same = [k for k, v in entry["equal_seed_for_seed"].items() if v]
        differ = [k for k, v in entry["equal_seed_for_seed"].items() if not v]
        print(f"{preset}: equal {same}; differ {differ}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
