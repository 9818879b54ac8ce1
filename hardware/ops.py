"""Operation counts from the real layer shapes of one forward pass.

``count_macs(module, *inputs)`` runs the module once with forward hooks on every dense,
convolutional and transposed-convolutional layer and adds up the multiply-accumulates each call
performed, so recurrent layers (one call per step) and shared layers are counted as often as
they run. Closed forms, per call:

- ``nn.Linear``: ``outputs.numel() * in_features`` (one MAC per weight per output row);
- ``nn.Conv2d``: ``outputs.numel() * in_channels / groups * kh * kw``;
- ``nn.ConvTranspose2d``: ``inputs.numel() * out_channels / groups * kh * kw`` (every input
  element is scattered through the whole kernel).

Element-wise work (standardisation, activations, batch norm) is not counted: on the accelerators
these models target it is a small, separate cost next to the weight MACs.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn as nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)   # the layers counted (Brevitas' layers subclass them)


def layer_macs(layer: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """MACs of one call of ``layer`` (0 for layers without weights)."""
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return output.numel() * (layer.in_channels // layer.groups) * kh * kw
    if isinstance(layer, nn.ConvTranspose2d):
        kh, kw = layer.kernel_size
        return inputs.numel() * (layer.out_channels // layer.groups) * kh * kw
    return 0


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """MACs of one forward pass of ``module`` on ``inputs``, by layer type and in total."""
    counts: Counter[str] = Counter()
    handles = []

    def hook(layer, args, output):
        counts[type(layer).__name__] += layer_macs(layer, args[0], output)

    for layer in module.modules():
        if isinstance(layer, WEIGHT_LAYERS):
            handles.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {**dict(sorted(counts.items())), "total": sum(counts.values())}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
