"""The single place for dataset normalisation, per-sample standardisation and pair augmentations.

SCFF (Methods, "Data"; Algorithms 1-2, ``std``) standardises every layer's input per sample:
mean 0 and standard deviation 1 over all of its features. Loaders scale pixels to [0, 1]; the
paper's per-channel dataset normalisation is not applied to one-channel images because the
per-sample standardisation that follows removes any per-channel shift and scale exactly.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

EPS = 1e-5
_ACCELERATOR_TRACE: list | None = None   # set by ``accelerator_tracing``: the input scales in call order, calls


@contextlib.contextmanager
def accelerator_tracing(scales: list[float] | None = None):
    """While inside, an ONNX export traces the per-sample operations as layers an accelerator compiler knows
    (hls4ml has no ReduceMean): ``standardize`` as one ``LayerNormalization`` node without scale or shift, and
    the triangle's across-channel mean as a linear map (``nn.activations.triangle``).

    ``scales``: one positive factor per ``standardize`` call of a forward pass, in call order; the input is
    multiplied by it (and ``eps`` by its square) before the normalisation, which leaves the result unchanged
    (``std(c x)`` with ``c² eps`` is ``std(x)``) but brings the variance into the range of hls4ml's 1/sqrt
    table (``export.hls4ml_check``)."""
    global _ACCELERATOR_TRACE
    before, _ACCELERATOR_TRACE = _ACCELERATOR_TRACE, [list(scales or []), 0]   # scales, calls traced so far
    try:
        yield
    finally:
        _ACCELERATOR_TRACE = before


_VARIANCES: list | None = None   # set by ``recorded_variances``


@contextlib.contextmanager
def recorded_variances():
    """While inside, every ``standardize`` call appends the largest per-sample variance it saw to the yielded list
    (in call order: one entry per call of a forward pass), the measurement ``accelerator_tracing``'s scales come
    from."""
    global _VARIANCES
    before, _VARIANCES = _VARIANCES, []
    try:
        yield _VARIANCES
    finally:
        _VARIANCES = before


def tracing_for_accelerators() -> bool:
    return _ACCELERATOR_TRACE is not None and torch.onnx.is_in_onnx_export()


def standardize(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-sample standardisation over every non-batch dimension (``std`` in Algorithms 1-2).

    Uses the population standard deviation, so the concatenation of two standardised halves
    is itself standardised: ``std([a, b]) == [a, b]``. That identity is what lets a tied-weight
    layer apply one weight to the sum ``a + b`` instead of to the doubled input.
    """
    flat = x.flatten(1)
    if tracing_for_accelerators():
        scales, calls = _ACCELERATOR_TRACE
        scale = scales[calls % len(scales)] if scales else 1.0      # an exporter may trace the forward twice
        _ACCELERATOR_TRACE[1] += 1
        maps = x.dim() == 4      # normalised channels-last, as the accelerator holds them (the statistics are
        held = x.permute(0, 2, 3, 1) if maps else x        # over every value, so the order does not matter)
        flat = held.reshape(x.shape[0], -1)
        flat = flat * scale if scale != 1.0 else flat
        normalised = F.layer_norm(flat, flat.shape[1:], eps=eps * scale * scale).view(held.shape)
        return normalised.permute(0, 3, 1, 2) if maps else normalised
    centred = flat - flat.mean(dim=1, keepdim=True)
    var = centred.square().mean(dim=1, keepdim=True)
    if _VARIANCES is not None:
        _VARIANCES.append(float(var.max()))
    return (centred * torch.rsqrt(var + eps)).view_as(x)


def translation_offsets(n: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Row and column offsets ``[2, n]`` in ``0..2*max_shift`` (shift + max_shift), drawn from the CPU ``generator``."""
    return torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)


def translate(x: torch.Tensor, offsets: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each ``[N, C, H, W]`` image by ``offsets - max_shift`` pixels (rows, columns), zeros shifted in."""
    n, c, h, w = x.shape
    offsets = offsets.to(x.device)
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * max_shift)
    picked = padded.gather(2, rows)
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    return picked.gather(3, cols)


def image_shape(features: int) -> tuple[int, int, int]:
    """A flat sample of ``features`` values seen as the image ``[C, H, W]`` a translation shifts: a square if it
    is one, else a single row."""
    side = math.isqrt(features)
    return (1, side, side) if side * side == features else (1, 1, features)


def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each ``[N, C, H, W]`` image by its own random offset in ``-max_shift..max_shift`` pixels.

    Pixels shifted in are zero (pad, then crop), as in the authors' MNIST release where the
    two halves of a positive pair are two independent translations of the same image. Offsets are
    drawn from the CPU ``generator`` and moved to ``x``'s device.
    """
    if max_shift <= 0:
        return x
    return translate(x, translation_offsets(x.shape[0], max_shift, generator), max_shift)


def random_translate_twice(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """``cat([random_translate(x), random_translate(x)])`` (the same draws, in that order): two views per image.
    On the CPU one Numba pass per half writes straight into the result (``kernels/views.py``)."""
    n = x.shape[0]
    first, second = (translation_offsets(n, max_shift, generator) for _ in range(2))
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return torch.cat([translate(x, first, max_shift), translate(x, second, max_shift)])
    from ..kernels.views import translate_into
    out = torch.empty((2 * n, *x.shape[1:]), dtype=x.dtype)
    translate_into(x, first, max_shift, out, 0)
    translate_into(x, second, max_shift, out, n)
    return out