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


def plot_reconstruction_error(curves: dict[str, list[float]], path: str | Path) -> Path:
    """Test reconstruction error (mean squared error per pixel) against epochs; index 0 is before training."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    ax.set(title="test reconstruction error", xlabel="epoch (0: initial weights)", ylabel="MSE per pixel", yscale="log")
    ax.legend()
    return _save(fig, path)


def plot_downstream(results: dict, path: str | Path) -> Path:
    """Grouped bars: linear evaluation and fine-tuning accuracy of LAC beside its baselines."""
    rows = {"LAC": results["metrics"], **{k.replace("_", " "): v for k, v in results["baselines"].items()}}
    protocols = [p for p in ("linear_evaluation", "fine_tuning") if p in results["metrics"]]
    fig, ax = plt.subplots(figsize=(2.2 * len(rows) + 1, 3.6))
    width = 0.8 / len(protocols)
    for j, protocol in enumerate(protocols):
        values = [100 * entry[protocol]["test_accuracy"] for entry in rows.values()]
        bars = ax.bar([i + j * width for i in range(len(rows))], values, width, label=protocol.replace("_", " "))
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks([i + width * (len(protocols) - 1) / 2 for i in range(len(rows))], list(rows))
    ax.set(ylabel="test accuracy (%)", title=f"down-stream classification, {results['dataset']}", ylim=(0, 100))
    ax.legend(loc="lower right")
    return _save(fig, path)
