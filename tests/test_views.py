"""The two-view augmentations of the self-supervised baselines (``fwdlearn.views``): what each one changes,
that every random draw comes from the generator passed in, and that impossible settings are refused."""

from __future__ import annotations

import pytest
import torch

from fwdlearn.errors import ConfigError
from fwdlearn.views import ImageViews, SequenceSettings, SequenceViews, ViewSettings, recipe_settings
from fwdlearn.views.images import (blur, colour_jitter, flip, greyscale, resized_crop, sample_crops, solarise)
from fwdlearn.views.sequences import add_noise, augment_sequences, freq_mask, time_crop, time_mask

# every random operation off, the crop the whole image: the views must equal the input
IDENTITY = ViewSettings(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grey_p=0.0,
                        blur_p=0.0, solarise_p=0.0)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(shape=(6, 3, 32, 32), seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=generator(seed))


# ---- images: each operation --------------------------------------------------------------------------------

def test_flip_mirrors_exactly_the_chosen_images():
    x = images((2, 3, 8, 8))
    out = flip(x, torch.tensor([True, False]))
    assert torch.equal(out[0], x[0, :, :, torch.arange(7, -1, -1)])
    assert torch.equal(out[1], x[1])


def test_resized_crop_stretches_the_chosen_window_over_the_image():
    columns = torch.arange(8.0).expand(1, 1, 8, 8)        # pixel value = its column
    rows = columns.transpose(-1, -2).contiguous()          # pixel value = its row
    box = dict(top=torch.tensor([2]), left=torch.tensor([4]), height=torch.tensor([4]), width=torch.tensor([4]))
    # columns 4..7 and rows 2..5 spread over the 8 output pixels, corners on corners
    assert torch.allclose(resized_crop(columns, **box)[0, 0], torch.linspace(4, 7, 8).expand(8, 8), atol=1e-5)
    assert torch.allclose(resized_crop(rows, **box)[0, 0], torch.linspace(2, 5, 8)[:, None].expand(8, 8), atol=1e-5)
    whole = dict(top=torch.tensor([0]), left=torch.tensor([0]), height=torch.tensor([8]), width=torch.tensor([8]))
    assert torch.allclose(resized_crop(columns, **whole), columns, atol=1e-5)


def test_sampled_crops_lie_inside_the_image_with_the_asked_area_and_shape():
    top, left, height, width = sample_crops(500, 28, 28, (0.2, 1.0), (3 / 4, 4 / 3), generator())
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 28).all() and (left + width <= 28).all()
    area = (height * width).float() / (28 * 28)
    assert area.min() > 0.15 and area.max() <= 1.0       # 0.2 of the area, give or take the rounding to pixels
    ratio = width.float() / height.float()
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    assert len(set(zip(top.tolist(), left.tolist(), height.tolist()))) > 100   # they do vary
    full = sample_crops(5, 8, 8, (1.0, 1.0), (1.0, 1.0), generator())
    assert all(torch.equal(t, e) for t, e in zip(full, (torch.zeros(5), torch.zeros(5), torch.full((5,), 8),
                                                         torch.full((5,), 8))))


def test_greyscale_sets_every_channel_to_the_luma():
    x = images((4, 3, 8, 8))
    out = greyscale(x)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for channel in range(3):
        assert torch.allclose(out[:, channel], luma, atol=1e-4)


def test_colour_jitter_changes_intensities_but_keeps_shape_and_range():
    x = images((5, 3, 8, 8))
    brightness_only = torch.tensor([[0.5, 1.0, 1.0, 0.0]]).expand(5, 4)
    assert torch.allclose(colour_jitter(x, brightness_only, torch.arange(4)), x * 0.5, atol=1e-6)
    unchanged = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(5, 4)
    assert torch.allclose(colour_jitter(x, unchanged, torch.arange(4)), x, atol=1e-5)
    strong = torch.tensor([[1.4, 0.6, 1.4, 0.1]]).expand(5, 4)
    out = colour_jitter(x, strong, torch.tensor([3, 1, 0, 2]))
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert (out - x).abs().mean() > 0.05


def test_blur_lowers_high_frequency_energy():
    checkerboard = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float().expand(2, 1, 8, 8)

    def high_frequency(x):      # energy of neighbouring-pixel differences
        return (x.diff(dim=-1) ** 2).sum() + (x.diff(dim=-2) ** 2).sum()

    blurred = blur(checkerboard, 3, torch.tensor([1.0, 2.0]))
    assert high_frequency(blurred) < 0.2 * high_frequency(checkerboard)
    assert torch.allclose(blur(checkerboard, 3, torch.tensor([0.05, 0.05])), checkerboard, atol=1e-4)


def test_solarise_inverts_only_the_bright_pixels():
    x = torch.tensor([0.0, 0.2, 0.49, 0.5, 0.8, 1.0])
    assert torch.allclose(solarise(x), torch.tensor([0.0, 0.2, 0.49, 0.5, 0.2, 0.0]))


# ---- images: the two views ---------------------------------------------------------------------------------

def test_image_views_repeat_with_equal_generators_and_differ_with_different_ones():
    views = ImageViews("byol", (3, 32, 32))
    x = images()
    first, second = views(x, generator(7))
    again = views(x, generator(7))
    other = views(x, generator(8))
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    assert not torch.allclose(first, other[0]) and not torch.allclose(second, other[1])
    assert not torch.allclose(first, second)
    # a run that resumes with the generator's saved state repeats the uninterrupted run's next batch
    g = generator(3)
    views(x, g)
    state = g.get_state()
    uninterrupted = views(x, g)
    resumed = views(x, torch.Generator().set_state(state))
    assert torch.equal(uninterrupted[0], resumed[0]) and torch.equal(uninterrupted[1], resumed[1])


def test_image_views_with_every_operation_off_return_the_images():
    x = images((3, 1, 8, 8))
    first, second = ImageViews((IDENTITY, IDENTITY), (1, 8, 8))(x, generator())
    assert torch.allclose(first, x, atol=1e-5) and torch.allclose(second, x, atol=1e-5)


def test_colour_operations_apply_to_rgb_and_are_skipped_on_one_channel():
    colour_only = ViewSettings(**{**IDENTITY.__dict__, "jitter_p": 1.0, "grey_p": 1.0})
    grey = images((3, 1, 8, 8))
    assert torch.allclose(ImageViews((colour_only, colour_only), (1, 8, 8))(grey, generator())[0], grey, atol=1e-5)
    rgb = images((3, 3, 8, 8))
    view = ImageViews((colour_only, colour_only), (3, 8, 8))(rgb, generator())[0]
    assert torch.allclose(view[:, 0], view[:, 1], atol=1e-5) and torch.allclose(view[:, 1], view[:, 2], atol=1e-5)
    assert not torch.allclose(view, rgb, atol=1e-2)


def test_image_views_augment_in_pixel_space_of_normalised_images():
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    pixels = images((4, 3, 8, 8))
    normalised = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    always_solarise = ViewSettings(**{**IDENTITY.__dict__, "solarise_p": 1.0})
    views = ImageViews((IDENTITY, always_solarise), (3, 8, 8), mean=mean, std=std)
    unchanged, solarised = views(normalised, generator())
    assert torch.allclose(unchanged, normalised, atol=1e-5)
    expected = torch.where(pixels >= 0.5, 1 - pixels, pixels)          # solarised in [0, 1], then normalised
    expected = (expected - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(solarised, expected, atol=1e-5)


@pytest.mark.parametrize("shape, min_scale, sigma_max", [((1, 8, 8), 0.4, 1.0), ((1, 28, 28), 0.2, 2.0),
                                                         ((3, 32, 32), 0.08, 2.0)])
def test_recipes_are_scaled_to_the_image_size(shape, min_scale, sigma_max):
    first, second = recipe_settings("byol", shape)
    for view in (first, second):
        assert view.crop_scale == (min_scale, 1.0) and view.blur_kernel == 3 and view.blur_sigma[1] == sigma_max
    assert (first.blur_p, first.solarise_p, second.blur_p, second.solarise_p) == (1.0, 0.0, 0.1, 0.2)
    simclr = recipe_settings("simclr", shape)
    assert simclr[0] == simclr[1] and simclr[0].solarise_p == 0.0 and simclr[0].saturation == 0.4
    sce = recipe_settings("sce", shape)
    assert sce[0].blur_p == 0.5 and sce[0].solarise_p == 0.2


@pytest.mark.parametrize("recipe, shape, words", [
    ((ViewSettings(crop_scale=(0.5, 1.5)), IDENTITY), (3, 32, 32), "crop_scale"),
    ((ViewSettings(blur_kernel=9), IDENTITY), (1, 8, 8), "blur_kernel=9 is larger than the 8x8 image"),
    ((ViewSettings(blur_kernel=4), IDENTITY), (1, 8, 8), "odd"),
    ((IDENTITY, ViewSettings(flip_p=1.5)), (3, 32, 32), "view 2: flip_p=1.5"),
    ((ViewSettings(solarise_p=-0.1), IDENTITY), (3, 32, 32), "solarise_p"),
    ("mocov9", (3, 32, 32), "unknown recipe"),
    ("simclr", (2, 32, 32), "1 or 3 channels"),
])
def test_invalid_image_settings_are_refused_in_one_line(recipe, shape, words):
    with pytest.raises(ConfigError) as error:
        ImageViews(recipe, shape)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_images_of_another_shape_are_refused():
    with pytest.raises(ConfigError, match=r"expected images of shape \[N, 1, 28, 28\]"):
        ImageViews("simclr", (1, 28, 28))(images((2, 1, 8, 8)), generator())


# ---- sequences ---------------------------------------------------------------------------------------------

def sequences(lengths=(12, 5, 9, 1), steps: int = 12, features: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded sequences whose valid entries are all >= 1 (so a zero there was put there)."""
    lengths = torch.tensor(lengths, dtype=torch.int64)
    x = torch.rand(len(lengths), steps, features, generator=generator(2)) + 1.0
    return x * (torch.arange(steps)[None, :] < lengths[:, None])[:, :, None], lengths


def only(**changes) -> SequenceSettings:
    """Settings with every operation off except ``changes``."""
    off = dict(crop_min_fraction=1.0, time_masks=0, time_mask_width=0, freq_masks=0, freq_mask_width=0,
               noise_std=0.0)
    return SequenceSettings(**{**off, **changes})


def test_time_crop_moves_the_window_to_the_front_and_keeps_padding_zero():
    x, lengths = sequences()
    out, new_lengths = time_crop(x, lengths, torch.tensor([3, 1, 0, 0]), torch.tensor([6, 4, 9, 1]))
    assert new_lengths.tolist() == [6, 4, 9, 1]
    assert torch.equal(out[0, :6], x[0, 3:9]) and torch.equal(out[1, :4], x[1, 1:5])
    assert torch.equal(out[2, :9], x[2, :9]) and torch.equal(out[3, :1], x[3, :1])
    for n, length in enumerate(new_lengths.tolist()):
        assert (out[n, length:] == 0).all()


def test_random_time_crop_keeps_lengths_consistent_with_the_data():
    x, lengths = sequences()
    out, new_lengths = augment_sequences(x, lengths, only(crop_min_fraction=0.5), generator())
    assert new_lengths.dtype == torch.int64 and out.shape == x.shape
    assert (new_lengths >= torch.ceil(0.5 * lengths)).all() and (new_lengths <= lengths).all()
    for n, length in enumerate(new_lengths.tolist()):
        assert (out[n, :length] >= 1).all() and (out[n, length:] == 0).all()     # content, then padding
        windows = x[n, :lengths[n]].unfold(0, length, 1).permute(0, 2, 1)       # every window of that length
        assert any(torch.equal(out[n, :length], w) for w in windows)


def test_time_mask_zeroes_a_band_of_frames_inside_the_valid_length_only():
    out = time_mask(sequences()[0], torch.tensor([2, 0, 7, 0]), torch.tensor([3, 0, 2, 1]))
    assert (out[0, 2:5] == 0).all() and (out[0, :2] >= 1).all() and (out[0, 5:] >= 1).all()
    x, lengths = sequences()
    out, _ = augment_sequences(x, lengths, only(time_masks=1, time_mask_width=4), generator())
    for n, length in enumerate(lengths.tolist()):
        zeroed = (out[n, :length] == 0).all(-1).nonzero().flatten().tolist()
        assert len(zeroed) <= min(4, length)
        if zeroed:                                                        # one contiguous band
            assert zeroed == list(range(zeroed[0], zeroed[0] + len(zeroed)))
        untouched = [t for t in range(length) if t not in zeroed]
        assert torch.equal(out[n, untouched], x[n, untouched])
        assert (out[n, length:] == 0).all()
    assert (out == 0).all(-1).sum() > (x == 0).all(-1).sum()    # something was masked
    # short sequences in long padding: the band is drawn inside each one's frames, not in its padding
    short, three = sequences(lengths=(3,) * 200, steps=40)
    masked, _ = augment_sequences(short, three, only(time_masks=1, time_mask_width=3), generator(6))
    hit = (masked[:, :3] == 0).all(-1).any(-1).float().mean()
    assert 0.6 < hit < 0.9                                    # width 0..3 uniform: 3 in 4 sequences lose frames


def test_frequency_mask_zeroes_a_band_of_features_on_every_frame():
    x, lengths = sequences()
    out = freq_mask(x, torch.tensor([3, 0, 8, 5]), torch.tensor([4, 2, 2, 0]))
    assert (out[0, :, 3:7] == 0).all()
    assert torch.equal(out[0, :, :3], x[0, :, :3]) and torch.equal(out[0, :, 7:], x[0, :, 7:])
    assert torch.equal(out[3], x[3])
    out, _ = augment_sequences(x, lengths, only(freq_masks=1, freq_mask_width=3), generator(5))
    for n, length in enumerate(lengths.tolist()):
        zeroed = (out[n, :length] == 0).all(0).nonzero().flatten().tolist()
        assert len(zeroed) <= 3 and (out[n, :length] != 0).sum() + len(zeroed) * length == length * 10


def test_noise_touches_only_the_valid_frames():
    x, lengths = sequences()
    out = add_noise(x, lengths, torch.ones_like(x))
    for n, length in enumerate(lengths.tolist()):
        assert torch.equal(out[n, :length], x[n, :length] + 1) and (out[n, length:] == 0).all()
    noisy, same_lengths = augment_sequences(x, lengths, only(noise_std=0.1), generator())
    assert torch.equal(same_lengths, lengths)
    valid = (torch.arange(12)[None, :] < lengths[:, None])
    assert ((noisy - x)[valid] != 0).all() and ((noisy - x)[~valid] == 0).all()
    assert 0.05 < (noisy - x)[valid].std() < 0.15


def test_sequence_views_repeat_with_equal_generators_and_differ_with_different_ones():
    x, lengths = sequences()
    views = SequenceViews()
    (a, la), (b, lb) = views(x, lengths, generator(4))
    (a2, la2), (b2, lb2) = views(x, lengths, generator(4))
    (c, _), (d, _) = views(x, lengths, generator(5))
    assert torch.equal(a, a2) and torch.equal(b, b2) and torch.equal(la, la2) and torch.equal(lb, lb2)
    assert not torch.equal(a, c) and not torch.equal(b, d) and not torch.equal(a, b)


@pytest.mark.parametrize("settings, words", [
    (only(time_masks=1, time_mask_width=13), "time_mask_width=13 is wider than the 12-frame sequences"),
    (only(freq_masks=1, freq_mask_width=11), "freq_mask_width=11 is wider than the 10 features"),
    (only(crop_min_fraction=0.0), "crop_min_fraction"),
    (only(noise_std=-1.0), "noise_std"),
    (only(time_masks=-1), "time_masks"),
])
def test_invalid_sequence_settings_are_refused_in_one_line(settings, words):
    x, lengths = sequences()
    with pytest.raises(ConfigError) as error:
        SequenceViews(settings)(x, lengths, generator())
    assert words in str(error.value) and "\n" not in str(error.value)


def test_sequences_with_bad_lengths_are_refused():
    x, lengths = sequences()
    with pytest.raises(ConfigError, match="lengths must be int64"):
        SequenceViews()(x, lengths.int(), generator())
    with pytest.raises(ConfigError, match="lengths must lie in 1..12"):
        SequenceViews()(x, lengths + 1, generator())
