"""The trained linear read-out of a run, saved beside its checkpoint so the model can be deployed.

``readout.pt`` holds the read-out's weights and everything a deployer needs to feed it: which
layers' features it reads (and whether they are standardised per sample first), the data set's
sample shape and class names, and the test accuracy it reached. ``fwdlearn export`` joins it to
the checkpoint's encoder (``fwdlearn.export``) only if the encoder is the one it was trained on:
``encoder_digest`` (``digest.network_digest`` of the encoder's weights) must match the checkpoint's
(``check_bound``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..atomic import read_torch_dict, save_torch
from ..digest import network_digest
from ..errors import CheckpointError
from .features import probe_inputs

FORMAT = "fwdlearn-readout"
VERSION = 2   # 2: encoder_digest


@dataclass
class Readout:
    """``logits = weight @ features + bias`` on the concatenated features of ``layers`` (1-based)."""

    weight: torch.Tensor            # [classes, features]
    bias: torch.Tensor              # [classes]
    layers: list[int]
    standardized: bool
    dataset: str
    class_names: tuple[str, ...]
    sample_shape: tuple[int, ...]   # one sample (images [C, H, W]; sequences [T, F] with T padded)
    test_accuracy: float
    dataset_meta: dict = field(default_factory=dict)
    logit_bound: float = 0.0        # largest |logit| on the training set (range of quantised logits)
    encoder_digest: str = ""        # network_digest of the encoder's state_dict it was trained on

    def features(self, per_layer: list[torch.Tensor]) -> torch.Tensor:
        return probe_inputs(per_layer, self.layers, self.standardized)

    def linear(self) -> torch.nn.Linear:
        layer = torch.nn.Linear(self.weight.shape[1], self.weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(self.weight)
            layer.bias.copy_(self.bias)
        return layer

    def save(self, path: str | Path) -> Path:
        state = asdict(self)
        state.update(format=FORMAT, version=VERSION, class_names=list(self.class_names),
                     sample_shape=list(self.sample_shape))
        return save_torch(state, path)

    @classmethod
    def load(cls, path: str | Path) -> "Readout":
        path = Path(path)
        state = read_torch_dict(path, "read-out file",
                                "no trained read-out (run 'fwdlearn eval' on the checkpoint to train one)", FORMAT)
        del state["format"]
        if state.pop("version", None) != VERSION:
            raise CheckpointError(f"{path}: read-out file version is not supported (this fwdlearn reads {VERSION}); "
                                  f"run 'fwdlearn eval' on its checkpoint to train a new one")
        state["class_names"] = tuple(state["class_names"])
        state["sample_shape"] = tuple(state["sample_shape"])
        readout = cls(**state)
        if readout.weight.shape[0] != len(readout.class_names) or readout.bias.shape != (len(readout.class_names),):
            raise CheckpointError(f"{path}: read-out weights do not match its {len(readout.class_names)} classes")
        return readout

    def check_bound(self, path: str | Path, network_state: dict, checkpoint: str | Path) -> None:
        """Refuse, in one line naming both files, a read-out trained on another network than ``checkpoint``'s."""
        found = network_digest(network_state)
        if self.encoder_digest != found:
            raise CheckpointError(f"{path} was trained on another network (encoder {self.encoder_digest or '?'}) "
                                  f"than {checkpoint} (encoder {found}); use the read-out of that run, or run "
                                  f"'fwdlearn eval {checkpoint}' to train one")
