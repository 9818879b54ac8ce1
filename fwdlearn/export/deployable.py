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

What each rule's graph contains is stated by the rule itself (``Rule.in_graph``, ONNX metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from ..eval.features import probe_inputs
from ..eval.readout import Readout
from ..registry import get_rule


HEAD_BITS = 8   # a quantised model's read-out: 8-bit weights (rounded after training) and 8-bit logits


class DeployedClassifier(nn.Module):
    """``logits = readout(features(encoder(x[, lengths])))``.

    For a quantised encoder the read-out is quantised too: its trained weights rounded to
    ``HEAD_BITS`` bits, and the logits to ``HEAD_BITS`` bits over ``[-bound, bound]`` (the largest
    logit the read-out gave on its training set), so that every tensor leaving the graph is integer
    on a fixed grid and a runtime's result can be compared with PyTorch's to one step.
    """

    def __init__(self, encoder: nn.Module, readout: Readout, quantised: bool = False):
        super().__init__()
        self.encoder = encoder
        self.layers, self.standardized = list(readout.layers), readout.standardized
        if quantised:
            from ..nn.quant import QuantConfig, output_quantizer, quant_linear
            self.head = quant_linear(readout.weight.shape[1], readout.weight.shape[0], QuantConfig(weight_bits=HEAD_BITS))
            self.head.load_state_dict(readout.linear().state_dict())
            self.output_quant = output_quantizer(HEAD_BITS, readout.logit_bound)
        else:
            self.head = readout.linear()
            self.output_quant = nn.Identity()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.encoder(x) if lengths is None else self.encoder(x, lengths))

    def classify(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The logits of the encoder's per-layer ``features``: the read-out and, if quantised, the output grid."""
        return self.output_quant(self.head(probe_inputs(features, self.layers, self.standardized)))

    def output_step(self) -> float:
        """The spacing of the output grid (0 for a float model)."""
        if isinstance(self.output_quant, nn.Identity):
            return 0.0
        return float(self.output_quant.act_quant.scale())


@dataclass
class Deployable:
    """What an exporter needs: the module, example inputs of the right shapes, and their description."""

    model: DeployedClassifier
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    learner: str
    readout: Readout
    config: object
    output_names: list[str] = field(default_factory=lambda: ["logits"])   # what the tracers name the outputs

    @property
    def is_sequence(self) -> bool:
        return len(self.input_names) == 2

    @property
    def quantised(self) -> bool:
        return is_quantised(self.config)


def is_quantised(config) -> bool:
    """Whether a run's config (SCFF or LAC) trained quantised layers."""
    return config.quant.enabled


def _load_weights(module: nn.Module, state: dict, checkpoint: Path) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not match its configuration ({str(exc).splitlines()[0]})") from None


def build_encoder(payload: dict, checkpoint: Path) -> nn.Module:
    """The trained encoder of a checkpoint as the probe reads it (per-layer features), in evaluation mode."""
    config = payload["config"]
    learner = get_rule(config.learner).learner
    network = learner.build_network(config, payload["input_dim"])
    _load_weights(network, payload["state"]["network"], checkpoint)
    return learner.probe_network(network).eval()


def default_readout(checkpoint: Path) -> Path:
    """``readout.pt`` beside the checkpoint (written by ``train``), else in ``eval/`` (written by ``eval``)."""
    beside = checkpoint.parent / "readout.pt"
    evaluated = checkpoint.parent / "eval" / "readout.pt"
    return evaluated if not beside.exists() and evaluated.exists() else beside


def load_deployable(checkpoint: str | Path, readout: str | Path | None = None, batch: int = 2,
                    sequence_length: int | None = None) -> Deployable:
    """Encoder of ``checkpoint`` plus the read-out (default: ``default_readout``).

    Refuses an unfinished run and a read-out trained for another network or data set.
    ``sequence_length`` (recurrent models): frames of the example input; default the longest
    training sequence (the exported graph unrolls that many steps).
    """
    checkpoint = Path(checkpoint)
    payload = load_checkpoint(checkpoint)
    if not payload["finished"]:
        raise CheckpointError(f"{checkpoint}: the run has not finished training; finish it (run the same "
                              f"'fwdlearn train' command again) before exporting")
    config = payload["config"]
    if sequence_length is not None and not get_rule(config.learner).sequence:
        raise CheckpointError(f"--sequence-length applies to recurrent models; {checkpoint} holds a "
                              f"{config.learner} network of fixed-size inputs")
    readout_path = Path(readout) if readout else default_readout(checkpoint)
    head = Readout.load(readout_path)
    head.check_bound(readout_path, payload["state"]["network"], checkpoint)
    if head.dataset != config.data.dataset:
        raise CheckpointError(f"{readout_path}: read-out trained on {head.dataset}, but {checkpoint} on "
                              f"{config.data.dataset}")
    encoder = build_encoder(payload, checkpoint)
    if is_quantised(config) and not head.logit_bound > 0:
        raise CheckpointError(f"{readout_path}: read-out has no logit range for the quantised output "
                              f"(written by an older fwdlearn); run 'fwdlearn eval' on the checkpoint again")
    return deployable_from(encoder, head, config, readout_path, checkpoint, batch, sequence_length)


def deployable_from(encoder: nn.Module, head: Readout, config, readout_path: str | Path = "readout",
                    checkpoint: str | Path = "encoder", batch: int = 2, sequence_length: int | None = None
                    ) -> Deployable:
    """The encoder (in evaluation mode) joined to ``head``, with example inputs of ``batch`` samples (recurrent
    models: ``sequence_length`` frames, default the read-out's, and random lengths but the first), checked to
    give one logit per class. ``readout_path`` and ``checkpoint`` name them in errors."""
    model = DeployedClassifier(encoder, head, quantised=is_quantised(config)).eval()
    if get_rule(config.learner).sequence:
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
    except (RuntimeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{readout_path}: read-out does not fit the network of {checkpoint} "
                              f"({str(exc).splitlines()[0]})") from None
    if logits.shape != (batch, len(head.class_names)):
        raise CheckpointError(f"{readout_path}: read-out gives {tuple(logits.shape)} outputs for {batch} samples")
    return Deployable(model, example, names, config.learner, head, config)
