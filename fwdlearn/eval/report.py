"""Evaluate a trained network the same way for every rule, beside its baselines; summarise for people and scripts.

The linear probe (Appendix G of the SCFF paper; ``linear_probe.py``) reads each layer alone and the
chosen layers together; the same probe reads every baseline network (untrained, back-propagation)
and, for fixed-size samples, the raw inputs. The rule adds its own evaluation
(``Learner.extra_metrics``: FF's goodness classification, LAC's fine-tuning and reconstruction error)
for the trained network and each baseline.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import LabelledDataset, standardize
from ..digest import network_digest
from .features import layer_features, probe_inputs
from .linear_probe import ProbeResult, train_linear_probe
from .readout import Readout


BASELINE_LABELS = {"untrained": "untrained network", "bptt": "BPTT, end to end", "bp": "BP, end to end",
                   "bp_autoencoder": "BP autoencoder", "raw_inputs": "raw inputs"}


def _entry(result: ProbeResult, layers: list[int] | None = None) -> dict:
    entry = {"test_accuracy": round(result.test_accuracy, 5), "train_accuracy": round(result.train_accuracy, 5),
             "num_features": result.num_features, "probe_seconds": round(result.seconds, 2)}
    if layers is not None:
        entry["layers"] = layers
    return entry


def probe_network(network: torch.nn.Module, dataset: LabelledDataset, config, layer_sets: list[list[int]],
                  label: str, show_progress: bool) -> list[ProbeResult]:
    """Probe ``network`` (a module returning per-layer features) once per set of layers; features computed once."""
    train_features = layer_features(network, dataset.train.x, dataset.train.lengths)
    test_features = layer_features(network, dataset.test.x, dataset.test.lengths)
    scale = config.probe.standardize
    return [train_linear_probe(probe_inputs(train_features, layers, scale), dataset.train.y,
                               probe_inputs(test_features, layers, scale), dataset.test.y, config.probe,
                               dataset.num_classes, seed=config.seed,
                               desc=f"probe {label} layers {'+'.join(map(str, layers))}", show_progress=show_progress)
            for layers in layer_sets]


def evaluate(rule, network: torch.nn.Module, baselines: dict[str, torch.nn.Module], dataset: LabelledDataset,
             config, show_progress: bool = True, raw_inputs: bool = True, readout_to: str | Path | None = None) -> dict:
    """Per-layer and combined probe accuracy and the rule's own metrics, beside the same for each baseline.

    ``readout_to``: where to save the trained network's combined read-out (``Readout``) for export.
    """
    learner = rule.learner
    n_layers = learner.num_probe_layers(config)
    combined = config.probe.layers or list(range(1, n_layers + 1))
    alone = list(range(1, n_layers + 1)) if config.probe.each_layer else []
    layer_sets = [[i] for i in alone]
    if combined not in layer_sets:
        layer_sets.append(combined)
    results = probe_network(learner.probe_network(network), dataset, config, layer_sets, "trained", show_progress)
    by_set = {tuple(s): r for s, r in zip(layer_sets, results)}
    if readout_to is not None:
        best = by_set[tuple(combined)]
        Readout(best.weight, best.bias, combined, config.probe.standardize, dataset.name, dataset.class_names,
                dataset.sample_shape, round(best.test_accuracy, 5), dataset.meta, best.logit_bound,
                network_digest(network.state_dict())).save(readout_to)
    report = {
        "encoder_digest": network_digest(network.state_dict()),
        "metrics": {**_entry(by_set[tuple(combined)], combined),
                    "per_layer": {f"layer{i}": _entry(by_set[(i,)]) for i in alone},
                    **learner.extra_metrics(config, network, dataset, show_progress)},
        "baselines": {},
    }
    for name, baseline in baselines.items():
        (result,) = probe_network(learner.probe_network(baseline), dataset, config, [combined], name, show_progress)
        report["baselines"][name] = {**_entry(result, combined),
                                     **learner.extra_metrics(config, baseline, dataset, show_progress)}
    if raw_inputs and not dataset.train.is_sequence:
        raw = train_linear_probe(standardize(dataset.train.x.flatten(1)), dataset.train.y,
                                 standardize(dataset.test.x.flatten(1)), dataset.test.y, config.probe,
                                 dataset.num_classes, seed=config.seed, desc="probe raw inputs",
                                 show_progress=show_progress)
        report["baselines"]["raw_inputs"] = _entry(raw)
    return report


def _extra_columns(rows: list[dict]) -> list[str]:
    """Accuracy entries a rule adds beside the probe (e.g. ``goodness_classification``, ``fine_tuning``)."""
    keys: list[str] = []
    for entry in rows:
        keys += [k for k, v in entry.items() if isinstance(v, dict) and "test_accuracy" in v and k not in keys]
    return keys


def summary_lines(results: dict, label: str) -> list[str]:
    """The table a person reads at the end of a run: test accuracy of every read-out of the rule (``label``,
    e.g. ``SCFF``) beside its baselines."""
    metrics, baselines = results["metrics"], results["baselines"]
    several = len(metrics["per_layer"]) > 1
    combined = f", layers {'+'.join(map(str, metrics['layers']))}" if several else ""
    rows = [(f"{label}{combined}", metrics)]
    if several:
        rows += [(f"{label}, {name.replace('layer', 'layer ')} alone", m) for name, m in metrics["per_layer"].items()]
    for name, entry in baselines.items():
        text = BASELINE_LABELS.get(name, name.replace("_", " "))
        rows.append((f"{text}{combined}" if "layers" in entry else text, entry))
    extra = _extra_columns([metrics, *baselines.values()])
    width = max(len(name) for name, _ in rows)
    lines = [f"  {'test accuracy'.ljust(width)}  linear probe" + "".join(f"  {k.replace('_', ' ')}" for k in extra)]
    for name, entry in rows:
        line = f"  {name.ljust(width)}  {100 * entry['test_accuracy']:10.2f} %"
        for key in extra:
            value = entry.get(key)
            line += (f"  {100 * value['test_accuracy']:{len(key) - 2}.2f} %" if value
                     else f"  {'–':>{len(key)}}")
        lines.append(line)
    if "reconstruction_error" in metrics:
        lines.append(f"  test reconstruction error (MSE per pixel): {metrics['reconstruction_error']:.4f}")
    return lines
