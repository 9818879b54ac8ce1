"""Typed configuration of a LAC run, loaded from the same TOML presets as SCFF (``learner = "lac-..."``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig, QuantConfig, _check

LAC_LEARNERS = ("lac-mlp", "lac-conv")
TARGETS = ("reconstruct", "flip")


@dataclass
class DownstreamConfig:
    """Linear evaluation and fine-tuning of the pretrained encoder (LAC paper, section 4.1).

    SGD with momentum, a linear warm-up over the first ``warmup_epochs``, the rate multiplied by
    ``gamma`` at each fraction in ``decay_at`` of the epochs (the paper's 60/120/160 of 200),
    weight decay 5e-4, batch 128.
    """

    linear_epochs: int = 20
    finetune_epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    warmup_epochs: int = 2
    decay_at: list[float] = field(default_factory=lambda: [0.3, 0.6, 0.8])
    gamma: float = 0.2
    weight_decay: float = 5e-4
    batch_size: int = 128

    def validate(self, where: str) -> None:
        _check(self.linear_epochs >= 1, f"{where}.linear_epochs must be >= 1, got {self.linear_epochs}")
        _check(self.finetune_epochs >= 0, f"{where}.finetune_epochs must be >= 0, got {self.finetune_epochs}")
        _check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        _check(0 <= self.momentum < 1, f"{where}.momentum must lie in [0, 1), got {self.momentum}")
        _check(self.warmup_epochs >= 0, f"{where}.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        _check(all(0 < f < 1 for f in self.decay_at), f"{where}.decay_at fractions must lie in (0, 1)")
        _check(0 < self.gamma <= 1, f"{where}.gamma must lie in (0, 1], got {self.gamma}")
        _check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class LACConfig:
    """A whole LAC run: autoencoder, its two optimisers, pretraining, baselines, down-stream protocols.

    ``hidden`` lists the hidden layers (MLP: units, Linear-BN-ReLU; conv: channels of the three
    3x3 convolutions, strides 1, 1, 2); the output layer (Linear or 3x3 stride-2 transposed
    convolution, Sigmoid) maps back to the input. ``encoder_layers`` hidden layers form the encoder
    kept for classification. ``target``: ``reconstruct`` the input, or its horizontally ``flip``-ped
    image (the paper's flipped-image task). ``bp_epochs``: epochs of the back-propagation
    autoencoder baseline (0 skips it).
    """

    name: str
    hidden: list[int]
    description: str = ""
    learner: str = "lac-mlp"
    seed: int = 0
    batch_size: int = 128
    epochs: int = 10
    encoder_layers: int = 3
    target: str = "reconstruct"
    hidden_lr: float = 1e-3        # RMSprop, every hidden layer
    output_lr: float = 1e-2        # Adam, the output (reconstruction) layer
    weight_decay: float = 1e-3
    bp_epochs: int = 10
    bp_lr: float = 1e-3            # Adam, the BP autoencoder baseline
    data: DataConfig = field(default_factory=lambda: DataConfig(dataset="digits"))
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)   # every layer's weights and input (nn/quant.py)

    def validate(self, where: str = "config") -> "LACConfig":
        _check(self.learner in LAC_LEARNERS, f"{where}.learner must be one of {', '.join(LAC_LEARNERS)}, got {self.learner!r}")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
               f"{where}.hidden must list positive layer sizes, got {self.hidden}")
        _check(self.learner != "lac-conv" or len(self.hidden) == 3,
               f"{where}.hidden: lac-conv has three convolutions, got {len(self.hidden)} channel counts")
        _check(1 <= self.encoder_layers <= len(self.hidden),
               f"{where}.encoder_layers must lie in 1..{len(self.hidden)}, got {self.encoder_layers}")
        _check(self.batch_size >= 2, f"{where}.batch_size must be >= 2 (batch norm), got {self.batch_size}")
        _check(self.epochs >= 0, f"{where}.epochs must be >= 0, got {self.epochs}")
        _check(self.target in TARGETS, f"{where}.target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name in ("hidden_lr", "output_lr", "bp_lr"):
            _check(getattr(self, name) > 0, f"{where}.{name} must be > 0, got {getattr(self, name)}")
        _check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.bp_epochs >= 0, f"{where}.bp_epochs must be >= 0, got {self.bp_epochs}")
        self.data.validate(f"{where}.data")
        _check(not self.data.is_sequence, f"{where}.data.dataset: LAC autoencoders take images, "
                                          f"not the sequence data set {self.data.dataset!r}")
        self.downstream.validate(f"{where}.downstream")
        self.quant.validate(f"{where}.quant")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
