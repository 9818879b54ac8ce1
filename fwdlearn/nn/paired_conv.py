"""A convolutional SCFF layer whose two input halves share one kernel (SCFF Appendix A, D; Table D.1).

A pair ``[a, b]`` is concatenated along channels and met by the kernel ``[W_1, W_2]`` with
``W_1 = W_2 = W``: convolution is linear in its input channels, so the pre-activation is
``W * a + W * b + 2 bias`` (``*``: convolution). The layer convolves every *distinct* view once and
adds the maps of the two halves, as ``PairedLinear`` does for dense layers; half the multiply-adds
of convolving the doubled input, forward and backward. Padding is "reflect" (the authors' release),
applied to each half separately, which is what padding the concatenated pair does channel by channel.

Per-sample standardisation (``std`` in Algorithms 1-2) runs over the whole ``C x H x W`` sample,
as in the authors' release (mean and deviation over dims 1, 2, 3). Chosen over per-channel or
per-position statistics because it keeps the tied-weight form exact: two halves each standardised
over their ``C x H x W`` values, concatenated along channels, are already standardised as a whole
(population deviation), so ``std([a, b]) = [std(a), std(b)]`` and one kernel applied to each
standardised half gives the pair's pre-activation. It also matches ``PairedLinear``, which
standardises a flattened image over the same values.

After the convolution: ReLU for plasticity (goodness per position over channels, Algorithms 1-2:
``G[h, w] = mean_c ReLU(z)[c, h, w]^2``), the ``passed`` activation (triangle or ReLU) followed by
the layer's pooling for the next layer, and a read-out tap that pools the pooled map once more and
flattens it for the linear probe (Table D.1, "Layer's output").

With a ``QuantConfig`` (``nn/quant.py``), as for ``PairedLinear``: the kernel is Brevitas' ``QuantConv2d``
(``weight_bits``, per tensor or per output channel) and the standardised input is rounded to ``act_bits``
before the padding and the convolution: ``W_q * pad(q(std(a))) + W_q * pad(q(std(b))) + 2 bias``. Reflect
padding only repeats values, so the padded map stays on the quantiser's grid. The local loss's gradient reaches
the float kernel and the input quantiser's learned scale through the straight-through estimator; both belong to
this layer alone and see only its detached input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import standardize, tracing_for_accelerators
from ..errors import DataError, check
from ..kernels.goodness import relu_goodness
from .activations import ACTIVATIONS, doubled, pair_gain
from .quant import QuantConfig, effective_weight, input_quantizer, quant_conv2d


POOLS = ("max", "avg")


@dataclass
class ConvConfig:
    """The convolutional part of an SCFF layer (Table D.1); ``kernel = 0`` means a fully connected layer.

    A ``kernel`` x ``kernel`` convolution (stride 1, ``padding`` pixels of reflect padding, as in the
    authors' release), then the passed-on activation, then ``pool`` (``max``, ``avg`` or ``none``;
    ``pool_size``, ``pool_stride``, ``pool_padding``: Table D.1's footnotes 3 and 4). The read-out
    tap pools the pooled map once more (``readout_pool`` over ``readout_size`` squares, stride equal
    to the size, no padding: footnote 5) and flattens it for the linear probe.
    """

    kernel: int = 0
    padding: int = 0
    pool: str = "max"
    pool_size: int = 2
    pool_stride: int = 2
    pool_padding: int = 0
    readout_pool: str = "avg"
    readout_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.kernel > 0

    def validate(self, where: str) -> None:
        check(self.kernel >= 0, f"{where}.kernel must be >= 0 (0: fully connected), got {self.kernel}")
        check(0 <= self.padding < max(self.kernel, 1),
               f"{where}.padding must lie in 0..kernel-1, got {self.padding} for kernel {self.kernel}")
        check(self.pool in POOLS + ("none",), f"{where}.pool must be one of {', '.join(POOLS)}, none, got {self.pool!r}")
        check(self.pool_size >= 1, f"{where}.pool_size must be >= 1, got {self.pool_size}")
        check(self.pool_stride >= 1, f"{where}.pool_stride must be >= 1, got {self.pool_stride}")
        check(0 <= self.pool_padding <= self.pool_size // 2,
               f"{where}.pool_padding must lie in 0..pool_size/2, got {self.pool_padding} for pool_size {self.pool_size}")
        check(self.readout_pool in POOLS, f"{where}.readout_pool must be one of {', '.join(POOLS)}, got {self.readout_pool!r}")
        check(self.readout_size >= 1, f"{where}.readout_size must be >= 1, got {self.readout_size}")


def make_pool(kind: str, size: int, stride: int, padding: int = 0) -> nn.Module:
    """``max``/``avg`` pooling (average counts padded zeros, PyTorch's default), or the identity for ``none``."""
    if kind == "none":
        return nn.Identity()
    return nn.MaxPool2d(size, stride, padding) if kind == "max" else AveragePool(size, stride, padding)


class AveragePool(nn.AvgPool2d):
    """``nn.AvgPool2d``; traced for an accelerator (``data.transforms.accelerator_tracing``), the same average as a
    convolution with weights ``1/k²`` on each channel's own map (hls4ml and qonnx's channels-last form have no
    average pooling), or nothing for a 1x1 window with stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not tracing_for_accelerators():
            return super().forward(x)
        if self.kernel_size == 1 and self.stride == 1 and self.padding == 0:
            return x
        channels, k = x.shape[1], self.kernel_size
        weight = np.einsum("oi,hw->oihw", np.eye(channels), np.full((k, k), 1.0 / (k * k)))
        return F.conv2d(x, torch.from_numpy(weight.astype(np.float32)).to(x.dtype), stride=self.stride,
                        padding=self.padding)


def select_rows(maps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``maps[rows]`` for the row patterns a ``PairBatch`` holds, without a scatter in the backward pass.

    A contiguous range (``arange(a, a + n)``: the views themselves, Algorithm 1's positive or negative
    block) is a view of ``maps``; a rolled range (``(arange(n) + s) mod n``: the negative partners) is
    ``torch.roll`` of it, whose gradient is the opposite roll. Anything else falls back to
    ``index_select``, whose backward (a scatter-add over maps of ``C x H x W`` values) costs as much as
    the rest of a first-layer update on the CPU.
    """
    n = rows.shape[0]
    start = int(rows.min()) if n else 0
    block = torch.arange(start, start + n, device=rows.device)
    if start + n <= maps.shape[0]:
        if torch.equal(rows, block):
            return maps.narrow(0, start, n)
        shift = int(rows[0]) - start
        if torch.equal(rows, start + (block - start + shift) % n):
            return torch.roll(maps.narrow(0, start, n), -shift, 0)
    return maps.index_select(0, rows)


def _pooled(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class PairedConv2d(nn.Module):
    """One local convolutional layer: input standardisation, tied-weight conv, activations, pooling, tap.

    ``forward`` is the inference path (the positive pair ``[x, x]`` if ``paired``) returning the
    pre-activation map ``[N, out_channels, H, W]``; ``plastic``/``goodness`` are what the loss sees,
    ``passed`` (activation, then pooling) what the next layer sees, ``tap`` what the probe reads.
    ``name`` labels the layer in error messages.
    """

    def __init__(self, in_channels: int, out_channels: int, conv: ConvConfig, paired: bool,
                 activation: str = "triangle", name: str = "conv layer", quant: QuantConfig | None = None):
        super().__init__()
        self.conv = quant_conv2d(in_channels, out_channels, conv.kernel, quant)
        self.input_quant = input_quantizer(quant)
        self.spec = conv
        self.paired = paired
        self.activation = activation
        self.name = name
        self.pool = make_pool(conv.pool, conv.pool_size, conv.pool_stride, conv.pool_padding)
        self.readout_pool = make_pool(conv.readout_pool, conv.readout_size, conv.readout_size)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    def output_size(self, size: int) -> tuple[int, int, int]:
        """Side of the conv map, the pooled map and the read-out tap for an input of side ``size``."""
        spec = self.spec
        conv = size + 2 * spec.padding - spec.kernel + 1
        pooled = conv if spec.pool == "none" else _pooled(conv, spec.pool_size, spec.pool_stride, spec.pool_padding)
        return conv, pooled, pooled // spec.readout_size

    def check_input(self, x: torch.Tensor) -> None:
        """A one-line ``DataError`` for an input this layer cannot take (dtype, layout, channels, size)."""
        if not torch.is_floating_point(x):
            raise DataError(f"{self.name}: input must be a floating-point tensor, got {x.dtype}")
        if x.dim() != 4:
            raise DataError(f"{self.name}: input must be images [N, C, H, W], got shape {list(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise DataError(f"{self.name}: input has {x.shape[1]} channels, the layer expects {self.in_channels}")
        for side in x.shape[2:]:
            if side <= self.spec.padding or min(self.output_size(side)) < 1:
                raise DataError(f"{self.name}: a {x.shape[2]}x{x.shape[3]} input is too small for a "
                                f"{self.spec.kernel}x{self.spec.kernel} conv (padding {self.spec.padding}), "
                                f"{self.spec.pool_size}x{self.spec.pool_size} pool and "
                                f"{self.spec.readout_size}x{self.spec.readout_size} read-out pool")

    @property
    def quantised(self) -> bool:
        return not isinstance(self.input_quant, nn.Identity) or hasattr(self.conv, "quant_weight")

    def _prepared(self, x: torch.Tensor) -> torch.Tensor:
        """``pad(q(std(x)))``: the checked input, standardised, rounded if quantised, and reflect-padded."""
        self.check_input(x)
        x = self.input_quant(standardize(x))
        return F.pad(x, (self.spec.padding,) * 4, mode="reflect") if self.spec.padding else x

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """``W * pad(q(std(x)))`` without bias (``W`` fake-quantised if the layer is)."""
        return F.conv2d(self._prepared(x), effective_weight(self.conv))

    def project(self, views: torch.Tensor) -> torch.Tensor:
        """``W * x`` (no bias) of each standardised view, ``[M, C_in, H, W] -> [M, C_out, H', W']``."""
        return self._convolve(views)

    @property
    def bias(self) -> torch.Tensor:
        return self.conv.bias

    def fused_projection(self, views: torch.Tensor, overwrite: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``P = W * pad(std(x))`` of every view without a graph (closed-form update, methods section 6), and the
        padded standardised views the weight gradient convolves (a new tensor: padding copies, ``overwrite``
        changes nothing). A quantised layer keeps the graph of its quantisers (returned inputs ``None``) so that
        ``accumulate_gradients`` runs their straight-through backward."""
        if self.quantised:
            with torch.enable_grad():
                return self._convolve(views), None
        inputs = self._prepared(views)
        return F.conv2d(inputs, self.conv.weight.detach()), inputs

    def accumulate_gradients(self, projections: torch.Tensor, inputs: torch.Tensor | None, rows: torch.Tensor
                             ) -> None:
        """``dW``: the convolution's weight gradient of ``rows = dL/dP`` alone (no input gradient), ``db``: the
        sum of ``rows`` over views and positions; quantised: ``rows`` back through the quantisers' graph."""
        if inputs is None:
            projections.backward(rows)
            self.conv.bias.grad = rows.sum((0, 2, 3))
            return
        weight = self.conv.weight
        self.conv.weight.grad = torch.ops.aten.convolution_backward(
            rows, inputs, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])[1]
        self.conv.bias.grad = rows.sum((0, 2, 3))

    def combine(self, projections: torch.Tensor, left: torch.Tensor, right: torch.Tensor | None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-activation maps of examples made of rows ``left`` (and ``right`` if paired) of ``projections``, with
        the layer's bias or the ``bias`` given (the one the projections were computed beside)."""
        bias = (self.conv.bias if bias is None else bias).view(1, -1, 1, 1)
        if right is None:
            return select_rows(projections, left) + bias
        return select_rows(projections, left) + select_rows(projections, right) + 2.0 * bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(self._prepared(x))    # the module itself, so that MAC counters and hooks see it
        return doubled(z) if self.paired else z

    @staticmethod
    def plastic(z: torch.Tensor) -> torch.Tensor:
        """The activity whose goodness is trained: ReLU (Appendix D)."""
        return torch.relu(z)

    @staticmethod
    def goodness(z: torch.Tensor) -> torch.Tensor:
        """``G[n, h, w] = mean_c ReLU(z)[n, c, h, w]^2`` (Algorithms 1-2), one autograd node keeping only ``z``."""
        return relu_goodness(z, 1)

    def passed(self, z: torch.Tensor) -> torch.Tensor:
        """The map sent to the next layer: the passed-on activation (triangle over channels, or ReLU), then the pool."""
        return self.pool(ACTIVATIONS[self.activation](z, gain=pair_gain(self.paired)))

    def tap(self, passed: torch.Tensor) -> torch.Tensor:
        """The read-out features of a passed-on map: one more pooling, flattened (Table D.1, "Layer's output")."""
        return self.readout_pool(passed).flatten(1)
