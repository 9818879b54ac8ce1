"""Training-image augmentations of SCFF Appendix F, as plain tensor operations (no torchvision).

CIFAR-10: random horizontal flip. STL-10: ``RandomCrop(96, padding=4)`` then random horizontal
flip. They are applied to each training batch before its pairs are formed, so both halves of
a positive pair are the same augmented image, as when the paper's data loader transforms each
image once per epoch. The probe's features are not augmented (a frozen-feature probe reads each
image once; Appendix G's augmented probe is not reproduced).

All random numbers come from the given CPU generator (so a resumed run repeats an uninterrupted
one) and are moved to the batch's device; a batch on CUDA is augmented there.
"""

from __future__ import annotations

import torch

from .transforms import random_translate


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each ``[N, C, H, W]`` image left-right with probability ``p`` (``RandomHorizontalFlip``)."""
    flipped = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flipped[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Pad each ``[N, C, H, W]`` image by ``pad`` zeros on every side, then crop an ``H x W`` window at
    its own random offset (``RandomCrop(size, padding=pad)``).

    A window at offset ``(i, j)`` of the padded image, ``i, j`` in ``0..2 pad``, is the image translated by
    ``(pad - i, pad - j)`` with zeros shifted in: the same operation as ``random_translate``, reused.
    The data are already normalised here, so the zeros are the data set's mean colour rather than
    torchvision's black (which it pads before normalising).
    """
    return random_translate(x, pad, generator)


def augment(x: torch.Tensor, generator: torch.Generator, crop_pad: int = 0, flip: bool = False) -> torch.Tensor:
    """Random crop after ``crop_pad`` pixels of padding, then a random left-right flip (torchvision's
    order); identity if neither is asked for."""
    if crop_pad:
        x = random_crop(x, crop_pad, generator)
    if flip:
        x = random_flip(x, generator)
    return x
