"""Hinton's Forward-Forward objective, supervised version, as pure tensor functions.

Read against G. Hinton (2022), "The Forward-Forward Algorithm: Some Preliminary Investigations",
arXiv:2212.13345:

* Section 2: the goodness of a layer is the sum of its squared activities,
  ``G = sum_j y_j^2``, and the probability that the input is positive is
  ``p(positive) = sigma(G - theta)``. Each layer is trained to raise ``G`` above ``theta`` for
  positive data and to lower it below ``theta`` for negative data:

      L = -log sigma(G_pos - theta) - log sigma(theta - G_neg)
        = softplus(theta - G_pos) + softplus(G_neg - theta)

* Section 2.1: before a hidden vector is passed to the next layer its length is normalised, so
  only its orientation is passed on and the next layer cannot solve its task from the previous
  layer's goodness alone.

* Section 3.3 ("A simple supervised example of FF"): the label is written into the first
  ``C`` entries of the input as a one-hot vector. Positive data carry the correct label, negative
  data a wrong one. A test sample is classified by running the net once per label and picking
  the label with the highest accumulated goodness (Hinton accumulates over all but the first
  hidden layer). A quicker read-out runs the net once with a *neutral* label (every label entry
  ``0.1`` for MNIST's ten classes) and feeds the activities to a linear classifier.

Nothing here holds state or parameters; the layer lives in ``fwdlearn.nn.ff_layer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _flat_with_room(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``x`` flattened to ``[N, D]`` (a copy), after checking ``D > num_classes``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    flat = x.flatten(1).clone()
    if flat.shape[1] <= num_classes:
        raise ValueError(f"input has {flat.shape[1]} features, needs more than num_classes={num_classes}")
    return flat


def overlay_label(x: torch.Tensor, labels: torch.Tensor, num_classes: int, value: float = 1.0) -> torch.Tensor:
    """Write the one-hot label (times ``value``) into the first ``num_classes`` entries (section 3.3).

    ``x`` is ``[N, ...]`` and is not modified; the result is ``[N, D]`` with ``D = prod(...)``.
    Entries ``num_classes:`` are ``x``'s own. Hinton's MNIST nets replace the first ten pixels,
    which are black in every digit, so nothing of the image is lost.

    >>> overlay_label(torch.zeros(1, 4), torch.tensor([1]), num_classes=2)
    tensor([[0., 1., 0., 0.]])
    """
    flat = _flat_with_room(x, num_classes)
    if labels.shape != (flat.shape[0],):
        raise ValueError(f"labels must have shape ({flat.shape[0]},), got {tuple(labels.shape)}")
    one_hot = F.one_hot(labels.long().to(flat.device), num_classes).to(flat.dtype)
    flat[:, :num_classes] = one_hot * value
    return flat


def overlay_neutral(x: torch.Tensor, num_classes: int, value: float = 1.0) -> torch.Tensor:
    """Write the neutral label ``value / num_classes`` into each of the first ``num_classes`` entries.

    Section 3.3: for the one-pass linear read-out Hinton runs the net with "a neutral label
    composed of entries of 0.1" (ten classes, ``value = 1``). The label entries sum to ``value``.
    """
    flat = _flat_with_room(x, num_classes)
    flat[:, :num_classes] = value / num_classes
    return flat


def wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from each sample's own (negative data, section 3.3).

    Draws ``r`` uniformly from ``1 .. C-1`` with ``generator`` on the CPU and returns
    ``(labels + r) % C`` on ``labels.device``: every other label is equally likely and the true
    one never occurs. The draws do not depend on the device, so a seed gives the same labels on
    CPU and accelerator.
    """
    if num_classes < 2:
        raise ValueError(f"wrong labels need at least 2 classes, got {num_classes}")
    r = torch.randint(1, num_classes, labels.shape, generator=generator, device="cpu")
    return ((labels.long().cpu() + r) % num_classes).to(labels.device)


def length_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / (||x||_2 + eps)`` per sample, the norm taken over dim 1 (section 2.1).

    Only the orientation of the previous layer's activity vector is passed on; its length, which
    carries that layer's goodness, is removed.
    """
    return x / (x.norm(dim=1, keepdim=True) + eps)


def ff_goodness(y: torch.Tensor) -> torch.Tensor:
    """Sum over units of ``y^2`` (section 2), one value per sample: ``[N, units] -> [N]``.

    >>> ff_goodness(torch.tensor([[1.0, 3.0]]))
    tensor([10.])
    """
    return y.square().sum(dim=1)


@dataclass(frozen=True)
class FFLossTerms:
    """The loss and the quantities worth plotting (scalars; the goodness means are detached)."""

    loss: torch.Tensor
    goodness_pos: torch.Tensor
    goodness_neg: torch.Tensor


def ff_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, theta: float) -> FFLossTerms:
    """The FF layer loss from positive and negative goodness ``[N_pos]``, ``[N_neg]`` (section 2).

        loss = mean softplus(theta - G_pos) + mean softplus(G_neg - theta)
             = mean[-log sigma(G_pos - theta)] + mean[-log sigma(theta - G_neg)]

    written with ``softplus`` for numerical stability.
    """
    if g_pos.dim() != 1 or g_neg.dim() != 1:
        raise ValueError(f"goodness must be [N], got {tuple(g_pos.shape)} and {tuple(g_neg.shape)}")
    loss = F.softplus(theta - g_pos).mean() + F.softplus(g_neg - theta).mean()
    return FFLossTerms(loss, g_pos.mean().detach(), g_neg.mean().detach())


def ff_loss_gradient(y_pos: torch.Tensor, y_neg: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ``dL/dy`` of ``ff_loss(ff_goodness(y_pos), ff_goodness(y_neg), theta)``.

        dL/dy_pos = -sigma(theta - G_pos) * 2 y_pos / N_pos
        dL/dy_neg =  sigma(G_neg - theta) * 2 y_neg / N_neg

    (``d softplus(a)/da = sigma(a)``, ``dG/dy = 2y``.) This is the quantity a chip would compute
    locally at each layer: one scalar per sample times that sample's own activity, with no
    backward pass through the network. Returns ``(grad_pos, grad_neg)`` shaped like the inputs.
    """
    g_pos, g_neg = ff_goodness(y_pos), ff_goodness(y_neg)
    scale_pos = -torch.sigmoid(theta - g_pos) * 2.0 / y_pos.shape[0]
    scale_neg = torch.sigmoid(g_neg - theta) * 2.0 / y_neg.shape[0]
    return scale_pos.unsqueeze(1) * y_pos, scale_neg.unsqueeze(1) * y_neg


def classify_by_goodness(goodness_per_label: torch.Tensor) -> torch.Tensor:
    """The label with the highest (accumulated) goodness, ``[N, C] -> [N]`` (section 3.3).

    Column ``c`` holds the goodness of each sample run with label ``c`` overlaid, summed over the
    layers that take part (Hinton: all but the first hidden layer).
    """
    if goodness_per_label.dim() != 2:
        raise ValueError(f"goodness_per_label must be [N, C], got {tuple(goodness_per_label.shape)}")
    return goodness_per_label.argmax(dim=1)
