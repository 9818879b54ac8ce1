"""A trained run as one inference module: the encoder a local rule trained, then its linear read-out.

``load_deployable(checkpoint)`` rebuilds the encoder from ``checkpoint.pt`` and joins it to the
read-out saved beside it (``readout.pt``, written by ``fwdlearn train`` and ``fwdlearn eval``).
Everything the network does to its input at inference is inside the module, so the exported
graph needs only the data set's own scaling (``preprocessing``):

- SCFF MLP: per-sample standardisation of the input, each layer's tied-weight pair ``[x, x]``
  (``2 (W std(x) + b)``), the triangle or ReLU passed on, the read-out on the chosen layers.
- SCFF Bi-RNN: per-step standardisation of frames and states, both directions, the final
  states; inputs are ``x`` (``[N, T, F]``, zero-padded) and ``lengths`` (``[N]``, int64).
- LAC: the encoder's Linear/Conv, batch norm with its running statistics, ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from ..eval.features import probe_inputs
from ..eval.readout import Readout


class DeployedClassifier(nn.Module):
    """``logits = readout(features(encoder(*inputs)))``."""

    def __init__(self, encoder: nn.Module, readout: Readout):
        super().__init__()
        self.encoder = encoder
        self.layers, self.standardized = list(readout.layers), readout.standardized
        self.head = readout.linear()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(*inputs)
        if isinstance(features, torch.Tensor):   # a single feature tensor (LAC's encoder)
            features = [features]
        return self.head(probe_inputs(features, self.layers, self.standardized))


@dataclass
class Deployable:
    """What an exporter needs: the module, example inputs of the right shapes, and their description."""

    model: DeployedClassifier
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    learner: str
    readout: Readout
    config: object

    @property
    def is_sequence(self) -> bool:
        return len(self.input_names) == 2


def _load_weights(module: nn.Module, state: dict, checkpoint: Path) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not match its configuration ({str(exc).splitlines()[0]})") from None


def build_encoder(payload: dict, readout: Readout, checkpoint: Path) -> nn.Module:
    """The trained encoder of a checkpoint, in evaluation mode."""
    config = payload["config"]
    if config.learner.startswith("lac"):
        from ..lac.network import Encoder, build_autoencoder
        autoencoder = build_autoencoder(config, readout.sample_shape)
        _load_weights(autoencoder, payload["state"]["network"], checkpoint)
        return Encoder(autoencoder).eval()
    from ..learners import LEARNERS
    network = LEARNERS[config.learner].build_network(config, payload["input_dim"])
    _load_weights(network, payload["state"]["network"], checkpoint)
    return network.eval()


def load_deployable(checkpoint: str | Path, readout: str | Path | None = None, batch: int = 2,
                    sequence_length: int | None = None) -> Deployable:
    """Encoder of ``checkpoint`` plus the read-out (default: ``readout.pt`` beside the checkpoint).

    Refuses an unfinished run and a read-out trained for another network or data set.
    ``sequence_length`` (recurrent models): frames of the example input; default the longest
    training sequence (the exported graph unrolls that many steps).
    """
    checkpoint = Path(checkpoint)
    payload = load_checkpoint(checkpoint)
    if not payload["finished"]:
        raise CheckpointError(f"{checkpoint}: the run has not finished training; finish it (run the same "
                              f"'fwdlearn train' command again) before exporting")
    readout_path = Path(readout) if readout else checkpoint.parent / "readout.pt"
    head = Readout.load(readout_path)
    config = payload["config"]
    if head.dataset != config.data.dataset:
        raise CheckpointError(f"{readout_path}: read-out trained on {head.dataset}, but {checkpoint} on "
                              f"{config.data.dataset}")
    encoder = build_encoder(payload, head, checkpoint)
    model = DeployedClassifier(encoder, head).eval()
    if config.learner == "scff-rnn":
        steps = sequence_length or head.sample_shape[0]
        if steps < 1:
            raise CheckpointError(f"sequence length must be >= 1, got {steps}")
        x = torch.randn(batch, steps, head.sample_shape[-1])
        lengths = torch.full((batch,), steps, dtype=torch.int64)
        lengths[1:] = torch.randint(1, steps + 1, (batch - 1,), generator=torch.Generator().manual_seed(0))
        example, names = (x, lengths), ["x", "lengths"]
    else:
        example, names = (torch.rand(batch, *head.sample_shape),), ["x"]
    try:
        with torch.no_grad():
            logits = model(*example)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{readout_path}: read-out does not fit the network of {checkpoint} "
                              f"({str(exc).splitlines()[0]})") from None
    if logits.shape != (batch, len(head.class_names)):
        raise CheckpointError(f"{readout_path}: read-out gives {tuple(logits.shape)} outputs for {batch} samples")
    return Deployable(model, example, names, config.learner, head, config)
