"""Activations passed between local layers."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import tracing_for_accelerators


def _channel_map(z: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """``matrix`` (a constant) applied over the channels of ``z``: a dense map, or a 1x1 convolution on maps."""
    n = z.shape[1]
    weight = torch.from_numpy(matrix.astype(np.float32)).to(z.dtype)   # symmetric: its own transpose
    return z @ weight if z.dim() == 2 else F.conv2d(z, weight.view(n, n, 1, 1))


def _traced(z: torch.Tensor, channel_dim: int) -> bool:
    return tracing_for_accelerators() and channel_dim == 1 and z.dim() in (2, 4)


def triangle(z: torch.Tensor, channel_dim: int = 1, gain: float = 1.0) -> torch.Tensor:
    """"Triangle" (Coates et al.; SCFF Methods): subtract the across-channel mean, then ReLU (of ``gain z``).

    Traced for an accelerator (``data.transforms.accelerator_tracing``), the centring is the linear map
    ``gain (I - 1/n)`` over the ``n`` channels (a dense layer, or a 1x1 convolution on maps): the same values,
    without a reduction node."""
    if _traced(z, channel_dim):
        n = z.shape[1]
        return torch.relu(_channel_map(z, gain * (np.eye(n) - 1.0 / n)))
    z = z if gain == 1.0 else gain * z
    return torch.relu(z - z.mean(dim=channel_dim, keepdim=True))


def relu(z: torch.Tensor, channel_dim: int = 1, gain: float = 1.0) -> torch.Tensor:
    """ReLU of ``gain z`` (traced for an accelerator with ``gain != 1``: the map ``gain I``, see ``doubled``)."""
    if gain != 1.0:
        return torch.relu(_channel_map(z, gain * np.eye(z.shape[1])) if _traced(z, channel_dim) else gain * z)
    return torch.relu(z)


def doubled(z: torch.Tensor) -> torch.Tensor:
    """``2 z``: a paired layer's pre-activation from its one projection (the pair ``[x, x]`` meets ``W`` twice).

    Traced for an accelerator it stays ``z`` and the layer's ``passed`` applies the 2 (``pair_gain``) inside its
    channel map: hls4ml fails to move a constant scale below a linear map, and qonnx's clean-up renames only
    one input of ``z + z``."""
    return z if tracing_for_accelerators() else 2.0 * z


def pair_gain(paired: bool) -> float:
    """The factor ``passed`` applies to a pre-activation ``doubled`` left undoubled (2 for a traced paired layer)."""
    return 2.0 if paired and tracing_for_accelerators() else 1.0


ACTIVATIONS = {"triangle": triangle, "relu": relu}


def triangle_(z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """``triangle`` in place (for a pre-activation no one else reads): no temporary the size of ``z``."""
    return z.sub_(z.mean(dim=channel_dim, keepdim=True)).relu_()


IN_PLACE = {"triangle": triangle_, "relu": lambda z, channel_dim=1: z.relu_()}
