"""Two augmented views of an image batch for the back-propagation self-supervised baselines (issue 18).

The recipes are the papers' ones, as tabulated in SCE (Denize et al., Table 2) and the Silva 2022
thesis (Listing 3), scaled down to 8x8, 28x28 and 32x32 images:

* ``"simclr"`` (SimCLR, Chen et al. 2020; MoCo v2 uses the same): both views alike, SCE's *strong*:
  random resized crop, flip p=0.5, colour jitter p=0.8 (brightness 0.4, contrast 0.4, saturation 0.4,
  hue 0.1), greyscale p=0.2, Gaussian blur p=0.5, no solarisation;
* ``"byol"`` (BYOL, Grill et al. 2020; Barlow Twins and VICReg use the same): asymmetric, SCE's
  *strong-alpha* / *strong-beta*: jitter p=0.8 (0.4, 0.4, 0.2, 0.1), greyscale p=0.2; first view
  blur p=1.0 and no solarisation, second view blur p=0.1 and solarisation p=0.2;
* ``"sce"`` (SCE's *strong-gamma*): BYOL's jitter, both views blur p=0.5 and solarisation p=0.2.

Scaling to small images (the papers' 224x224 settings, where they do not carry over):

* crop area scale ``(s, 1)`` with ``s`` = 0.08 from 32 pixels a side up (the papers' and SimCLR's CIFAR
  setting), 0.2 from 16 up (28x28 MNIST: an 8% crop of a digit is a 8x8 blob of one stroke), 0.4 below
  (8x8 digits: a crop keeps at least ~5x5 of 8x8 pixels); aspect ratio ``(3/4, 4/3)``, log-uniform;
* blur kernel 10% of the side as in SimCLR, odd and at least 3: 3x3 for 8, 28 and 32 pixels;
  sigma uniform in (0.1, 2.0), halved to (0.1, 1.0) below 16 pixels, where a 3x3 kernel with
  sigma 2 is already a box filter over a third of the image;
* solarisation threshold 0.5 (BYOL's 128/255, near enough) in [0, 1] pixel space.

Colour operations (jitter, greyscale) need three channels; on a one-channel image they are
skipped, whatever the recipe says. Images arrive normalised per channel (CIFAR-10's
``(x / 255 - mean[c]) / std[c]``, see ``fwdlearn.data.channel_norm``; digits and MNIST are already in
[0, 1], i.e. mean 0 and std 1): each view is un-normalised to [0, 1], augmented, clamped to [0, 1]
and re-normalised, so jitter, greyscale and solarisation act on pixel values as in the papers.

Kornia's augmentation modules draw from the global RNG; here every random number is drawn from
the ``torch.Generator`` passed in (on the CPU, then moved to the batch's device) and applied with
kornia's functional operations, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.color import rgb_to_grayscale
from kornia.enhance import (adjust_brightness_accumulative, adjust_contrast_with_mean_subtraction, adjust_hue,
                            adjust_saturation_with_gray_subtraction)
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import crop_and_resize

from ..errors import check

CROP_TRIES = 10                # torchvision's RandomResizedCrop attempts, before falling back to the whole image
SOLARISE_THRESHOLD = 0.5
RECIPES = ("simclr", "byol", "sce")


@dataclass(frozen=True)
class ViewSettings:
    """One view's augmentation distribution (probabilities in [0, 1], pixel values in [0, 1])."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grey_p: float = 0.2
    blur_p: float = 0.5
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarise_p: float = 0.0

    def validate(self, image_shape: tuple[int, int, int], where: str = "view") -> None:
        """Refuse, in one line naming ``where``, settings that cannot apply to ``[C, H, W]`` images."""
        check(len(image_shape) == 3 and all(int(s) >= 1 for s in image_shape),
              f"{where}: image_shape must be [C, H, W] with positive sizes, got {list(image_shape)}")
        channels, height, width = image_shape
        check(channels in (1, 3), f"{where}: images must have 1 or 3 channels, got {channels}")
        for name in ("flip_p", "jitter_p", "grey_p", "blur_p", "solarise_p"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"{where}: {name}={value} is not a probability in [0, 1]")
        low, high = self.crop_scale
        check(0.0 < low <= high <= 1.0,
              f"{where}: crop_scale={self.crop_scale} must satisfy 0 < min <= max <= 1 "
              "(a crop larger than the image is impossible)")
        check(0.0 < self.crop_ratio[0] <= self.crop_ratio[1],
              f"{where}: crop_ratio={self.crop_ratio} must satisfy 0 < min <= max")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"{where}: {name}={value} must lie in [0, 1]")
        check(0.0 <= self.hue <= 0.5, f"{where}: hue={self.hue} must lie in [0, 0.5]")
        check(self.blur_kernel >= 1 and self.blur_kernel % 2 == 1,
              f"{where}: blur_kernel={self.blur_kernel} must be a positive odd number")
        check(self.blur_kernel <= min(height, width),
              f"{where}: blur_kernel={self.blur_kernel} is larger than the {height}x{width} image")
        check(0.0 < self.blur_sigma[0] <= self.blur_sigma[1],
              f"{where}: blur_sigma={self.blur_sigma} must satisfy 0 < min <= max")


def scaled_settings(side: int, **recipe) -> ViewSettings:
    """``ViewSettings`` of a recipe, with crop scale, blur kernel and sigma scaled to ``side`` pixels."""
    min_scale = 0.08 if side >= 32 else 0.2 if side >= 16 else 0.4
    kernel = max(3, 2 * int(round(0.1 * side) // 2) + 1)
    sigma = (0.1, 2.0) if side >= 16 else (0.1, 1.0)
    return ViewSettings(crop_scale=(min_scale, 1.0), blur_kernel=kernel, blur_sigma=sigma, **recipe)


def recipe_settings(recipe: str, image_shape: tuple[int, int, int]) -> tuple[ViewSettings, ViewSettings]:
    """The two views' settings of a named recipe (``RECIPES``) for ``[C, H, W]`` images."""
    check(recipe in RECIPES, f"image views: unknown recipe {recipe!r} (choose from {', '.join(RECIPES)})")
    side = min(int(image_shape[-2]), int(image_shape[-1]))
    if recipe == "simclr":
        view = scaled_settings(side)
        return view, view
    byol_jitter = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    if recipe == "byol":
        return (scaled_settings(side, blur_p=1.0, solarise_p=0.0, **byol_jitter),
                scaled_settings(side, blur_p=0.1, solarise_p=0.2, **byol_jitter))
    view = scaled_settings(side, blur_p=0.5, solarise_p=0.2, **byol_jitter)
    return view, view


# ---- the operations, each with its random parameters given -------------------------------------------------

def resized_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
                 width: torch.Tensor) -> torch.Tensor:
    """Crop rows ``top .. top+height-1`` and columns ``left .. left+width-1`` of each image (int ``[N]``
    tensors) and resize the crop bilinearly back to the image's size (kornia ``crop_and_resize``, corners
    aligned: the crop's corner pixels land on the output's corner pixels)."""
    right, bottom = left + width - 1, top + height - 1
    boxes = torch.stack([torch.stack([left, top], -1), torch.stack([right, top], -1),
                         torch.stack([right, bottom], -1), torch.stack([left, bottom], -1)], 1)
    return crop_and_resize(x, boxes.to(x.device, x.dtype), (x.shape[-2], x.shape[-1]))


def flip(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images where ``chosen`` (bool ``[N]``) holds."""
    return torch.where(chosen.to(x.device)[:, None, None, None], x.flip(-1), x)


def colour_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ``ColorJitter`` on RGB ``[N, 3, H, W]`` in [0, 1], with kornia's matching functions.

    ``factors`` is ``[N, 4]``: brightness and contrast and saturation multipliers (1 = unchanged), hue
    shift in turns (0 = unchanged); ``order`` a permutation of ``0..3`` (the operations' order).
    """
    factors = factors.to(x.device, x.dtype)
    for op in order.tolist():
        if op == 0:
            x = adjust_brightness_accumulative(x, factors[:, 0])
        elif op == 1:
            x = adjust_contrast_with_mean_subtraction(x, factors[:, 1])
        elif op == 2:
            x = adjust_saturation_with_gray_subtraction(x, factors[:, 2])
        else:
            x = adjust_hue(x, factors[:, 3] * 2 * math.pi)
    return x.clamp(0.0, 1.0)


def greyscale(x: torch.Tensor) -> torch.Tensor:
    """RGB to luma (ITU-R 601 weights, kornia ``rgb_to_grayscale``), repeated on the three channels."""
    return rgb_to_grayscale(x).expand_as(x)


def blur(x: torch.Tensor, kernel: int, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a ``kernel x kernel`` window and one sigma per image (``[N]``), reflected borders."""
    sigma = sigma.to(x.device, x.dtype)
    return gaussian_blur2d(x, (kernel, kernel), torch.stack([sigma, sigma], -1))


def solarise(x: torch.Tensor, threshold: float = SOLARISE_THRESHOLD) -> torch.Tensor:
    """Invert the pixels at or above ``threshold`` (``x -> 1 - x``), images in [0, 1]."""
    return torch.where(x >= threshold, 1.0 - x, x)


# ---- random parameters, all from the given generator -------------------------------------------------------

def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def sample_crops(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                 generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """torchvision's ``RandomResizedCrop`` boxes ``(top, left, height, width)``, int64 ``[n]`` each.

    Area uniform in ``scale`` of the image's, aspect ratio log-uniform in ``ratio``; the first of
    ``CROP_TRIES`` draws that fits is taken, else the whole image.
    """
    area = height * width * _uniform(n * CROP_TRIES, *scale, generator).view(n, CROP_TRIES)
    log_ratio = _uniform(n * CROP_TRIES, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, CROP_TRIES)
    w = torch.sqrt(area * log_ratio.exp()).round().long()
    h = torch.sqrt(area / log_ratio.exp()).round().long()
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = torch.where(fits.any(1), fits.long().argmax(1), -1)
    rows = torch.arange(n)
    h = torch.where(first >= 0, h[rows, first.clamp(min=0)], height)
    w = torch.where(first >= 0, w[rows, first.clamp(min=0)], width)
    top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
    return top, left, h, w


def _apply_to(x: torch.Tensor, chosen: torch.Tensor, operation) -> torch.Tensor:
    """``x`` with ``operation(x[rows], rows)`` in place of the ``chosen`` (bool ``[N]``) images, computed
    on those only."""
    rows = chosen.nonzero().flatten()
    if rows.numel() == 0:
        return x
    x = x.clone()
    x[rows.to(x.device)] = operation(x[rows.to(x.device)], rows)
    return x


def augment_view(x: torch.Tensor, settings: ViewSettings, generator: torch.Generator) -> torch.Tensor:
    """One random view of ``[N, C, H, W]`` images in [0, 1]: crop, flip, jitter, greyscale, blur, solarise.

    Every draw is made for every image (even where an operation is skipped) so that the number of
    random numbers taken from ``generator`` does not depend on the data.
    """
    n, channels, height, width = x.shape
    x = resized_crop(x, *sample_crops(n, height, width, settings.crop_scale, settings.crop_ratio, generator))
    x = flip(x, _chosen(n, settings.flip_p, generator))
    jittered = _chosen(n, settings.jitter_p, generator)
    factors = torch.stack([_uniform(n, 1 - settings.brightness, 1 + settings.brightness, generator),
                           _uniform(n, 1 - settings.contrast, 1 + settings.contrast, generator),
                           _uniform(n, 1 - settings.saturation, 1 + settings.saturation, generator),
                           _uniform(n, -settings.hue, settings.hue, generator)], -1)
    order = torch.randperm(4, generator=generator)
    greyed = _chosen(n, settings.grey_p, generator)
    if channels == 3:
        x = _apply_to(x, jittered, lambda chosen, rows: colour_jitter(chosen, factors[rows], order))
        x = torch.where(greyed.to(x.device)[:, None, None, None], greyscale(x), x)
    blurred = _chosen(n, settings.blur_p, generator)
    sigma = _uniform(n, *settings.blur_sigma, generator)
    x = _apply_to(x, blurred, lambda chosen, rows: blur(chosen, settings.blur_kernel, sigma[rows]))
    solarised = _chosen(n, settings.solarise_p, generator)
    x = torch.where(solarised.to(x.device)[:, None, None, None], solarise(x), x)
    return x.clamp(0.0, 1.0)


class ImageViews:
    """Two random views of a batch of normalised ``[N, C, H, W]`` images.

    ``ImageViews("byol", (3, 32, 32), mean=meta["mean"], std=meta["std"])(x, generator)`` returns
    ``(view_1, view_2)``, each normalised like ``x``. ``recipe`` is a name of ``RECIPES`` or a pair of
    ``ViewSettings``; ``mean`` and ``std`` (one per channel) default to 0 and 1, i.e. images in [0, 1].
    """

    def __init__(self, recipe: str | tuple[ViewSettings, ViewSettings], image_shape: tuple[int, int, int],
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        image_shape = tuple(int(s) for s in image_shape)
        check(len(image_shape) == 3, f"image views: image_shape must be [C, H, W], got {list(image_shape)}")
        channels = image_shape[0]
        self.settings = recipe_settings(recipe, image_shape) if isinstance(recipe, str) else tuple(recipe)
        check(len(self.settings) == 2, f"image views: a recipe has two views, got {len(self.settings)}")
        for number, settings in enumerate(self.settings, 1):
            settings.validate(image_shape, f"image views: view {number}")
        mean = [0.0] * channels if mean is None else [float(m) for m in mean]
        std = [1.0] * channels if std is None else [float(s) for s in std]
        check(len(mean) == channels and len(std) == channels,
              f"image views: need {channels} mean and std values, got {len(mean)} and {len(std)}")
        check(all(s > 0 for s in std), f"image views: std must be positive, got {std}")
        self.image_shape = image_shape
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        check(tuple(x.shape[1:]) == self.image_shape,
              f"image views: expected images of shape [N, {', '.join(map(str, self.image_shape))}], "
              f"got {list(x.shape)}")
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        pixels = (x * std + mean).clamp(0.0, 1.0)
        first, second = (augment_view(pixels, settings, generator) for settings in self.settings)
        return (first - mean) / std, (second - mean) / std
