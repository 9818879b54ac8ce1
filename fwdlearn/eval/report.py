"""Probe a trained network, its untrained twin and the raw inputs; summarise for people and scripts."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import SCFFConfig
from ..data import LabelledDataset, standardize
from .features import layer_features, probe_inputs
from .linear_probe import ProbeResult, train_linear_probe
from .readout import Readout


BASELINE_LABELS = {"untrained": "untrained network", "bptt": "BPTT, end to end", "bp": "BP, end to end",
                   "raw_inputs": "raw inputs"}


def _entry(result: ProbeResult, layers: list[int] | None = None) -> dict:
    entry = {"test_accuracy": round(result.test_accuracy, 5), "train_accuracy": round(result.train_accuracy, 5),
             "num_features": result.num_features, "probe_seconds": round(result.seconds, 2)}
    if layers is not None:
        entry["layers"] = layers
    return entry


def probe_network(network: torch.nn.Module, dataset: LabelledDataset, config: SCFFConfig, layer_sets: list[list[int]],
                  label: str, show_progress: bool) -> list[ProbeResult]:
    """Probe ``network`` once per set of layers; features are computed once for all of them."""
    train_features = layer_features(network, dataset.train.x, dataset.train.lengths)
    test_features = layer_features(network, dataset.test.x, dataset.test.lengths)
    scale = config.probe.standardize
    return [train_linear_probe(probe_inputs(train_features, layers, scale), dataset.train.y,
                               probe_inputs(test_features, layers, scale), dataset.test.y, config.probe,
                               dataset.num_classes, seed=config.seed,
                               desc=f"probe {label} layers {'+'.join(map(str, layers))}", show_progress=show_progress)
            for layers in layer_sets]


def evaluate(network: torch.nn.Module, baselines: dict[str, torch.nn.Module], dataset: LabelledDataset,
             config: SCFFConfig, show_progress: bool = True, raw_inputs: bool = True,
             readout_to: str | Path | None = None) -> dict:
    """Per-layer and combined probe accuracy, beside the same probe on each baseline network
    (``untrained``, ``bptt``, ...) and, for fixed-size samples, on the raw inputs.

    ``readout_to``: where to save the trained network's combined read-out (``Readout``) for export.
    """
    n_layers = len(config.layers)
    combined = config.probe.layers or list(range(1, n_layers + 1))
    layer_sets = [[i] for i in range(1, n_layers + 1)]
    if combined not in layer_sets:
        layer_sets.append(combined)
    results = probe_network(network, dataset, config, layer_sets, "trained", show_progress)
    by_set = {tuple(s): r for s, r in zip(layer_sets, results)}
    if readout_to is not None:
        best = by_set[tuple(combined)]
        Readout(best.weight, best.bias, combined, config.probe.standardize, dataset.name, dataset.class_names,
                dataset.sample_shape, round(best.test_accuracy, 5), dataset.meta, best.logit_bound).save(readout_to)
    report = {
        "metrics": {**_entry(by_set[tuple(combined)], combined),
                    "per_layer": {f"layer{i}": _entry(by_set[(i,)]) for i in range(1, n_layers + 1)}},
        "baselines": {},
    }
    for name, baseline in baselines.items():
        (result,) = probe_network(baseline, dataset, config, [combined], name, show_progress)
        report["baselines"][name] = _entry(result, combined)
    if raw_inputs and not dataset.train.is_sequence:
        raw = train_linear_probe(standardize(dataset.train.x.flatten(1)), dataset.train.y,
                                 standardize(dataset.test.x.flatten(1)), dataset.test.y, config.probe,
                                 dataset.num_classes, seed=config.seed, desc="probe raw inputs",
                                 show_progress=show_progress)
        report["baselines"]["raw_inputs"] = _entry(raw)
    return report


def summary_lines(results: dict) -> list[str]:
    """The table a person reads at the end of a run."""
    metrics, baselines = results["metrics"], results["baselines"]
    combined = "+".join(map(str, metrics["layers"]))
    rows = [(f"SCFF, layers {combined}", metrics["test_accuracy"])]
    if len(metrics["per_layer"]) > 1:
        rows += [(f"SCFF, {name.replace('layer', 'layer ')} alone", m["test_accuracy"])
                 for name, m in metrics["per_layer"].items()]
    for name, entry in baselines.items():
        label = BASELINE_LABELS.get(name, name)
        rows.append((f"{label}, layers {combined}" if "layers" in entry else label, entry["test_accuracy"]))
    width = max(len(name) for name, _ in rows)
    lines = [f"  {'linear probe on'.ljust(width)}  test accuracy"]
    lines += [f"  {name.ljust(width)}  {100 * acc:6.2f} %" for name, acc in rows]
    return lines
