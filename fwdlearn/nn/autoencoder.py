"""The autoencoders LAC trains (LAC paper, section 4.1), as ordinary ``nn.Module`` s.

``reconstruction_error`` is the test metric of every autoencoder (LAC's and the BP baseline's).

Every layer computes its reaction ``S = BN(W A_prev)`` (Eqs. 2 and 4) and passes on
``A = F(S)`` (Eqs. 3 and 5), ReLU for hidden layers; the output (reconstruction) layer is
``Sigmoid(W A_prev)``. ``passes(x, local=True)`` detaches every layer's input, so a loss on one
layer's reaction can only reach that layer's own parameters; ``forward`` is the ordinary
end-to-end graph (the BP autoencoder baseline and fine-tuning use it). LAC's update runs the
layers one at a time itself (``HiddenLayer.reaction``, ``Autoencoder.reconstruct``), so that it
holds one layer's graph at a time.

- ``MLPAutoencoder``: images flattened; hidden ``Linear -> BatchNorm1d -> ReLU`` (MNIST:
  1000-500-250-500-1000); output ``Linear -> Sigmoid`` back to the image.
- ``ConvAutoencoder``: three 3x3 convolutions (strides 1, 1, 2, padding 1) with BatchNorm2d and
  ReLU, then one 3x3 stride-2 transposed convolution and Sigmoid back to the image size.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .quant import QuantConfig, input_quantizer, quant_conv2d, quant_conv_transpose2d, quant_linear


class HiddenLayer(nn.Module):
    """``S = BN(W a)``, ``A = ReLU(S)``: one hidden layer and its own batch norm.

    ``input_quant`` (quantised networks, ``nn/quant.py``) rounds ``a`` before the weights see it;
    it belongs to this layer, so only this layer's contrast trains its scale.
    """

    def __init__(self, transform: nn.Module, norm: nn.Module, input_quant: nn.Module | None = None):
        super().__init__()
        self.transform, self.norm = transform, norm
        self.input_quant = input_quant or nn.Identity()

    def reaction(self, a: torch.Tensor) -> torch.Tensor:
        """``S = BN(W a)`` (Eqs. 2 and 4) alone, without the activity."""
        return self.norm(self.transform(self.input_quant(a)))

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.reaction(a)
        return s, torch.relu(s)


# Initial range of the unsigned input quantisers: pixels lie in [0, 1]; a hidden layer's input is
# ReLU(BN(.)), the positive half of a roughly unit-variance reaction.
PIXEL_CLIP, REACTION_CLIP = 1.0, 3.0


def _input_quant(quant: QuantConfig | None, first: bool) -> nn.Module:
    return input_quantizer(quant, signed=False, clip=PIXEL_CLIP if first else REACTION_CLIP)


def _output(transform: nn.Module, quant: QuantConfig | None) -> nn.Module:
    """The reconstruction layer; quantised networks round its input too."""
    if quant is None or not quant.act_bits:
        return transform
    return nn.Sequential(_input_quant(quant, first=False), transform)


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

    def flat_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the first hidden layer takes it (flattened for the MLP), after checking its shape and type."""
        if tuple(x.shape[1:]) != self.sample_shape or not torch.is_floating_point(x):
            raise ValueError(f"expected float images [N, {', '.join(map(str, self.sample_shape))}], "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
        return x.flatten(1) if self.flatten else x

    def passes(self, x: torch.Tensor, local: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One forward pass: every hidden layer's reaction ``S`` and the output image.

        ``local``: each layer's input is detached (no gradient crosses a layer boundary).
        """
        a = self.flat_input(x)
        reactions = []
        for layer in self.hidden:
            s, a = layer(a.detach() if local else a)
            reactions.append(s)
        return reactions, self.reconstruct(a.detach() if local else a, x.shape)

    def reconstruct(self, a: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The output layer on the last hidden activity ``a``: ``Sigmoid(W a)``, as an image of ``shape``."""
        return torch.sigmoid(self.output(a)).view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction, through the ordinary end-to-end graph."""
        return self.passes(x, local=False)[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output (activity of hidden layer ``encoder_layers``), flattened: ``[N, features]``."""
        a = self.flat_input(x)
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


def MLPAutoencoder(sample_shape: tuple[int, ...], hidden: list[int], encoder_layers: int,
                   quant: QuantConfig | None = None) -> Autoencoder:
    sizes = [int(torch.tensor(sample_shape).prod())] + list(hidden)
    layers = [HiddenLayer(quant_linear(a, b, quant), nn.BatchNorm1d(b), _input_quant(quant, first=i == 0))
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    output = _output(quant_linear(sizes[-1], sizes[0], quant), quant)
    return Autoencoder(layers, output, sample_shape, encoder_layers, flatten=True)


def ConvAutoencoder(sample_shape: tuple[int, ...], channels: list[int], encoder_layers: int,
                    quant: QuantConfig | None = None) -> Autoencoder:
    if len(sample_shape) != 3 or sample_shape[1] % 2 or sample_shape[2] % 2:
        raise ValueError(f"lac-conv needs images [C, H, W] with even H and W, got {list(sample_shape)}")
    c = [sample_shape[0]] + list(channels)
    strides = (1, 1, 2)
    layers = [HiddenLayer(quant_conv2d(a, b, 3, quant, stride=s, padding=1), nn.BatchNorm2d(b),
                          _input_quant(quant, first=i == 0))
              for i, (a, b, s) in enumerate(zip(c, c[1:], strides))]
    output = _output(quant_conv_transpose2d(c[-1], c[0], 3, quant, stride=2, padding=1, output_padding=1), quant)
    return Autoencoder(layers, output, sample_shape, encoder_layers, flatten=False)


def build_autoencoder(kind: str, sample_shape: tuple[int, ...], hidden: list[int], encoder_layers: int,
                      quant: QuantConfig | None = None, seed: int = 0) -> Autoencoder:
    """A seeded ``MLPAutoencoder`` (``kind = "mlp"``) or ``ConvAutoencoder`` (``"conv"``)."""
    torch.manual_seed(seed)
    make = MLPAutoencoder if kind == "mlp" else ConvAutoencoder
    return make(tuple(sample_shape), list(hidden), encoder_layers, quant)


def reconstruction_target(x: torch.Tensor, target: str) -> torch.Tensor:
    """What the output layer learns to produce: the image itself or its left-right mirror image."""
    return x.flip(-1) if target == "flip" else x


def reconstruction_error(network: Autoencoder, x: torch.Tensor, target: str, batch_size: int = 1000) -> float:
    """Mean squared error per pixel of the reconstructions of ``x`` (evaluation mode)."""
    was_training = network.training
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size]
            total += float((network(chunk) - reconstruction_target(chunk, target)).square().sum())
    network.train(was_training)
    return total / x.numel()
