"""Figures written beside a run's results: learning curves and probe accuracy per layer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import save_figure  # noqa: E402


def plot_learning_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and mean positive/negative goodness of every layer against its epochs."""
    fig, (ax_loss, ax_good) = plt.subplots(1, 2, figsize=(10, 3.6))
    for layer in sorted({r["layer"] for r in history}):
        rows = [r for r in history if r["layer"] == layer]
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["loss"] for r in rows], marker="o", label=f"layer {layer}")
        line, = ax_good.plot(epochs, [r["goodness_pos"] for r in rows], marker="o", label=f"layer {layer} positive")
        ax_good.plot(epochs, [r["goodness_neg"] for r in rows], marker="x", linestyle="--", color=line.get_color(),
                     label=f"layer {layer} negative")
    ax_loss.set(title="SCFF loss per layer", xlabel="epoch", ylabel="mean loss")
    ax_good.set(title="goodness (mean over batch)", xlabel="epoch", ylabel="G")
    ax_loss.legend()
    ax_good.legend(fontsize=8)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


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
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
