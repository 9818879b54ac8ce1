"""Projection and prediction MLP heads of the back-propagation self-supervised baselines (issue 18).

Layouts as the papers use them (``Linear -> BatchNorm -> ReLU`` per hidden layer, then a ``Linear``):
SimCLR v1 projection (Chen et al. 2020, Sec. 2.1): 2 layers, no batch norm; BYOL projection and prediction
(Grill et al. 2020, Sec. 3.3): 2 layers, batch norm on the hidden layer only; SimSiam projection (Chen & He
2021, Sec. 4): 3 layers, batch norm on every layer including the output; SimSiam prediction: 2 layers,
bottleneck hidden width, no batch norm on the output; Barlow Twins / VICReg expander: 3 layers, batch norm
on the hidden layers. ``depth``, ``batch_norm`` and ``output_batch_norm`` select among them.
"""

from __future__ import annotations

from torch import nn

from ..errors import check


def _mlp(name: str, in_features: int, hidden_features: int, out_features: int, depth: int,
         batch_norm: bool, output_batch_norm: bool) -> list[nn.Module]:
    """``depth`` linear layers; every layer but the last is followed by (batch norm and) ReLU."""
    for option, value in (("in_features", in_features), ("hidden_features", hidden_features),
                          ("out_features", out_features)):
        check(isinstance(value, int) and value >= 1, f"{name} {option} must be a positive integer, got {value!r}")
    check(isinstance(depth, int) and depth >= 1, f"{name} depth must be an integer >= 1, got {depth!r}")
    widths = [in_features] + [hidden_features] * (depth - 1) + [out_features]
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = index == depth - 1
        followed_by_batch_norm = output_batch_norm if last else batch_norm
        layers.append(nn.Linear(width_in, width_out, bias=not followed_by_batch_norm))  # batch norm re-centres
        if not last:
            layers += [nn.BatchNorm1d(width_out), nn.ReLU()] if batch_norm else [nn.ReLU()]
    if output_batch_norm:
        layers.append(nn.BatchNorm1d(out_features))
    return layers


class ProjectionHead(nn.Sequential):
    """The projector ``g``: encoder features -> embedding. Defaults are BYOL's (2 layers, hidden batch norm)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, depth: int = 2,
                 batch_norm: bool = True, output_batch_norm: bool = False):
        super().__init__(*_mlp("ProjectionHead", in_features, hidden_features, out_features, depth,
                               batch_norm, output_batch_norm))


class PredictionHead(nn.Sequential):
    """The predictor ``q``/``h`` of BYOL and SimSiam: embedding -> prediction of the other branch's embedding.

    Always 2 layers (``Linear -> BatchNorm -> ReLU -> Linear``) in both papers; SimSiam's uses a bottleneck
    ``hidden_features`` (512 for 2048-d embeddings).
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, batch_norm: bool = True):
        super().__init__(*_mlp("PredictionHead", in_features, hidden_features, out_features, 2, batch_norm, False))
