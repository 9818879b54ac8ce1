"""The autoencoders LAC trains (LAC paper, section 4.1), as ordinary ``nn.Module`` s.

Every layer computes its reaction ``S = BN(W A_prev)`` (Eqs. 2 and 4) and passes on
``A = F(S)`` (Eqs. 3 and 5), ReLU for hidden layers; the output (reconstruction) layer is
``Sigmoid(W A_prev)``. ``passes(x, local=True)`` detaches every layer's input, so a loss on one
layer's reaction can only reach that layer's own parameters; ``forward`` is the ordinary
end-to-end graph (the BP autoencoder baseline and fine-tuning use it).

- ``MLPAutoencoder``: images flattened; hidden ``Linear -> BatchNorm1d -> ReLU`` (MNIST:
  1000-500-250-500-1000); output ``Linear -> Sigmoid`` back to the image.
- ``ConvAutoencoder``: three 3x3 convolutions (strides 1, 1, 2, padding 1) with BatchNorm2d and
  ReLU, then one 3x3 stride-2 transposed convolution and Sigmoid back to the image size.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn


class HiddenLayer(nn.Module):
    """``S = BN(W a)``, ``A = ReLU(S)``: one hidden layer and its own batch norm."""

    def __init__(self, transform: nn.Module, norm: nn.Module):
        super().__init__()
        self.transform, self.norm = transform, norm

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.norm(self.transform(a))
        return s, torch.relu(s)


class Autoencoder(nn.Module):
    """Hidden layers then an output layer; the first ``encoder_layers`` hidden layers are the encoder."""

    def __init__(self, hidden: list[HiddenLayer], output: nn.Module, sample_shape: tuple[int, ...], encoder_layers: int,
                 flatten: bool):
        super().__init__()
        self.hidden = nn.ModuleList(hidden)
        self.output = output
        self.sample_shape = tuple(sample_shape)
        self.encoder_layers = encoder_layers
        self.flatten = flatten

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.sample_shape or not torch.is_floating_point(x):
            raise ValueError(f"expected float images [N, {', '.join(map(str, self.sample_shape))}], "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
        return x.flatten(1) if self.flatten else x

    def passes(self, x: torch.Tensor, local: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One forward pass: every hidden layer's reaction ``S`` and the output image.

        ``local``: each layer's input is detached (no gradient crosses a layer boundary).
        """
        a = self._input(x)
        reactions = []
        for layer in self.hidden:
            s, a = layer(a.detach() if local else a)
            reactions.append(s)
        out = torch.sigmoid(self.output(a.detach() if local else a))
        return reactions, out.view(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction, through the ordinary end-to-end graph."""
        return self.passes(x, local=False)[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output (activity of hidden layer ``encoder_layers``), flattened: ``[N, features]``."""
        a = self._input(x)
        for layer in self.hidden[:self.encoder_layers]:
            a = layer(a)[1]
        return a.flatten(1)

    def hidden_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.hidden for p in layer.parameters()]

    @contextlib.contextmanager
    def frozen_norm_statistics(self):
        """Batch norm normalises with the batch's statistics but leaves its running averages alone.

        Used for LAC's second pass, whose input is a reconstruction: the running statistics the
        encoder uses at evaluation time then describe real images only.
        """
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum


class Encoder(nn.Module):
    """The encoder of an autoencoder (its first hidden layers), for classification."""

    def __init__(self, autoencoder: Autoencoder):
        super().__init__()
        self.layers = nn.ModuleList(list(autoencoder.hidden[:autoencoder.encoder_layers]))
        self.sample_shape, self.flatten = autoencoder.sample_shape, autoencoder.flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(1) if self.flatten else x
        for layer in self.layers:
            a = layer(a)[1]
        return a.flatten(1)


def MLPAutoencoder(sample_shape: tuple[int, ...], hidden: list[int], encoder_layers: int) -> Autoencoder:
    sizes = [int(torch.tensor(sample_shape).prod())] + list(hidden)
    layers = [HiddenLayer(nn.Linear(a, b), nn.BatchNorm1d(b)) for a, b in zip(sizes, sizes[1:])]
    return Autoencoder(layers, nn.Linear(sizes[-1], sizes[0]), sample_shape, encoder_layers, flatten=True)


def ConvAutoencoder(sample_shape: tuple[int, ...], channels: list[int], encoder_layers: int) -> Autoencoder:
    if len(sample_shape) != 3 or sample_shape[1] % 2 or sample_shape[2] % 2:
        raise ValueError(f"lac-conv needs images [C, H, W] with even H and W, got {list(sample_shape)}")
    c = [sample_shape[0]] + list(channels)
    strides = (1, 1, 2)
    layers = [HiddenLayer(nn.Conv2d(a, b, 3, stride=s, padding=1), nn.BatchNorm2d(b))
              for a, b, s in zip(c, c[1:], strides)]
    output = nn.ConvTranspose2d(c[-1], c[0], 3, stride=2, padding=1, output_padding=1)
    return Autoencoder(layers, output, sample_shape, encoder_layers, flatten=False)


def build_autoencoder(config, sample_shape: tuple[int, ...]) -> Autoencoder:
    """The autoencoder of a ``LACConfig`` exactly as a fresh learner initialises it (seeded)."""
    torch.manual_seed(config.seed)
    make = MLPAutoencoder if config.learner == "lac-mlp" else ConvAutoencoder
    return make(tuple(sample_shape), list(config.hidden), config.encoder_layers)
