"""The back-propagation self-supervised baselines as rules: ``ssl-mlp``, ``ssl-cnn`` and ``ssl-rnn`` train the
encoder a local rule builds (``scff-mlp``, ``scff-cnn``, ``scff-rnn``) end to end with one of SimCLR, MoCo v2,
BYOL, SimSiam, Barlow Twins, VICReg or SCE (``method``; ``baselines/self_supervised.py``), then read it with the
same linear probe. They answer what a local rule gives up against back-propagation learning without labels
on the same network.

The encoder is named, not copied: ``encoder`` is a preset of the local rule (``mnist-paper``, ``mnist-conv``,
``fsdd-paper`` ...), and the network is that rule's ``build_network`` of that preset with this run's seed, so
layers and initialisation are the local rule's by construction (the untrained baseline is the same network).
The projection head reads what the probe reads: the probe's layers (``probe.layers``, empty: all) of the
encoder's per-layer features, concatenated; for the Bi-RNN the final states of both directions, so the
loss is back-propagated through every step (BPTT).

Views (``fwdlearn.views``): images get a named two-view recipe (``views``: simclr, byol, sce) scaled to the
image size and applied in pixel space (the data set's normalisation undone, then redone); ``crop_min_scale``
and ``blur_kernel`` replace the recipe's where set. Sequences get time crop, SpecAugment masks and noise
(``views = "mfcc"``; ``time_mask_width`` and ``freq_mask_width``). A setting too large for the data is refused
in one line before the first epoch (``prepare``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..baselines.end_to_end import train_end_to_end
from ..baselines.self_supervised import METHODS, SelfSupervisedConfig, SelfSupervisedLearner
from ..config import BPTTConfig, DataConfig, ProbeConfig, RunConfig, check_run_name, from_dict
from ..data.batching import epoch_batches
from ..errors import DataError, check
from ..eval.features import probe_inputs
from ..learner import Batch, TrainedBaseline
from ..nn.local_birnn import check_sequences
from ..nn.quant import QuantConfig
from ..preset_files import read_preset
from ..rule import Rule
from ..views import RECIPES, ImageViews, SequenceSettings, SequenceViews, recipe_settings
from . import scff, scff_rnn

SEQUENCE_VIEWS = "mfcc"
LOCAL_RULES = {rule.name: rule for rule in (*scff.RULES, *scff_rnn.RULES)}


@dataclass
class SSLConfig(SelfSupervisedConfig, RunConfig):
    """A whole self-supervised run: the method's settings (``SelfSupervisedConfig``), the ``encoder`` (a preset
    of the local rule whose network is trained) and the views."""

    name: str = "ssl"
    encoder: str = "digits"
    views: str = "simclr"
    crop_min_scale: float = 0.0        # images: smallest crop area fraction (0: the recipe's for the image size)
    blur_kernel: int = 0               # images: Gaussian blur kernel side (0: the recipe's for the image size)
    time_mask_width: int = SequenceSettings.time_mask_width   # sequences: widest SpecAugment time mask (frames)
    freq_mask_width: int = SequenceSettings.freq_mask_width   # sequences: widest frequency mask (coefficients)
    description: str = ""
    learner: str = "ssl-mlp"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)   # float only (not quantisable); kept for the run path
    # supervised end-to-end baseline of the same encoder, probed beside (ssl-rnn: BPTT); 0 epochs skips it
    bp: BPTTConfig = field(default_factory=lambda: BPTTConfig(batch_size=100, grad_clip=0.0))

    def validate(self, where: str = "config") -> "SSLConfig":
        check_run_name(self.name, where)
        super().validate(where)
        self.data.validate(f"{where}.data")
        self.bp.validate(f"{where}.bp")
        if self.data.is_sequence:
            check(self.views == SEQUENCE_VIEWS, f"{where}.views must be {SEQUENCE_VIEWS!r} for the sequence data "
                                                f"set {self.data.dataset!r}, got {self.views!r}")
        else:
            check(self.views in RECIPES, f"{where}.views must be one of {', '.join(RECIPES)}, got {self.views!r}")
        check(self.crop_min_scale == 0 or 0 < self.crop_min_scale <= 1,
              f"{where}.crop_min_scale must lie in (0, 1] (0: the recipe's), got {self.crop_min_scale}")
        check(self.blur_kernel == 0 or (self.blur_kernel > 0 and self.blur_kernel % 2 == 1),
              f"{where}.blur_kernel must be a positive odd number (0: the recipe's), got {self.blur_kernel}")
        check(self.time_mask_width >= 0 and self.freq_mask_width >= 0,
              f"{where}.time_mask_width and freq_mask_width must be >= 0, got {self.time_mask_width}, "
              f"{self.freq_mask_width}")
        return self

    @property
    def encoder_config(self):
        """The local rule's config the encoder is built from: preset ``encoder`` with this run's seed."""
        values, where = read_preset(self.encoder)
        local = LOCAL_RULES.get(values.get("learner"))
        check(local is not None, f"{where}: the encoder preset must be one of a rule that builds an encoder "
                                 f"({', '.join(LOCAL_RULES)}), got learner {values.get('learner')!r}")
        config = from_dict(local.config, values, where).validate(where)
        local.learner.check_config(config, where)
        config.seed = self.seed
        return config


def probe_features(encoder: torch.nn.Module, view: Batch, layers: list[int], standardized: bool = False
                   ) -> torch.Tensor:
    """What the probe reads of ``view`` (and so what the heads read): layers ``layers`` (1-based; empty: all) of
    the encoder's per-layer features, flattened, concatenated (``eval.features.probe_inputs``)."""
    if view.lengths is None:
        outputs = encoder(view.x)
    else:
        outputs = encoder(view.x[:, :int(view.lengths.max())], view.lengths)
    return probe_inputs([f.flatten(1) for f in outputs], list(layers) or list(range(1, len(outputs) + 1)),
                        standardized)


class ImageBatchViews:
    """Two views of a ``Batch`` of images (``ImageViews`` of the config's recipe), built for the data's shape and
    normalisation by ``prepare``, else for the first batch's shape with pixels in [0, 1]."""

    def __init__(self, config: SSLConfig):
        self.config, self.views = config, None

    def prepare(self, image_shape: tuple[int, ...], mean: list[float] | None, std: list[float] | None) -> None:
        c = self.config
        settings = recipe_settings(c.views, image_shape)
        changes = {**({"crop_scale": (c.crop_min_scale, 1.0)} if c.crop_min_scale else {}),
                   **({"blur_kernel": c.blur_kernel} if c.blur_kernel else {})}
        self.views = ImageViews(tuple(dataclasses.replace(s, **changes) for s in settings), image_shape, mean, std)

    def __call__(self, batch: Batch, generator: torch.Generator) -> tuple[Batch, Batch]:
        if self.views is None:
            self.prepare(tuple(batch.x.shape[1:]), None, None)
        return tuple(Batch(view) for view in self.views(batch.x, generator))


class SequenceBatchViews:
    """Two views of a ``Batch`` of zero-padded sequences (``SequenceViews``)."""

    def __init__(self, config: SSLConfig):
        self.views = SequenceViews(dataclasses.replace(SequenceSettings(), time_mask_width=config.time_mask_width,
                                                       freq_mask_width=config.freq_mask_width))

    def prepare(self, sample_shape: tuple[int, ...], mean=None, std=None) -> None:
        for number, settings in enumerate(self.views.settings, 1):
            settings.validate(sample_shape[0], sample_shape[1], f"sequence views: view {number}")

    def __call__(self, batch: Batch, generator: torch.Generator) -> tuple[Batch, Batch]:
        return tuple(Batch(x, lengths) for x, lengths in self.views(batch.x, batch.lengths, generator))


class SSLLearner(SelfSupervisedLearner):
    """``SelfSupervisedLearner`` on the encoder of the local rule ``local_rule`` (a subclass per rule)."""

    local_rule = "scff-mlp"

    def __init__(self, config: SSLConfig, input_dim, device: str | torch.device = "cpu"):
        self.check_config(config, "config")
        self.input_dim = input_dim
        encoder = self.build_network(config, input_dim)
        views = SequenceBatchViews(config) if config.data.is_sequence else ImageBatchViews(config)
        features_of, feature_dim = self.read_out(config, encoder, input_dim)
        super().__init__(encoder, features_of, feature_dim, views, config, config.seed, device)

    @classmethod
    def read_out(cls, config: SSLConfig, encoder: torch.nn.Module, input_dim):
        """``features_of(network, view)`` (what the probe reads) and its width."""
        layers, standardized = list(config.probe.layers), config.probe.standardize
        with torch.no_grad():
            feature_dim = probe_features(encoder, cls.example(input_dim), layers, standardized).shape[1]
        return (lambda network, view: probe_features(network, view, layers, standardized)), feature_dim

    @classmethod
    def baselines(cls, config, dataset, input_dim, show_progress, log) -> dict:
        """The same encoder trained end to end by supervised back-propagation (``[bp]``; through time for
        sequences), read by the same probe: what labels buy over the self-supervised objective."""
        if not config.bp.epochs:
            return {}
        name = "bptt" if config.data.is_sequence else "bp"
        network = cls.build_network(config, input_dim)
        features_of, feature_dim = cls.read_out(config, network, input_dim)
        log(f"{name.upper()} baseline: the same encoder trained end to end with labels for {config.bp.epochs} epochs")
        train = dataset.train
        seconds, history = train_end_to_end(network, lambda batch: features_of(network, batch), feature_dim, train.x,
                                            train.y, dataset.num_classes, config.bp, config.seed, show_progress,
                                            config.data.batching, train.lengths)
        return {name: TrainedBaseline(network, seconds, history)}

    @classmethod
    def local(cls):
        return LOCAL_RULES[cls.local_rule]

    @classmethod
    def check_config(cls, config, where: str) -> None:
        local = config.encoder_config
        check(local.learner == cls.local_rule, f"{where}.encoder: preset {config.encoder!r} is for {local.learner}; "
                                               f"{config.learner} trains the {cls.local_rule} encoder")
        check(not local.quant.enabled, f"{where}.encoder: preset {config.encoder!r} is quantised; the "
                                       f"self-supervised baselines train float encoders")
        check(config.data.is_sequence == cls.local().sequence,
              f"{where}.data.dataset {config.data.dataset!r} does not suit {config.learner} "
              f"({'sequences' if cls.local().sequence else 'images'} only)")
        config.probe.validate(f"{where}.probe", cls.local().learner.num_probe_layers(local))

    @classmethod
    def build_network(cls, config: SSLConfig, input_dim) -> torch.nn.Module:
        """The local rule's encoder exactly as that rule initialises it (also the untrained baseline)."""
        return cls.local().learner.build_network(config.encoder_config, input_dim)

    @classmethod
    def network_input(cls, dataset):
        return cls.local().learner.network_input(dataset)

    @classmethod
    def num_probe_layers(cls, config) -> int:
        return cls.local().learner.num_probe_layers(config.encoder_config)

    @classmethod
    def describe(cls, config, input_dim) -> str:
        architecture = cls.local().learner.describe(config.encoder_config, input_dim)
        return f"{architecture} ({config.method}, back-propagation, encoder of {config.encoder})"

    @staticmethod
    def example(input_dim) -> Batch:
        """Two blank samples the encoder accepts (to size the heads)."""
        shape = tuple(input_dim) if isinstance(input_dim, (tuple, list)) else (input_dim,)
        return Batch(torch.zeros(2, *shape))

    def prepare(self, dataset) -> None:
        """Views for the data set's sample shape and normalisation; settings too large are refused here."""
        self.views.prepare(tuple(dataset.sample_shape), dataset.meta.get("mean"), dataset.meta.get("std"))

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if lengths is not None or x.dim() != 4:
            raise DataError(f"{self.config.learner} trains on images [N, C, H, W], got shape {list(x.shape)}")


class SSLConvLearner(SSLLearner):
    local_rule = "scff-cnn"


class SSLRNNLearner(SSLLearner):
    local_rule = "scff-rnn"

    @staticmethod
    def example(input_dim) -> Batch:
        return Batch(torch.zeros(2, 3, input_dim), torch.tensor([3, 2]))

    def draw_batches(self, n: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        """Batches as the local rule draws them (``data.batching``: random or by length)."""
        return epoch_batches(n, self.batch_size(), self.generator, self.config.data.batching, lengths,
                             min_size=self.min_batch)

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if lengths is None:
            raise DataError("ssl-rnn needs sequences with lengths (a sequence data set such as fsdd or sequences)")
        check_sequences(x, lengths, self.network.input_dim)


class GivenViews:
    """Two fixed views for ``fwdlearn bench``: the batch and a copy with fixed noise (augmenting is data
    preparation; the measured update starts from its two views, as SCFF's from its data)."""

    def __init__(self, x: torch.Tensor):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(x.device)
        self.pair = (Batch(x), Batch(x + 0.1 * noise))

    def __call__(self, batch: Batch, generator: torch.Generator) -> tuple[Batch, Batch]:
        return self.pair


def _bench_method(method: str):
    """One update of ``method`` on the scff-mlp encoder with hidden layers ``widths`` (triangle, as SCFF's bench):
    both views forward, heads, loss, the backward pass through every layer, one Adam step, EMA and queue."""
    def build(widths: list[int], x: torch.Tensor):
        from ..nn.scff_network import SCFFNetwork
        config = SelfSupervisedConfig(method=method, batch_size=x.shape[0], queue_size=max(4096, x.shape[0]))
        torch.manual_seed(0)
        n = len(widths)
        encoder = SCFFNetwork(x.shape[1], list(widths), [1] * n, ["triangle"] * n, QuantConfig())
        learner = SelfSupervisedLearner(encoder, lambda network, view: torch.cat(network(view.x), dim=1),
                                        sum(widths), GivenViews(x), config, device=x.device)
        learner.epoch_batches(x.shape[0], None)      # one batch per epoch: the momentum schedule's length
        return learner, Batch(x)
    return build


def _rule(learner: type, presets: dict[str | None, str], bench: dict | None = None) -> Rule:
    local = learner.local()
    return Rule(name=local.name.replace("scff", "ssl"), label="SSL (BP)", learner=learner, config=SSLConfig,
                local=False, quantisable=False, sequence=local.sequence, in_graph=local.in_graph,
                summary=f"back-propagation self-supervised baselines (SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, "
                        f"VICReg, SCE) on the {local.name} encoder",
                presets=presets, bench=bench)


RULES = (
    _rule(SSLLearner, {None: "ssl-digits", "mnist": "ssl-mnist"},
          bench={f"ssl-{method}": _bench_method(method) for method in METHODS}),
    _rule(SSLConvLearner, {None: "ssl-digits-conv", "mnist": "ssl-mnist-conv", "cifar10": "ssl-cifar10"}),
    _rule(SSLRNNLearner, {None: "ssl-sequences", "fsdd": "ssl-fsdd"}),
)
