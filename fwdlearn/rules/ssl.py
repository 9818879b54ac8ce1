"""The back-propagation self-supervised baselines as a rule: ``ssl-mlp`` trains the SCFF MLP encoder, built
exactly as ``scff-mlp`` builds it (same layers, same seeded initialisation), end to end with one of SimCLR,
MoCo v2, BYOL, SimSiam, Barlow Twins, VICReg or SCE (``ssl.method``; ``baselines/self_supervised.py``), then
reads it with the same linear probe. It answers what a local rule gives up against back-propagation
learning without labels on the same network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..baselines.self_supervised import SelfSupervisedConfig, SelfSupervisedLearner
from ..config import DataConfig, ProbeConfig, RunConfig, check_run_name
from ..errors import DataError, check
from ..nn.quant import QuantConfig
from ..nn.scff_network import SCFFNetwork
from ..rule import Rule
from ..views import RECIPES, ImageViews
from .scff import MLP_GRAPH

ACTIVATIONS = ("triangle", "relu")


@dataclass
class SSLConfig(SelfSupervisedConfig, RunConfig):
    """A whole ``ssl-mlp`` run: the method's settings (``SelfSupervisedConfig``), the encoder's layer ``widths``
    and ``activation`` (as ``scff-mlp`` builds them), the two-view recipe ``views`` (``fwdlearn.views``)."""

    name: str = "ssl"
    widths: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "triangle"
    views: str = "simclr"
    description: str = ""
    learner: str = "ssl-mlp"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)   # float only (not quantisable); kept for the run path

    def validate(self, where: str = "config") -> "SSLConfig":
        check_run_name(self.name, where)
        check(len(self.widths) >= 1 and all(w >= 1 for w in self.widths),
              f"{where}.widths must list positive layer sizes, got {self.widths}")
        check(self.activation in ACTIVATIONS, f"{where}.activation must be one of {', '.join(ACTIVATIONS)}, "
                                              f"got {self.activation!r}")
        check(self.views in RECIPES, f"{where}.views must be one of {', '.join(RECIPES)}, got {self.views!r}")
        super().validate(where)
        self.data.validate(f"{where}.data")
        check(not self.data.is_sequence, f"{where}.data.dataset: ssl-mlp takes images, not the sequence data set "
                                         f"{self.data.dataset!r}")
        self.probe.validate(f"{where}.probe", len(self.widths))
        return self


def concatenated_features(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the heads read: every layer's output, concatenated (the probe's default read-out)."""
    return torch.cat(encoder(x), dim=1)


class LazyImageViews:
    """``ImageViews`` of the recipe, built for the shape of the first batch it sees (images in [0, 1])."""

    def __init__(self, recipe: str):
        self.recipe, self.views = recipe, None

    def __call__(self, x: torch.Tensor, generator: torch.Generator):
        if self.views is None:
            self.views = ImageViews(self.recipe, tuple(x.shape[1:]))
        return self.views(x, generator)


class SSLLearner(SelfSupervisedLearner):
    """``SelfSupervisedLearner`` on the encoder ``scff-mlp`` builds, for the run path."""

    def __init__(self, config: SSLConfig, input_dim, device: str | torch.device = "cpu"):
        self.check_config(config, "config")
        self.input_dim = input_dim
        super().__init__(self.build_network(config, input_dim), concatenated_features, sum(config.widths),
                         LazyImageViews(config.views), config, config.seed, device)

    @staticmethod
    def build_network(config: SSLConfig, input_dim) -> torch.nn.Module:
        """The ``scff-mlp`` encoder exactly as that rule initialises it (also the untrained baseline)."""
        torch.manual_seed(config.seed)
        n = len(config.widths)
        return SCFFNetwork(input_dim, list(config.widths), [1] * n, [config.activation] * n, QuantConfig())

    @staticmethod
    def num_probe_layers(config) -> int:
        return len(config.widths)

    @staticmethod
    def describe(config, input_dim) -> str:
        return "-".join(map(str, [input_dim, *config.widths])) + f" ({config.method}, back-propagation)"

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if lengths is not None or x.dim() != 4:
            raise DataError(f"ssl-mlp trains on images [N, C, H, W], got shape {list(x.shape)}")


RULES = (
    Rule(name="ssl-mlp", label="SSL (BP)", learner=SSLLearner, config=SSLConfig, local=False, quantisable=False,
         summary="back-propagation self-supervised baseline (SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, VICReg, "
                 "SCE) on the scff-mlp encoder",
         presets={None: "ssl-digits"}, in_graph=MLP_GRAPH),
)
