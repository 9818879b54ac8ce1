"""The convolutional SCFF network as an ordinary ``nn.Module`` (inference only; Table D.1)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..errors import DataError
from .paired_conv import ConvConfig, PairedConv2d
from .quant import QuantConfig
from .scff_network import is_paired


class SCFFConvNetwork(nn.Module):
    """Stack of ``PairedConv2d`` layers on ``[C, H, W]`` images; a layer's ``width`` is its channel count.

    ``forward`` returns, per layer, the flattened read-out tap of its pooled output (what the linear
    probe reads, Appendix D), as ``SCFFNetwork.forward`` returns every layer's activity; the pooled
    maps themselves flow on to the next layer. At inference each paired layer sees the positive
    pair of its input, as in training. Building the network checks that every layer's maps stay at
    least one pixel wide for ``input_shape``, so an image too small for the pooling fails at once.
    """

    def __init__(self, input_shape: Sequence[int], channels: list[int], convs: list[ConvConfig], algorithms: list[int],
                 activations: list[str], quant: QuantConfig | None = None):
        super().__init__()
        if len(input_shape) != 3:
            raise DataError(f"scff-cnn needs images [C, H, W], got samples of shape {list(input_shape)}")
        self.input_shape = tuple(int(s) for s in input_shape)
        sizes = [self.input_shape[0]] + list(channels)
        self.layers = nn.ModuleList(
            PairedConv2d(sizes[i], sizes[i + 1], convs[i], paired=is_paired(i, algorithms[i]),
                         activation=activations[i], name=f"layer {i + 1}", quant=quant)
            for i in range(len(channels)))
        self.shapes()

    def shapes(self) -> list[dict[str, tuple[int, ...]]]:
        """Per layer: the conv map, pooled map and read-out tap shapes for one input image."""
        out, (_, h, w) = [], self.input_shape
        for layer in self.layers:
            if min(h, w) <= layer.spec.padding or min(layer.output_size(h) + layer.output_size(w)) < 1:
                raise DataError(f"{self.input_shape[0]}x{self.input_shape[1]}x{self.input_shape[2]} images are too "
                                f"small for these layers: {layer.name} receives {h}x{w} maps, too small for its "
                                f"{layer.spec.kernel}x{layer.spec.kernel} conv, {layer.spec.pool_size}x"
                                f"{layer.spec.pool_size} pool and {layer.spec.readout_size}x{layer.spec.readout_size} "
                                f"read-out pool")
            (ch, ph, th), (cw, pw, tw) = layer.output_size(h), layer.output_size(w)
            c = layer.conv.out_channels
            out.append({"conv": (c, ch, cw), "pooled": (c, ph, pw), "tap": (c, th, tw)})
            h, w = ph, pw
        return out

    @property
    def feature_dims(self) -> list[int]:
        """Read-out features per layer."""
        return [c * h * w for c, h, w in (s["tap"] for s in self.shapes())]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        h = x
        for layer in self.layers:
            h = layer.passed(layer(h))
            outputs.append(layer.tap(h))
        return outputs
