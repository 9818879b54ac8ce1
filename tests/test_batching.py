"""Epoch batching: every sample once per epoch; by-length batches group similar lengths."""

from importlib import resources

import pytest
import torch

from fwdlearn.data.batching import epoch_batches
from fwdlearn.errors import ConfigError
from fwdlearn.presets import load_preset


def _lengths(n=203, seed=0):
    return torch.randint(5, 120, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batching", ["random", "by-length"])
def test_every_sample_appears_exactly_once_per_epoch(batching):
    lengths = _lengths()
    batches = epoch_batches(203, 16, torch.Generator().manual_seed(1), batching, lengths)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(203))
    assert all(b.numel() <= 16 for b in batches)


def test_by_length_batches_pad_far_less_than_random_ones():
    lengths = _lengths()

    def padded_steps(batching):
        batches = epoch_batches(203, 16, torch.Generator().manual_seed(2), batching, lengths)
        return sum(int(lengths[b].max()) * b.numel() for b in batches)

    real = int(lengths.sum())
    assert padded_steps("by-length") < real * 1.1 < padded_steps("random")


def test_by_length_batches_come_in_shuffled_order_and_differ_between_epochs():
    lengths = _lengths()
    generator = torch.Generator().manual_seed(3)
    first = epoch_batches(203, 16, generator, "by-length", lengths)
    second = epoch_batches(203, 16, generator, "by-length", lengths)
    longest = [int(lengths[b].max()) for b in first]
    assert longest != sorted(longest)
    assert any(not torch.equal(a, b) for a, b in zip(first, second))


def test_small_trailing_batch_is_dropped_when_asked():
    batches = epoch_batches(33, 16, torch.Generator().manual_seed(0), min_size=2)
    assert sum(b.numel() for b in batches) == 32


def test_by_length_batching_is_rejected_for_image_data(tmp_path):
    path = tmp_path / "bad.toml"
    text = (resources.files("fwdlearn.presets") / "digits.toml").read_text()
    path.write_text(text.replace('[data]', '[data]\nbatching = "by-length"'))
    with pytest.raises(ConfigError, match="batching"):
        load_preset(str(path))


def test_by_length_without_lengths_is_a_clear_error():
    with pytest.raises(ValueError, match="lengths"):
        epoch_batches(10, 4, torch.Generator(), "by-length")
