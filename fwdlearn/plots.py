"""Figures written beside a run's results: learning curves and probe accuracy per layer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import save_figure  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    """Lay the figure out, write it atomically, and free it."""
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_learning_curves(history: list[dict], path: str | Path, label: str = "") -> Path:
    """Every per-epoch training statistic of every parameter group (one panel per statistic)."""
    keys = [k for k in dict.fromkeys(k for r in history for k in r) if k not in ("group", "epoch", "seconds")
            and not k.startswith("test_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    groups = list(dict.fromkeys(r["group"] for r in history))
    for ax, key in zip(axes[0], keys):
        for group in groups:
            rows = [r for r in history if r["group"] == group and key in r]
            if rows:
                ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", label=group)
        ax.set(title=f"{label} {key.replace('_', ' ')}".strip(), xlabel="epoch")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_test_curves(results: dict, path: str | Path) -> Path | None:
    """Per-epoch test metrics (e.g. LAC's reconstruction error) of the rule beside its baselines'; None if none."""
    curves: dict[str, dict[str, list[float]]] = {}
    sources = {results["learner"]: results.get("history", []), **results.get("baseline_history", {})}
    for name, history in sources.items():
        for record in history:
            for key, value in record.items():
                if key.startswith("test_"):
                    curves.setdefault(key, {}).setdefault(name, []).append(value)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.6), squeeze=False)
    for ax, (key, lines) in zip(axes[0], curves.items()):
        for name, values in lines.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name.replace("_", " "))
        ax.set(title=key.replace("_", " "), xlabel="epoch", yscale="log")
        ax.legend()
    return _save(fig, path)


def plot_probe_accuracy(results: dict, path: str | Path) -> Path:
    """Bar chart: probe test accuracy per layer and combined, beside the baselines."""
    metrics, baselines = results["metrics"], results["baselines"]
    names = [k.replace("layer", "layer ") for k in metrics["per_layer"]] + ["combined"]
    values = [m["test_accuracy"] for m in metrics["per_layer"].values()] + [metrics["test_accuracy"]]
    colours = ["tab:blue"] * len(names)
    for key, entry in baselines.items():
        names.append(key.replace("_", " "))
        values.append(entry["test_accuracy"])
        colours.append("tab:gray")
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 1, 3.6))
    bars = ax.bar(names, [100 * v for v in values], color=colours)
    ax.bar_label(bars, fmt="%.2f")
    low = max(0.0, 100 * min(values) - 5)
    ax.set(ylim=(low, 100), ylabel="test accuracy (%)", title=f"linear probe, {results['dataset']}")
    return _save(fig, path)


def plot_reconstructions(inputs, reconstructions, path: str | Path, title: str = "") -> Path:
    """A grid: input images on the top row, their reconstructions below (``[N, C, H, W]`` in [0, 1])."""
    n = inputs.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(0.9 * n, 2.1), squeeze=False)
    for row, images, label in ((0, inputs, "input"), (1, reconstructions, "output")):
        for i in range(n):
            image = images[i].detach().float()
            image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
            axes[row][i].imshow(image.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row][i].set_xticks([])
            axes[row][i].set_yticks([])
        axes[row][0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
