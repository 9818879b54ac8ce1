"""Sequence data: the FSDD loader (MFCC features, splits, feature cache, errors) and the synthetic task.

Every WAV file used here is written by the test itself (``soundfile``) into ``tmp_path``; expected
frame counts come from the number of samples written and the MFCC settings, never from the
loader. Only ``test_real_fsdd_official_split`` reads the real recordings, from the repository's
sibling ``shared/data/fsdd`` folder, and it skips when they are absent.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fwdlearn.data import DATA_DIR_ENV, DATASETS, load_dataset
from fwdlearn.data import fsdd
from fwdlearn.data.fsdd import CACHE_ENV, MFCCSettings, load_fsdd, mfcc_features
from fwdlearn.data.sequences import load_synthetic_sequences
from fwdlearn.errors import ConfigError, DataError
from test_data import assert_one_line_error

REAL_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"

AUDIO = importlib.util.find_spec("librosa") is not None and importlib.util.find_spec("soundfile") is not None
needs_audio = pytest.mark.skipif(not AUDIO, reason="librosa and soundfile are not installed")

RATE = 8000


# --------------------------------------------------------------------------------------------
# helpers



def write_wav(path: Path, num_samples: int, rate: int = RATE, channels: int = 1, seed: int = 0) -> int:
    """A few sine tones (below 4 kHz) plus a little noise, 16-bit PCM; returns the number of samples.

    The tones fade in and out over 5 ms only, so no edge is 20 dB quieter than the loudest part:
    trimming silence (on by default) keeps every sample and frame counts follow from ``num_samples``.
    """
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / rate
    freqs = rng.uniform(150, 3500, size=3)
    signal = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f in freqs) / 4
    fade = np.minimum(1.0, np.minimum(np.arange(num_samples) + 1, np.arange(num_samples)[::-1] + 1) / (0.005 * rate))
    signal = signal * fade + 0.01 * rng.standard_normal(num_samples)
    data = signal if channels == 1 else np.stack([signal] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data, rate, subtype="PCM_16")
    return num_samples


def tiny_fsdd(folder: Path, speakers=("alice", "bob"), digits=(0, 3, 7), indices=(0, 4, 5, 12)) -> dict[str, int]:
    """Write ``{digit}_{speaker}_{index}.wav`` files of different lengths; return name -> samples."""
    written = {}
    for s, speaker in enumerate(speakers):
        for digit in digits:
            for index in indices:
                name = f"{digit}_{speaker}_{index}.wav"
                n = 1600 + 97 * digit + 61 * index + 211 * s          # 0.2 s .. ~0.5 s, all different
                written[name] = write_wav(folder / name, n, seed=hash(name) % 1000)
    return written


def expected_frames(num_samples: int, settings: MFCCSettings = MFCCSettings()) -> int:
    """librosa's centred frames after resampling 8 kHz -> settings.sample_rate: 1 + len // hop."""
    resampled = math.ceil(num_samples * settings.sample_rate / RATE)
    return 1 + resampled // settings.hop_length


def load(folder: Path, cache: Path, **kwargs):
    return load_fsdd(folder, cache_dir=cache, show_progress=False, **kwargs)


@pytest.fixture
def count_mfcc(monkeypatch):
    """Count calls of ``fsdd.mfcc_features`` (the loader looks it up at call time)."""
    calls = []
    real = fsdd.mfcc_features

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fsdd, "mfcc_features", counted)
    return calls


# --------------------------------------------------------------------------------------------
# features, splits, shapes


@needs_audio
def test_official_split_shapes_lengths_padding(tmp_path):
    """Official split: takes 0-4 test, 5+ train; [N, T_max, 39] zero-padded; lengths from the sample counts;
    labels from the names in file-name order; each valid frame standardised over its 39 coefficients."""
    written = tiny_fsdd(tmp_path / "rec")
    ds = load(tmp_path / "rec", tmp_path / "cache")
    assert ds.name == "fsdd" and ds.class_names == tuple("0123456789") and ds.num_classes == 10
    assert ds.source == str(tmp_path / "rec")
    assert ds.num_features == 39 and ds.train.is_sequence and ds.test.is_sequence
    for split, want_test in ((ds.train, False), (ds.test, True)):
        names = sorted(n for n in written if (int(n.split("_")[2][:-4]) <= 4) == want_test)
        lengths = [expected_frames(written[n]) for n in names]
        assert len(split) == len(names) == 12
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64 and split.lengths.dtype == torch.int64
        assert split.x.shape == (len(names), max(lengths), 39)
        assert split.lengths.tolist() == lengths
        assert split.y.tolist() == [int(n[0]) for n in names]
        for i, length in enumerate(lengths):
            assert torch.count_nonzero(split.x[i, length:]) == 0
            valid = split.x[i, :length].double()
            assert torch.all(valid.abs().sum(1) > 0)
            torch.testing.assert_close(valid.mean(1), torch.zeros(length, dtype=torch.float64), atol=1e-4, rtol=0)
            torch.testing.assert_close(valid.std(1, unbiased=False), torch.ones(length, dtype=torch.float64),
                                       atol=1e-3, rtol=0)
    assert "official" in ds.meta["split"]
    assert ds.meta["speakers"] == ["alice", "bob"]
    assert ds.meta["mfcc"]["n_mfcc"] == 40 and ds.meta["mfcc"]["hop_length"] == 200


@needs_audio
def test_mfcc_features_match_librosa_reference():
    """``mfcc_features``: resample 8 -> 16 kHz, librosa's MFCC of the dB mel spectrogram (128 bands,
    25 ms window, 12.5 ms hop), c0 dropped, each frame standardised (computed here in numpy)."""
    import librosa

    settings = MFCCSettings()
    assert (settings.sample_rate, settings.n_mfcc, settings.n_mels) == (16000, 40, 128)
    assert settings.n_fft == settings.win_length == int(0.025 * settings.sample_rate)
    assert settings.hop_length == int(0.0125 * settings.sample_rate)
    rng = np.random.default_rng(3)
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3001) / RATE) + 0.05 * rng.standard_normal(3001)).astype(np.float32)
    got = mfcc_features(audio, RATE, settings)
    y16 = librosa.resample(audio, orig_sr=RATE, target_sr=16000)
    ref = librosa.feature.mfcc(y=y16, sr=16000, n_mfcc=40, n_fft=400, win_length=400, hop_length=200, n_mels=128)
    ref = ref[1:].T.astype(np.float64)
    ref = (ref - ref.mean(1, keepdims=True)) / np.sqrt(ref.var(1, keepdims=True) + 1e-5)
    assert got.dtype == torch.float32 and got.shape == (expected_frames(3001), 39)
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-4)


@needs_audio
def test_silent_edges_are_trimmed():
    """Leading and trailing silence is cut before the MFCCs (librosa.effects.trim: 20 dB below the loudest
    256 ms frame, every 64 ms); ``trim_db=0`` keeps every sample; an all-silent recording is kept whole."""
    import librosa

    rng = np.random.default_rng(5)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / RATE)            # samples 3000..6999
    audio = np.concatenate([1e-4 * rng.standard_normal(3000), tone, 1e-4 * rng.standard_normal(5000)])
    audio = audio.astype(np.float32)
    kept, (start, end) = librosa.effects.trim(audio, top_db=20, frame_length=2048, hop_length=512)
    # frames centred every 512 samples, 2048 wide, are loud when they hold >= 1 % of the tone's samples:
    # the first is centred at 2048 (reaching 3072), the last at 7680 (from 6656), so 2048..8192 is kept
    assert (start, end) == (2048, 8192)
    trimmed = mfcc_features(audio, RATE)
    assert trimmed.shape == (expected_frames(end - start), 39)
    np.testing.assert_allclose(trimmed.numpy(), mfcc_features(kept, RATE, MFCCSettings(trim_db=0)).numpy())
    assert mfcc_features(audio, RATE, MFCCSettings(trim_db=0)).shape[0] == expected_frames(audio.size)
    assert mfcc_features(np.zeros(3000, np.float32), RATE).shape[0] == expected_frames(3000)
    for bad in (-1.0, float("nan"), "20", True):
        with pytest.raises(ConfigError, match="trim_db"):
            MFCCSettings(trim_db=bad)


@needs_audio
def test_folder_or_parent(tmp_path):
    """The WAV folder, a parent with ``recordings/`` and a parent with ``fsdd/recordings/`` all load;
    other files (README, .txt, hidden files, sub-folders) are ignored."""
    tiny_fsdd(tmp_path / "fsdd" / "recordings", speakers=("alice",), digits=(1, 2), indices=(0, 9))
    rec = tmp_path / "fsdd" / "recordings"
    (rec / "README.md").write_text("not audio")
    (rec / "notes.txt").write_text("not audio")
    (rec / "._1_alice_0.wav").write_bytes(b"macOS resource fork")
    (rec / "sub").mkdir()
    first = None
    for folder in (rec, tmp_path / "fsdd", tmp_path, str(tmp_path)):
        ds = load(folder, tmp_path / "cache")
        assert ds.source == str(rec)
        assert len(ds.train) == 2 and len(ds.test) == 2
        if first is None:
            first = ds
        assert torch.equal(ds.train.x, first.train.x) and torch.equal(ds.test.y, first.test.y)


@needs_audio
def test_speaker_holdout(tmp_path, monkeypatch):
    """With hold-out speakers every recording of theirs is a test sample, every other a training sample."""
    written = tiny_fsdd(tmp_path, speakers=("alice", "bob", "carol"), digits=(2, 5), indices=(1, 8))
    ds = load(tmp_path, tmp_path / "cache", holdout_speakers=["carol", "bob"])
    test_names = sorted(n for n in written if "_alice_" not in n)
    train_names = sorted(n for n in written if "_alice_" in n)
    assert ds.test.lengths.tolist() == [expected_frames(written[n]) for n in test_names]
    assert ds.train.lengths.tolist() == [expected_frames(written[n]) for n in train_names]
    assert ds.test.y.tolist() == [int(n[0]) for n in test_names]
    assert ds.meta["holdout_speakers"] == ["bob", "carol"] and "hold-out" in ds.meta["split"]
    # through load_dataset, with the cache directory from the environment
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    via = load_dataset("fsdd", tmp_path, holdout_speakers=("alice",))
    assert len(via.test) == 4 and len(via.train) == 8
    assert list((tmp_path / "env-cache").glob("fsdd-*.pt"))


# --------------------------------------------------------------------------------------------
# feature cache


@needs_audio
def test_cache_reused_and_invalidated(tmp_path, count_mfcc):
    """Second load: no MFCC computation, same tensors. A changed setting, a touched file or an added file
    each recompute every file."""
    written = tiny_fsdd(tmp_path / "rec", speakers=("alice",), digits=(1, 2), indices=(0, 6))
    rec, cache, n = tmp_path / "rec", tmp_path / "cache", len(written)
    first = load(rec, cache)
    assert len(count_mfcc) == n and first.meta["cache_hit"] is False
    files = list(cache.glob("fsdd-*.pt"))
    assert len(files) == 1 and len(files[0].stem) == len("fsdd-") + 16
    again = load(rec, cache)
    assert len(count_mfcc) == n and again.meta["cache_hit"] is True
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.lengths, again.test.lengths)

    other = load(rec, cache, settings=MFCCSettings(hop_length=160))          # changed setting
    assert len(count_mfcc) == 2 * n
    assert other.test.lengths.tolist() == [expected_frames(written[m], MFCCSettings(hop_length=160))
                                           for m in sorted(written) if int(m.split("_")[2][:-4]) <= 4]
    load(rec, cache, settings=MFCCSettings(n_mels=64))
    assert len(count_mfcc) == 3 * n

    path = rec / "1_alice_6.wav"                                             # touched file
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    load(rec, cache)
    assert len(count_mfcc) == 4 * n
    write_wav(rec / "2_alice_30.wav", 2000)                                  # added file
    added = load(rec, cache)
    assert len(count_mfcc) == 5 * n + 1 and len(added.train) == 3
    load(rec, cache)
    assert len(count_mfcc) == 5 * n + 1


@needs_audio
@pytest.mark.parametrize("garbage", [b"", b"definitely not a torch file" * 10, b"PK\x03\x04" + b"\x00" * 100],
                         ids=["empty", "text", "zip-header"])
def test_corrupt_cache_is_recomputed(tmp_path, count_mfcc, garbage):
    """A corrupt cache file is recomputed and overwritten, not an error."""
    written = tiny_fsdd(tmp_path / "rec", speakers=("alice",), digits=(4,), indices=(2, 9))
    rec, cache = tmp_path / "rec", tmp_path / "cache"
    first = load(rec, cache)
    (path,) = cache.glob("fsdd-*.pt")
    path.write_bytes(garbage)
    second = load(rec, cache)
    assert len(count_mfcc) == 2 * len(written) and second.meta["cache_hit"] is False
    assert torch.equal(first.train.x, second.train.x)
    third = load(rec, cache)
    assert len(count_mfcc) == 2 * len(written) and third.meta["cache_hit"] is True


@needs_audio
def test_cache_from_wrong_key_is_recomputed(tmp_path, count_mfcc):
    """A readable cache file whose content belongs to other files (e.g. copied over) is not trusted."""
    tiny_fsdd(tmp_path / "a", speakers=("alice",), digits=(4,), indices=(2, 9))
    tiny_fsdd(tmp_path / "b", speakers=("bob",), digits=(5,), indices=(1, 7))
    load(tmp_path / "a", tmp_path / "ca")
    load(tmp_path / "b", tmp_path / "cb")
    (a_file,), (b_file,) = (tmp_path / "ca").glob("*.pt"), (tmp_path / "cb").glob("*.pt")
    b_file.write_bytes(a_file.read_bytes())
    ds = load(tmp_path / "b", tmp_path / "cb")
    assert len(count_mfcc) == 6 and ds.test.y.tolist() == [5]


# --------------------------------------------------------------------------------------------
# errors


@needs_audio
def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as excinfo:
        load(missing, tmp_path / "cache")
    assert_one_line_error(excinfo, str(missing), "does not exist")


@needs_audio
def test_folder_without_wavs(tmp_path):
    """An empty folder, and one holding only non-WAV files, name the folder."""
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(tmp_path), ".wav")
    (tmp_path / "README.md").write_text("hello")
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(tmp_path))


@needs_audio
@pytest.mark.parametrize("payload", [b"", b"this is not audio at all" * 20, b"RIFF\x24\x00\x00\x00WAVEfmt "],
                         ids=["zero-bytes", "garbage", "truncated-header"])
def test_garbage_wav(tmp_path, payload):
    """A ``.wav`` name on something soundfile cannot read is a one-line DataError naming the file."""
    tiny_fsdd(tmp_path, speakers=("alice",), digits=(1,), indices=(0, 5))
    bad = tmp_path / "2_alice_7.wav"
    bad.write_bytes(payload)
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(bad))


@needs_audio
def test_wrong_sample_rate(tmp_path):
    tiny_fsdd(tmp_path, speakers=("alice",), digits=(1,), indices=(0, 5))
    bad = tmp_path / "3_alice_8.wav"
    write_wav(bad, 4000, rate=16000)
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(bad), "sample rate 16000 Hz", "8000 Hz")


@needs_audio
def test_stereo_rejected(tmp_path):
    tiny_fsdd(tmp_path, speakers=("alice",), digits=(1,), indices=(0, 5))
    bad = tmp_path / "3_alice_8.wav"
    write_wav(bad, 2000, channels=2)
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(bad), "2 channels", "mono")


@needs_audio
def test_empty_recording(tmp_path):
    import soundfile

    tiny_fsdd(tmp_path, speakers=("alice",), digits=(1,), indices=(0, 5))
    bad = tmp_path / "3_alice_8.wav"
    soundfile.write(str(bad), np.zeros(0), RATE, subtype="PCM_16")
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(bad), "empty")


@needs_audio
def test_very_short_recording_loads(tmp_path):
    """A one-sample recording is valid: one frame (librosa centres and pads frames)."""
    written = tiny_fsdd(tmp_path, speakers=("alice",), digits=(1,), indices=(0, 5))
    write_wav(tmp_path / "3_alice_8.wav", 1)
    ds = load(tmp_path, tmp_path / "cache")
    assert ds.train.lengths.tolist() == [expected_frames(written["1_alice_5.wav"]), 1]
    assert torch.isfinite(ds.train.x).all()


@needs_audio
@pytest.mark.parametrize("name", ["3-alice-8.wav", "x_alice_8.wav", "3_alice.wav", "3_alice_eight.wav",
                                  "13_alice_8.wav", "3_alice_8_extra.wav"])
def test_bad_file_name(tmp_path, name):
    tiny_fsdd(tmp_path, speakers=("alice",), digits=(1,), indices=(0, 5))
    bad = tmp_path / name
    write_wav(bad, 2000)
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache")
    assert_one_line_error(excinfo, str(bad), "{digit}_{speaker}_{index}.wav")


@needs_audio
def test_unknown_holdout_speaker(tmp_path):
    tiny_fsdd(tmp_path, speakers=("alice", "bob"), digits=(1,), indices=(0, 5))
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache", holdout_speakers=("carol",))
    assert_one_line_error(excinfo, "carol", "alice, bob", str(tmp_path))


@needs_audio
@pytest.mark.parametrize("case", ["no-test-takes", "no-train-takes", "all-speakers-held-out"])
def test_empty_split(tmp_path, case):
    indices = {"no-test-takes": (5, 9), "no-train-takes": (0, 4)}.get(case, (0, 5))
    tiny_fsdd(tmp_path, speakers=("alice",), digits=(1, 2), indices=indices)
    holdout = ("alice",) if case == "all-speakers-held-out" else ()
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, tmp_path / "cache", holdout_speakers=holdout)
    assert_one_line_error(excinfo, str(tmp_path), "empty")


def test_load_dataset_fsdd_needs_data_dir(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert "fsdd" in DATASETS and "sequences" in DATASETS
    with pytest.raises(DataError) as excinfo:
        load_dataset("fsdd")
    assert_one_line_error(excinfo, "FSDD", "--data-dir", DATA_DIR_ENV)


# --------------------------------------------------------------------------------------------
# synthetic sequences


def mean_over_steps(split) -> torch.Tensor:
    return split.x.sum(1) / split.lengths[:, None]


def halves(split) -> torch.Tensor:
    """Means of the first and of the second half of each sequence: an order-aware summary."""
    steps = torch.arange(split.x.shape[1])[None, :]
    mid = (split.lengths // 2)[:, None]
    first = (steps < mid).float()
    second = ((steps >= mid) & (steps < split.lengths[:, None])).float()
    return torch.cat([(split.x * m[..., None]).sum(1) / m.sum(1, keepdim=True) for m in (first, second)], 1)


def probe_accuracy(train_x, train_y, test_x, test_y, steps: int = 300) -> float:
    """Multinomial logistic regression (Adam, full batch); test accuracy.

    Single-threaded: these tiny products only lose time to thread hand-offs on a busy machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w = torch.zeros(train_x.shape[1], 10, requires_grad=True)
        b = torch.zeros(10, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(train_x @ w + b, train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float(((test_x @ w + b).argmax(1) == test_y).float().mean())
    finally:
        torch.set_num_threads(threads)


def test_sequences_shapes_and_determinism():
    """1,000 / 300 samples of [N, T_max, 39], lengths 16..40, zero padding, standardised frames,
    balanced labels; the same seed gives the same data, another seed other data."""
    start = time.perf_counter()
    a = load_synthetic_sequences(0)
    elapsed = time.perf_counter() - start
    b, c = load_synthetic_sequences(0), load_synthetic_sequences(1)
    assert elapsed < 5.0                          # ~0.1 s alone; generous for a busy shared machine
    assert a.name == "sequences" and a.num_classes == 10 and a.num_features == 39
    assert (len(a.train), len(a.test)) == (1000, 300)
    for split in (a.train, a.test):
        lengths = split.lengths
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64 and lengths.dtype == torch.int64
        assert split.x.shape == (len(split), int(lengths.max()), 39)
        assert int(lengths.min()) >= 16 and int(lengths.max()) <= 40
        assert int(lengths.min()) <= 18 and int(lengths.max()) >= 38          # the range is used
        assert torch.bincount(split.y, minlength=10).tolist() == [len(split) // 10] * 10
        steps = torch.arange(split.x.shape[1])[None, :]
        valid = steps < lengths[:, None]
        assert torch.count_nonzero(split.x[~valid]) == 0
        frames = split.x[valid].double()
        torch.testing.assert_close(frames.mean(1), torch.zeros(len(frames), dtype=torch.float64), atol=1e-5, rtol=0)
        torch.testing.assert_close(frames.std(1, unbiased=False), torch.ones(len(frames), dtype=torch.float64),
                                   atol=1e-4, rtol=0)
    for s_a, s_b in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(s_a.x, s_b.x) and torch.equal(s_a.y, s_b.y) and torch.equal(s_a.lengths, s_b.lengths)
    assert not torch.equal(a.train.lengths, c.train.lengths)
    via = load_dataset("sequences")
    assert torch.equal(via.test.x, a.test.x)


def test_sequences_need_the_order_of_steps():
    """A linear probe on the time average is well above chance (10 %) but far from perfect; the same probe
    on an order-aware summary (first-half and second-half means) does much better."""
    ds = load_synthetic_sequences(0)
    torch.manual_seed(0)
    average = probe_accuracy(mean_over_steps(ds.train), ds.train.y, mean_over_steps(ds.test), ds.test.y)
    ordered = probe_accuracy(halves(ds.train), ds.train.y, halves(ds.test), ds.test.y)
    assert 0.30 < average < 0.95, average
    assert ordered > average + 0.2, (ordered, average)


# --------------------------------------------------------------------------------------------
# the real recordings (optional)


@needs_audio
def test_real_fsdd_official_split(tmp_path):
    """The real FSDD: 2,700 / 300 recordings, 10 balanced classes, 6 speakers (computes all MFCCs once)."""
    if not (REAL_FSDD / "recordings").is_dir():
        pytest.skip(f"real FSDD not found at {REAL_FSDD}")
    ds = load_fsdd(REAL_FSDD, cache_dir=tmp_path, show_progress=False)
    assert (len(ds.train), len(ds.test)) == (2700, 300)
    assert ds.meta["speakers"] == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert torch.bincount(ds.train.y, minlength=10).tolist() == [270] * 10
    assert torch.bincount(ds.test.y, minlength=10).tolist() == [30] * 10
    assert ds.train.x.shape[2] == 39 and ds.train.x.shape[1] == int(ds.train.lengths.max())
    assert int(torch.cat([ds.train.lengths, ds.test.lengths]).min()) >= 1
    assert ds.source == str(REAL_FSDD / "recordings")
