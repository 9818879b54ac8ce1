"""Typed run configurations and the typed loader (``from_dict``) that checks them field by field.

A preset is data, not code: ``fwdlearn/presets/<name>.toml`` (loaded by ``fwdlearn.presets``). Every
value is validated when it is loaded, and an invalid one raises a one-line ``ConfigError`` naming
the preset and the field. The sections every rule shares live here (data, probe, quantisation,
the end-to-end baselines) with ``SCFFConfig``, which three SCFF rules share; a rule with its own
shape declares its config beside its learner (``rules/``). This module imports no rule.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

from .errors import ConfigError, check
from .nn.paired_conv import ConvConfig
from .nn.quant import QuantConfig

SCHEDULES = ("sequential", "simultaneous")
BACKENDS = ("fused", "torch")   # how a local step computes its gradient
SEQUENCE_DATASETS = ("fsdd", "sequences")
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")   # one folder name: no separator, no "..", not hidden


def check_run_name(name: str, where: str) -> None:
    """``name`` names the default run folder ``runs/<name>``, so it must stay one folder inside ``runs/``:
    letters, digits, ``-``, ``_`` and ``.``, not starting with ``.`` (never empty, absolute or ``..``)."""
    check(RUN_NAME.fullmatch(name) is not None,
          f"{where}.name must be one folder name (letters, digits, '-', '_', '.'; not starting with '.'), "
          f"got {name!r}")


def check_backend(backend: str, where: str) -> None:
    """``backend``: ``fused`` (the closed-form local update, methods section 6) or ``torch`` (autograd, the
    reference it is tested against)."""
    check(backend in BACKENDS, f"{where}.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def check_trained_epochs(epochs: int, where: str) -> None:
    """A part the rule trains needs at least one epoch: 0 would report results of an untrained network.
    (A baseline's ``epochs`` may be 0: that skips it.)"""
    check(epochs >= 1, f"{where}.epochs must be >= 1 (0 leaves it untrained), got {epochs}")


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
        check(self.width >= 1, f"{where}.width must be a positive integer, got {self.width}")
        self.conv.validate(f"{where}.conv")
        check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        check(self.penalty >= 0, f"{where}.penalty must be >= 0, got {self.penalty}")
        check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        check(0 < self.lr_decay <= 1, f"{where}.lr_decay must lie in (0, 1], got {self.lr_decay}")
        check_trained_epochs(self.epochs, where)
        check(self.algorithm in (1, 2), f"{where}.algorithm must be 1 or 2, got {self.algorithm}")
        check(self.activation in ("triangle", "relu"),
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
        check(self.dataset in DATASETS, f"{where}.dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        check(self.translate >= 0, f"{where}.translate must be >= 0, got {self.translate}")
        check(self.negatives >= 1, f"{where}.negatives must be >= 1, got {self.negatives}")
        check(self.crop_pad >= 0, f"{where}.crop_pad must be >= 0, got {self.crop_pad}")
        check(not (self.flip or self.crop_pad) or not self.is_sequence,
               f"{where}.flip and crop_pad apply to image data sets only")
        check(self.negatives == 1 or self.is_sequence, f"{where}.negatives applies to sequence data sets (scff-rnn)")
        check(self.max_unlabelled >= 0, f"{where}.max_unlabelled must be >= 0 (0: all), got {self.max_unlabelled}")
        check(not self.max_unlabelled or self.dataset == "stl10", f"{where}.max_unlabelled applies to the stl10 data set only")
        check(not self.holdout_speakers or self.dataset == "fsdd",
               f"{where}.holdout_speakers applies to the fsdd data set only")
        check(self.batching in BATCHING, f"{where}.batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        check(self.batching == "random" or self.is_sequence,
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
        check(self.epochs >= 0, f"{where}.epochs must be >= 0, got {self.epochs}")
        check(self.grad_clip >= 0, f"{where}.grad_clip must be >= 0, got {self.grad_clip}")
        check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")


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
    each_layer: bool = True        # also probe each layer alone (false: the combined read-out only)

    def validate(self, where: str, num_layers: int | None = None) -> None:
        check(self.epochs >= 1, f"{where}.epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")
        check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        check(0 <= self.dropout < 1, f"{where}.dropout must lie in [0, 1), got {self.dropout}")
        check(all(0 < f < 1 for f in self.halve_at), f"{where}.halve_at fractions must lie in (0, 1)")
        if num_layers is not None:
            bad = [n for n in self.layers if not 1 <= n <= num_layers]
            check(not bad, f"{where}.layers must name layers 1..{num_layers}, got {bad}")


class RunConfig:
    """What every rule's config offers the run path: ``to_dict()`` (saved in checkpoints and results)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SCFFConfig(RunConfig):
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
    backend: str = "fused"         # "fused": closed-form gradient, one kernel between two products; "torch": autograd

    def validate(self, where: str = "config") -> "SCFFConfig":
        """Checks every rule using this config shares; each rule adds its own (``Learner.check_config``)."""
        check_run_name(self.name, where)
        check(len(self.layers) >= 1, f"{where}.layers must list at least one layer")
        check(self.batch_size >= 2, f"{where}.batch_size must be >= 2 (negatives pair different samples), "
                                    f"got {self.batch_size}")
        check(self.schedule in SCHEDULES, f"{where}.schedule must be 'sequential' or 'simultaneous', got {self.schedule!r}")
        check_backend(self.backend, where)
        for i, layer in enumerate(self.layers):
            layer.validate(f"{where}.layers[{i}]")
        self.data.validate(f"{where}.data")
        self.probe.validate(f"{where}.probe", len(self.layers))
        self.bptt.validate(f"{where}.bptt")
        self.bp.validate(f"{where}.bp")
        self.quant.validate(f"{where}.quant")
        return self


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML value into ``annotation``'s type, or raise a ``ConfigError`` naming ``where``."""
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        check(isinstance(value, dict), f"{where} must be a table, got {type(value).__name__}")
        return from_dict(annotation, value, where)
    if origin is list:
        (item_type,) = get_args(annotation)
        check(isinstance(value, list), f"{where} must be a list, got {type(value).__name__}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
        return value
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        check(ok and math.isfinite(value), f"{where} must be a finite number, got {value!r}")
        return float(value)
    if annotation is int:
        check(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer, got {value!r}")
        return value
    if annotation is str:
        check(isinstance(value, str), f"{where} must be a string, got {value!r}")
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
