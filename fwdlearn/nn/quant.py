"""Quantisation as a constructor argument (Brevitas): the same local layers, low-bit weights and inputs.

A ``QuantConfig`` with 0 bits everywhere gives plain ``nn.Linear`` / ``nn.Identity``, so float
networks keep their state dicts and do not need Brevitas. Otherwise:

- weights: ``brevitas.nn.QuantLinear`` with a signed narrow-range integer quantiser of
  ``weight_bits`` and a float scale from the weights' absolute maximum, per tensor or per output
  unit (``per_channel``);
- activations: ``brevitas.nn.QuantIdentity`` on each layer's standardised input (the previous
  layer's passed activity, or the data), signed, ``act_bits``, one float scale per layer that
  starts from a fixed clipping range (``GAUSSIAN_CLIP``) and is learned by the layer's own loss.

Training is quantisation-aware: the forward pass uses the quantised values, and the straight-
through estimator carries the local loss's gradient to the float weights a layer keeps. No
gradient leaves the layer: each quantiser belongs to exactly one layer and only sees that
layer's detached input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError, check


@dataclass
class QuantConfig:
    """Quantisation-aware local learning through Brevitas (``fwdlearn/nn/quant.py``); 0 bits = float.

    ``weight_bits``: every local layer's weights (signed, narrow range, float scale per tensor or,
    with ``per_channel``, per output unit). ``act_bits``: every local layer's input after its
    standardisation (signed, float scale per tensor learned by the layer's own loss).
    """

    weight_bits: int = 0
    act_bits: int = 0
    per_channel: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.weight_bits or self.act_bits)

    def validate(self, where: str) -> None:
        for name in ("weight_bits", "act_bits"):
            bits = getattr(self, name)
            check(bits == 0 or 2 <= bits <= 8, f"{where}.{name} must be 0 (float) or 2..8, got {bits}")
        check(not self.per_channel or self.weight_bits > 0, f"{where}.per_channel needs weight_bits > 0")

    def label(self) -> str:
        if not self.enabled:
            return "float"
        weights = f"w{self.weight_bits}{' per channel' if self.per_channel else ''}" if self.weight_bits else "w float"
        return f"{weights}, a{self.act_bits or ' float'}"


def _brevitas():
    try:
        import brevitas.nn as qnn
        from brevitas import quant
    except ImportError:
        raise ConfigError("quantised layers need Brevitas: pip install 'fwdlearn[hardware]'") from None
    return qnn, quant


def quant_linear(in_features: int, out_features: int, quant: QuantConfig | None, bias: bool = True) -> nn.Module:
    """``nn.Linear``, or a ``QuantLinear`` with ``quant.weight_bits``-bit weights."""
    if quant is None or not quant.weight_bits:
        return nn.Linear(in_features, out_features, bias=bias)
    qnn, _ = _brevitas()
    layer = qnn.QuantLinear(in_features, out_features, bias=bias, **_weight_quant(quant))
    layer.fused_weight_quant = (quant.weight_bits, quant.per_channel)   # for effective_weight's fast path
    return layer


# Initial clipping range of a standardised input, in standard deviations: the mean-square-error
# optimal clip of a unit Gaussian for a uniform b-bit quantiser (Banner et al., "ACIQ", 2019),
# rounded. The range is then a parameter of the layer, learned by its own loss.
GAUSSIAN_CLIP = {2: 1.7, 3: 2.2, 4: 2.6, 5: 3.0, 6: 3.4, 7: 3.7, 8: 4.0}


def input_quantizer(quant: QuantConfig | None, signed: bool = True, clip: float | None = None) -> nn.Module:
    """``nn.Identity``, or a ``QuantIdentity`` rounding a layer's input to ``quant.act_bits`` bits.

    One learned float scale per layer from a fixed start (so every layer's state dict has the same
    keys before and after training): ``clip`` if given, else ``GAUSSIAN_CLIP`` for a standardised
    input. ``signed=False`` for inputs that are never negative (pixels, ReLU outputs).
    """
    if quant is None or not quant.act_bits:
        return nn.Identity()
    qnn, q = _brevitas()
    from brevitas.core.scaling import ScalingImplType
    return qnn.QuantIdentity(act_quant=q.Int8ActPerTensorFloat if signed else q.Uint8ActPerTensorFloat,
                             bit_width=quant.act_bits, scaling_impl_type=ScalingImplType.PARAMETER,
                             scaling_init=clip if clip is not None else GAUSSIAN_CLIP[quant.act_bits],
                             return_quant_tensor=False)


def _weight_quant(quant: QuantConfig) -> dict:
    _, q = _brevitas()
    return {"weight_quant": q.Int8WeightPerChannelFloat if quant.per_channel else q.Int8WeightPerTensorFloat,
            "weight_bit_width": quant.weight_bits, "return_quant_tensor": False}


def quant_conv2d(in_channels: int, out_channels: int, kernel_size: int, quant: QuantConfig | None,
                 **kwargs) -> nn.Module:
    """``nn.Conv2d``, or a ``QuantConv2d`` with ``quant.weight_bits``-bit weights (per output channel if asked)."""
    if quant is None or not quant.weight_bits:
        return nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
    qnn, _ = _brevitas()
    return qnn.QuantConv2d(in_channels, out_channels, kernel_size, **kwargs, **_weight_quant(quant))


def quant_conv_transpose2d(in_channels: int, out_channels: int, kernel_size: int, quant: QuantConfig | None,
                           **kwargs) -> nn.Module:
    """``nn.ConvTranspose2d``, or Brevitas' quantised version."""
    if quant is None or not quant.weight_bits:
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, **kwargs)
    qnn, _ = _brevitas()
    return qnn.QuantConvTranspose2d(in_channels, out_channels, kernel_size, **kwargs, **_weight_quant(quant))


def effective_weight(linear: nn.Module) -> torch.Tensor:
    """The weight the layer computes with: fake-quantised (straight-through gradient) or the float one.

    Quantised dense layers on the CPU take the fused kernel (``kernels/fake_quant.py``: Brevitas'
    values and gradients, about 7x faster); anything else asks Brevitas.
    """
    spec = getattr(linear, "fused_weight_quant", None)
    if spec is not None and linear.weight.device.type == "cpu" and linear.weight.dtype == torch.float32:
        from ..kernels.fake_quant import FakeQuantWeight
        return FakeQuantWeight.apply(linear.weight, *spec)
    if hasattr(linear, "quant_weight"):
        return linear.quant_weight().value
    return linear.weight


def output_quantizer(bits: int, bound: float) -> nn.Module:
    """A signed ``bits``-bit quantiser with a fixed range ``[-bound, bound]`` (for deployed logits)."""
    qnn, _ = _brevitas()
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import Int8ActPerTensorFloat
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, scaling_impl_type=ScalingImplType.CONST,
                             scaling_init=float(bound), return_quant_tensor=False)
