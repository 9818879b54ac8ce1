"""Two augmented views of a batch of MFCC sequences for the self-supervised baselines (issue 18).

Sequences are ``[N, T, F]``, zero-padded after each one's end, with ``lengths`` (int64 ``[N]``), as
``fwdlearn.data.fsdd`` makes them (each frame standardised over its F coefficients, so 0 is a frame's
mean). Each view applies, in order:

1. a random time crop: keep a window of ``ceil(fraction * length)`` frames, ``fraction`` uniform in
   ``(crop_min_fraction, 1)``, at a uniform offset, moved to the start; the new ``lengths`` are the
   window's and every frame past them is zero (a time shift of the content by the window's offset);
2. ``time_masks`` SpecAugment time masks (Park et al. 2019): a band of ``0 .. time_mask_width`` frames
   (at most the sequence's length) at a uniform position inside the valid frames, set to 0;
3. ``freq_masks`` SpecAugment frequency masks: a band of ``0 .. freq_mask_width`` coefficients at a
   uniform position, set to 0 on every frame;
4. additive Gaussian noise of std ``noise_std`` on the valid frames only (padding stays zero).

Every random number comes from the given ``torch.Generator`` (drawn on the CPU), so a resumed run
repeats an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import check


@dataclass(frozen=True)
class SequenceSettings:
    """One view's augmentation distribution. The defaults suit FSDD's 39 MFCCs at 80 frames a second."""

    crop_min_fraction: float = 0.8
    time_masks: int = 2
    time_mask_width: int = 5
    freq_masks: int = 1
    freq_mask_width: int = 6
    noise_std: float = 0.1

    def validate(self, num_steps: int | None = None, num_features: int | None = None,
                 where: str = "sequence views") -> None:
        """Refuse, in one line naming ``where``, settings that cannot apply (sizes checked where given)."""
        check(0.0 < self.crop_min_fraction <= 1.0,
              f"{where}: crop_min_fraction={self.crop_min_fraction} must lie in (0, 1]")
        for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 0, f"{where}: {name}={value} must be a whole number >= 0")
        check(self.noise_std >= 0.0, f"{where}: noise_std={self.noise_std} must be >= 0")
        if num_steps is not None:
            check(self.time_mask_width <= num_steps,
                  f"{where}: time_mask_width={self.time_mask_width} is wider than the {num_steps}-frame sequences")
        if num_features is not None:
            check(self.freq_mask_width <= num_features,
                  f"{where}: freq_mask_width={self.freq_mask_width} is wider than the {num_features} features")


def valid_frames(lengths: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Bool ``[N, T]``: which frames lie inside each sequence's length."""
    return torch.arange(num_steps, device=lengths.device)[None, :] < lengths[:, None]


def time_crop(x: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor,
              new_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``start .. start+new_length-1`` of each sequence moved to the front, zeros after them."""
    steps = torch.arange(x.shape[1], device=x.device)
    source = (start.to(x.device)[:, None] + steps[None, :]).clamp(max=x.shape[1] - 1)
    moved = x.gather(1, source[:, :, None].expand_as(x))
    new_lengths = new_lengths.to(lengths.device)
    return moved * valid_frames(new_lengths, x.shape[1]).to(x.device)[:, :, None], new_lengths


def _in_band(size: int, start: torch.Tensor, width: torch.Tensor, device) -> torch.Tensor:
    """Bool ``[N, size]``: positions ``start .. start+width-1`` of each row (int ``[N]`` each)."""
    positions = torch.arange(size, device=device)[None, :]
    return (positions >= start.to(device)[:, None]) & (positions < (start + width).to(device)[:, None])


def time_mask(x: torch.Tensor, start: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Zero frames ``start .. start+width-1`` of each sequence (int ``[N]`` each)."""
    return x.masked_fill(_in_band(x.shape[1], start, width, x.device)[:, :, None], 0.0)


def freq_mask(x: torch.Tensor, start: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Zero features ``start .. start+width-1`` of every frame of each sequence (int ``[N]`` each)."""
    return x.masked_fill(_in_band(x.shape[2], start, width, x.device)[:, None, :], 0.0)


def add_noise(x: torch.Tensor, lengths: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x + noise`` on the valid frames; padding frames are left as they are (zero)."""
    return x + noise.to(x.device, x.dtype) * valid_frames(lengths, x.shape[1]).to(x.device)[:, :, None]


def _band(limit: torch.Tensor, max_width: int | torch.Tensor,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A band ``(start, width)`` per row: width uniform in ``0 .. min(max_width, limit)``, start uniform in
    ``0 .. limit - width``."""
    n = limit.shape[0]
    widest = torch.minimum(torch.as_tensor(max_width), limit)
    width = (torch.rand(n, generator=generator) * (widest + 1)).long()
    start = (torch.rand(n, generator=generator) * (limit - width + 1)).long()
    return start, width


def augment_sequences(x: torch.Tensor, lengths: torch.Tensor, settings: SequenceSettings,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random view ``(x, lengths)`` of zero-padded ``[N, T, F]`` sequences (see the module's steps)."""
    n, num_steps, num_features = x.shape
    cpu_lengths = lengths.cpu()
    fraction = settings.crop_min_fraction + (1 - settings.crop_min_fraction) * torch.rand(n, generator=generator)
    kept = torch.ceil(fraction * cpu_lengths).long().clamp(1, None).minimum(cpu_lengths)
    start = (torch.rand(n, generator=generator) * (cpu_lengths - kept + 1)).long()
    x, cpu_lengths = time_crop(x, cpu_lengths, start, kept)
    for _ in range(settings.time_masks):
        x = time_mask(x, *_band(cpu_lengths, settings.time_mask_width, generator))
    for _ in range(settings.freq_masks):
        x = freq_mask(x, *_band(torch.full((n,), num_features), settings.freq_mask_width, generator))
    if settings.noise_std > 0:
        noise = settings.noise_std * torch.randn(x.shape, generator=generator)
        x = add_noise(x, cpu_lengths, noise)
    return x, cpu_lengths.to(lengths.device)


class SequenceViews:
    """Two random views of a batch of zero-padded sequences.

    ``SequenceViews()(x, lengths, generator)`` returns ``((x_1, lengths_1), (x_2, lengths_2))``. ``settings``
    is one ``SequenceSettings`` for both views or a pair of them.
    """

    def __init__(self, settings: SequenceSettings | tuple[SequenceSettings, SequenceSettings] = SequenceSettings()):
        self.settings = (settings, settings) if isinstance(settings, SequenceSettings) else tuple(settings)
        check(len(self.settings) == 2, f"sequence views: need two views' settings, got {len(self.settings)}")
        for number, view in enumerate(self.settings, 1):
            view.validate(where=f"sequence views: view {number}")

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator):
        check(x.ndim == 3, f"sequence views: expected sequences [N, T, F], got shape {list(x.shape)}")
        check(lengths.dtype == torch.int64 and lengths.shape == (x.shape[0],),
              f"sequence views: lengths must be int64 of shape [{x.shape[0]}], "
              f"got {lengths.dtype} {list(lengths.shape)}")
        check(x.shape[0] == 0 or (int(lengths.min()) >= 1 and int(lengths.max()) <= x.shape[1]),
              f"sequence views: lengths must lie in 1..{x.shape[1]}")
        for number, view in enumerate(self.settings, 1):
            view.validate(x.shape[1], x.shape[2], f"sequence views: view {number}")
        return tuple(augment_sequences(x, lengths, view, generator) for view in self.settings)
