"""Typed run configurations, loaded from TOML presets and checked field by field.

A preset is data, not code: ``fwdlearn/presets/<name>.toml``. Every value is validated when it
is loaded, and an invalid one raises a one-line ``ConfigError`` naming the preset and the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from .errors import ConfigError

LEARNER_NAMES = ("scff-mlp", "scff-rnn", "scff-cnn")
SEQUENCE_DATASETS = ("fsdd", "sequences")
POOLS = ("max", "avg")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


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
        _check(self.kernel >= 0, f"{where}.kernel must be >= 0 (0: fully connected), got {self.kernel}")
        _check(0 <= self.padding < max(self.kernel, 1),
               f"{where}.padding must lie in 0..kernel-1, got {self.padding} for kernel {self.kernel}")
        _check(self.pool in POOLS + ("none",), f"{where}.pool must be one of {', '.join(POOLS)}, none, got {self.pool!r}")
        _check(self.pool_size >= 1, f"{where}.pool_size must be >= 1, got {self.pool_size}")
        _check(self.pool_stride >= 1, f"{where}.pool_stride must be >= 1, got {self.pool_stride}")
        _check(0 <= self.pool_padding <= self.pool_size // 2,
               f"{where}.pool_padding must lie in 0..pool_size/2, got {self.pool_padding} for pool_size {self.pool_size}")
        _check(self.readout_pool in POOLS, f"{where}.readout_pool must be one of {', '.join(POOLS)}, got {self.readout_pool!r}")
        _check(self.readout_size >= 1, f"{where}.readout_size must be >= 1, got {self.readout_size}")


@dataclass
class LayerConfig:
    """One SCFF layer and the hyper-parameters of its own optimiser (Tables F.2-F.5).

    ``algorithm`` says how a deeper layer's positive and negative inputs are formed
    (Appendix C): 1 passes the previous layer's positive and negative outputs on, 2 re-pairs
    the previous layer's positive outputs. It is ignored for the first layer, which is
    always fed pairs built from the data.
    """

    width: int
    lr: float
    theta_pos: float
    theta_neg: float
    penalty: float = 0.0           # lambda, weight of the positive-goodness penalty
    weight_decay: float = 0.0      # AdamW weight decay
    lr_decay: float = 1.0          # gamma of the per-epoch exponential schedule
    epochs: int = 1
    algorithm: int = 1
    activation: str = "triangle"   # what is passed on and read out: "triangle" or "relu"
    conv: ConvConfig = field(default_factory=ConvConfig)   # scff-cnn: [layers.conv]; width = channels

    def validate(self, where: str) -> None:
        _check(self.width >= 1, f"{where}.width must be a positive integer, got {self.width}")
        self.conv.validate(f"{where}.conv")
        _check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        _check(self.penalty >= 0, f"{where}.penalty must be >= 0, got {self.penalty}")
        _check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        _check(0 < self.lr_decay <= 1, f"{where}.lr_decay must lie in (0, 1], got {self.lr_decay}")
        _check(self.epochs >= 0, f"{where}.epochs must be >= 0, got {self.epochs}")
        _check(self.algorithm in (1, 2), f"{where}.algorithm must be 1 or 2, got {self.algorithm}")
        _check(self.activation in ("triangle", "relu"),
               f"{where}.activation must be 'triangle' or 'relu', got {self.activation!r}")


@dataclass
class DataConfig:
    """Which data set, and how the two halves of a pair are viewed."""

    dataset: str = "digits"
    translate: int = 0             # each half of a pair is shifted by up to this many pixels
    holdout_speakers: list[str] = field(default_factory=list)   # fsdd: test on these speakers instead
    batching: str = "random"       # sequences: "random" or "by-length" batches (data/batching.py)
    negatives: int = 1             # sequences: negative pairs per positive, each with its own shift
    max_unlabelled: int = 0        # stl10: unlabelled images SCFF trains on (0: all 100,000, 11 GB as float32)
    flip: bool = False             # images: mirror each training image left-right with probability 1/2 (Appendix F)
    crop_pad: int = 0              # images: pad by this many pixels, then crop a random window (Appendix F)

    @property
    def is_sequence(self) -> bool:
        return self.dataset in SEQUENCE_DATASETS

    def validate(self, where: str) -> None:
        from .data import DATASETS
        from .data.batching import BATCHING
        _check(self.dataset in DATASETS, f"{where}.dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        _check(self.translate >= 0, f"{where}.translate must be >= 0, got {self.translate}")
        _check(self.negatives >= 1, f"{where}.negatives must be >= 1, got {self.negatives}")
        _check(self.crop_pad >= 0, f"{where}.crop_pad must be >= 0, got {self.crop_pad}")
        _check(not (self.flip or self.crop_pad) or not self.is_sequence,
               f"{where}.flip and crop_pad apply to image data sets only")
        _check(self.negatives == 1 or self.is_sequence, f"{where}.negatives applies to sequence data sets (scff-rnn)")
        _check(self.max_unlabelled >= 0, f"{where}.max_unlabelled must be >= 0 (0: all), got {self.max_unlabelled}")
        _check(not self.max_unlabelled or self.dataset == "stl10", f"{where}.max_unlabelled applies to the stl10 data set only")
        _check(not self.holdout_speakers or self.dataset == "fsdd",
               f"{where}.holdout_speakers applies to the fsdd data set only")
        _check(self.batching in BATCHING, f"{where}.batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        _check(self.batching == "random" or self.is_sequence,
               f"{where}.batching {self.batching!r} applies to sequence data sets only ({', '.join(SEQUENCE_DATASETS)})")


@dataclass
class BPTTConfig:
    """The back-propagation-through-time baseline of a recurrent learner (same network, trained end to end).

    ``epochs = 0`` skips it. Trained with Adam and cross-entropy through a linear head on the final
    states of both directions; then read out by the same probe as the local learner.
    """

    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    grad_clip: float = 1.0         # largest gradient norm per update (0: no clipping)

    def validate(self, where: str) -> None:
        _check(self.epochs >= 0, f"{where}.epochs must be >= 0, got {self.epochs}")
        _check(self.grad_clip >= 0, f"{where}.grad_clip must be >= 0, got {self.grad_clip}")
        _check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        _check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class ProbeConfig:
    """The linear read-out trained by back-propagation on frozen features (Appendix G)."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    dropout: float = 0.1
    halve_at: list[float] = field(default_factory=lambda: [0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9])
    layers: list[int] = field(default_factory=list)   # 1-based layers concatenated; empty = all
    standardize: bool = False      # standardise each sample's features over units before the read-out

    def validate(self, where: str) -> None:
        _check(self.epochs >= 1, f"{where}.epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        _check(0 <= self.dropout < 1, f"{where}.dropout must lie in [0, 1), got {self.dropout}")
        _check(all(0 < f < 1 for f in self.halve_at), f"{where}.halve_at fractions must lie in (0, 1)")


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
            _check(bits == 0 or 2 <= bits <= 8, f"{where}.{name} must be 0 (float) or 2..8, got {bits}")
        _check(not self.per_channel or self.weight_bits > 0, f"{where}.per_channel needs weight_bits > 0")

    def label(self) -> str:
        if not self.enabled:
            return "float"
        weights = f"w{self.weight_bits}{' per channel' if self.per_channel else ''}" if self.weight_bits else "w float"
        return f"{weights}, a{self.act_bits or ' float'}"


@dataclass
class SCFFConfig:
    """A whole SCFF run: learner, data, layers, schedule, probe, and the end-to-end back-propagation
    baseline on the same network: ``bptt`` for scff-rnn, ``bp`` (supervised) for scff-mlp."""

    name: str
    layers: list[LayerConfig]
    description: str = ""
    learner: str = "scff-mlp"
    seed: int = 0
    batch_size: int = 100
    schedule: str = "sequential"   # "sequential": each layer trained then frozen; "simultaneous": all at once
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    bptt: BPTTConfig = field(default_factory=BPTTConfig)
    bp: BPTTConfig = field(default_factory=lambda: BPTTConfig(batch_size=100, grad_clip=0.0))   # scff-mlp
    quant: QuantConfig = field(default_factory=QuantConfig)

    def validate(self, where: str = "config") -> "SCFFConfig":
        _check(self.learner in LEARNER_NAMES,
               f"{where}.learner must be one of {', '.join(LEARNER_NAMES)}, got {self.learner!r}")
        _check(len(self.layers) >= 1, f"{where}.layers must list at least one layer")
        _check(self.batch_size >= 2, f"{where}.batch_size must be >= 2 (negatives pair different samples), "
                                     f"got {self.batch_size}")
        _check(self.schedule in ("sequential", "simultaneous"),
               f"{where}.schedule must be 'sequential' or 'simultaneous', got {self.schedule!r}")
        for i, layer in enumerate(self.layers):
            layer.validate(f"{where}.layers[{i}]")
        self.data.validate(f"{where}.data")
        self.probe.validate(f"{where}.probe")
        self.bptt.validate(f"{where}.bptt")
        self.bp.validate(f"{where}.bp")
        self.quant.validate(f"{where}.quant")
        recurrent = self.learner == "scff-rnn"
        _check(recurrent == self.data.is_sequence,
               f"{where}.data.dataset {self.data.dataset!r} does not suit learner {self.learner!r} "
               f"(sequence data sets: {', '.join(SEQUENCE_DATASETS)}, for scff-rnn)")
        _check(not recurrent or len(self.layers) == 1,
               f"{where}.layers: scff-rnn trains one bidirectional layer, got {len(self.layers)}")
        _check(recurrent or self.bptt.epochs == 0, f"{where}.bptt applies to scff-rnn only")
        _check(not recurrent or self.bp.epochs == 0,
               f"{where}.bp applies to scff-mlp only (scff-rnn's end-to-end baseline is [bptt])")
        convolutional = self.learner == "scff-cnn"
        for i, layer in enumerate(self.layers):
            _check(layer.conv.enabled == convolutional,
                   f"{where}.layers[{i}].conv.kernel must be >= 1 for scff-cnn" if convolutional else
                   f"{where}.layers[{i}].conv applies to scff-cnn only")
        _check(not convolutional or self.bp.epochs == 0, f"{where}.bp applies to scff-mlp only")
        _check(not convolutional or not self.quant.enabled,
               f"{where}.quant: scff-cnn has no quantised convolution yet (use scff-mlp or scff-rnn)")
        bad = [n for n in self.probe.layers if not 1 <= n <= len(self.layers)]
        _check(not bad, f"{where}.probe.layers must name layers 1..{len(self.layers)}, got {bad}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML value into ``annotation``'s type, or raise a ``ConfigError`` naming ``where``."""
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        _check(isinstance(value, dict), f"{where} must be a table, got {type(value).__name__}")
        return from_dict(annotation, value, where)
    if origin is list:
        (item_type,) = get_args(annotation)
        _check(isinstance(value, list), f"{where} must be a list, got {type(value).__name__}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
        return value
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _check(ok and math.isfinite(value), f"{where} must be a finite number, got {value!r}")
        return float(value)
    if annotation is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer, got {value!r}")
        return value
    if annotation is str:
        _check(isinstance(value, str), f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r}")


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys and wrongly typed values."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files("fwdlearn.presets").iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str) -> SCFFConfig:
    """Load a shipped preset by name (``digits``, ``mnist-paper``) or a TOML file by path."""
    path = Path(name_or_path)
    shipped = resources.files("fwdlearn.presets") / f"{name_or_path}.toml"
    if path.suffix == ".toml" or os.sep in name_or_path or not shipped.is_file():
        where = str(path)
        if path.suffix != ".toml" and not path.exists():
            raise ConfigError(f"unknown preset {name_or_path!r}; shipped presets: {', '.join(preset_names())}")
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"preset {path}: cannot read ({exc.strerror})") from None
    else:
        where, text = f"preset {name_or_path}", shipped.read_text()
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    return config_from_dict(values, where)


def config_class(values: dict[str, Any]) -> type:
    """``LACConfig`` for a ``lac-*`` learner, else ``SCFFConfig``."""
    if str(values.get("learner", "")).startswith("lac"):
        from .lac.config import LACConfig
        return LACConfig
    return SCFFConfig


def config_from_dict(values: dict[str, Any], where: str = "config"):
    """Rebuild a validated config (``SCFFConfig`` or ``LACConfig``) from its ``to_dict()`` output or a preset."""
    return from_dict(config_class(values), values, where).validate(where)
