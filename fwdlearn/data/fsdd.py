"""The Free Spoken Digit Dataset (FSDD) as sequences of 39 MFCC features per frame.

FSDD (Jackson et al., CC BY-SA 4.0) holds mono 8 kHz WAV recordings named
``{digit}_{speaker}_{index}.wav``: 6 speakers x 10 digits x 50 takes. The official split puts
takes 0-4 in the test set (300 files) and takes 5-49 in the training set (2,700 files); a
speaker hold-out split (all recordings of the named speakers are the test set) is also offered.

Features follow the SCFF authors' public release (paper: section 3.5 and appendix E, "the audio
is sampled at 16,000 Hz, and 39 MFCC coefficients are extracted"), with one step added in front:

* **leading and trailing silence is trimmed** (``librosa.effects.trim``, ``trim_db = 20``: the
  recording is cut to the span whose frames, 256 ms windows every 64 ms at 8 kHz, are within
  20 dB of its loudest frame's RMS). The read-out sees only the *final* state of each direction, i.e. what
  the forward RNN holds after the last frame and the backward one after the first; a digit
  followed by silence (up to 0.72 s in one speaker's recordings, 45 ms on average for that
  speaker, nearly none for the others) reaches the read-out through several steps of silence
  it has to remember across. Chosen on validation only (takes 5-9 of the training recordings held out;
  benchmarks/results/fsdd-paper/README.md): the untrained network's accuracy went from 76.1 % to
  82.2 %, the SCFF preset's from 89.5 % to 92.6 % (seeds 0-3); on the official test set, read
  afterwards, SCFF went from 88.9 % to 92.3 % (seeds 0-2). ``trim_db = 0`` turns it off (the
  authors' pipeline);

* the 8 kHz audio is resampled to **16 kHz** and analysed with **128 mel bands**, as in the
  authors' release (the band above 4 kHz is empty in up-sampled audio; it only makes the
  top mel bands near-constant, which the cepstral transform and standardisation absorb);
* frames are **25 ms long** (``n_fft = win_length = 400`` samples at 16 kHz): speech is roughly
  stationary over 20-30 ms, long enough to resolve the pitch harmonics and formants and short
  enough that the vocal tract does not move much within one window;
* the **hop is 12.5 ms** (``hop_length = 200``), i.e. 50 % overlap between consecutive Hann
  windows, so that every sample is covered with full weight by some frame and transitions
  between phonemes are seen by at least two frames; librosa centres frames, so a recording of
  ``n`` samples at 16 kHz gives ``1 + n // 200`` frames;
* ``librosa.feature.mfcc`` computes 40 coefficients (DCT-II, orthonormal) of the dB-scaled mel
  power spectrogram; the first one, **c0, is dropped**: it is the overall log energy of the
  frame, i.e. loudness, which depends on the speaker's distance to the microphone and gain,
  not on which digit is spoken. That leaves **39 features per frame**;
* each frame is then standardised over its 39 coefficients (mean 0, population std 1) with
  :func:`fwdlearn.data.transforms.standardize`, like every layer input in SCFF.

Computing the features of all 3,000 files takes a few seconds, so they are cached on disk
(``cache_dir``, else ``$FWDLEARN_CACHE_DIR``, else ``~/.cache/fwdlearn``) in one file
``fsdd-<key>.pt`` whose key hashes the settings, the cache format version, the librosa version
and every WAV's name, size and modification time: changing any of them recomputes.

Only single-channel recordings are accepted (FSDD is mono; a stereo file is rejected rather than
silently reduced to one channel). Files that do not end in ``.wav`` and hidden files (names
starting with ``.``, e.g. macOS ``._*`` resource forks) are ignored; a folder named like a
recording is refused (it would silently be missing from the data).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import save_torch
from ..errors import ConfigError, DataError, FwdlearnError
from ..progress import progress_bar
from .dataset import LabelledDataset, Split
from .folders import require_folder
from .transforms import standardize

SOURCE_RATE = 8000                  # every FSDD recording is 8 kHz mono
TEST_INDICES = range(0, 5)          # official split: takes 0-4 are the test set
CACHE_ENV = "FWDLEARN_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/fwdlearn")
CACHE_FORMAT_VERSION = 1            # bump when the cache layout or the feature pipeline changes
NAME_PATTERN = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[^_]+)_(?P<index>[0-9]+)\.wav$", re.IGNORECASE)
CLASS_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class MFCCSettings:
    """How one recording becomes a ``[T, n_mfcc - drop_c0]`` feature sequence (see the module docstring)."""

    sample_rate: int = 16000        # resample the 8 kHz recordings to this rate before the STFT
    n_mfcc: int = 40                # coefficients computed by librosa (c0 included)
    n_mels: int = 128               # mel bands
    n_fft: int = 400                # 25 ms at 16 kHz
    win_length: int = 400           # 25 ms Hann window
    hop_length: int = 200           # 12.5 ms: 50 % overlap
    window: str = "hann"
    center: bool = True             # librosa's centred frames: 1 + n // hop_length frames
    top_db: float = 80.0            # dynamic range of the dB-scaled mel spectrogram (librosa's default)
    drop_c0: bool = True            # drop the energy coefficient
    res_type: str = "soxr_hq"       # librosa's default resampler
    trim_db: float = 20.0           # trim edges quieter than this below the loudest frame (0: keep all)
    trim_frame: int = 2048          # librosa.effects.trim's defaults, written out: 256 ms frames
    trim_hop: int = 512             # every 64 ms (at 8 kHz)

    def __post_init__(self):
        for name in ("sample_rate", "n_mfcc", "n_mels", "n_fft", "win_length", "hop_length", "trim_frame", "trim_hop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MFCCSettings.{name} must be a positive integer, got {value!r}")
        if isinstance(self.trim_db, bool) or not isinstance(self.trim_db, (int, float)) or not self.trim_db >= 0:
            raise ConfigError(f"MFCCSettings.trim_db must be a number >= 0 (0: no trimming), got {self.trim_db!r}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"MFCCSettings.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.num_features < 1:
            raise ConfigError(f"MFCCSettings: n_mfcc={self.n_mfcc} with drop_c0 leaves no features")

    @property
    def num_features(self) -> int:
        """Features per frame: ``n_mfcc`` minus c0 when it is dropped (39 by default)."""
        return self.n_mfcc - int(self.drop_c0)

    def num_frames(self, num_samples: int, sample_rate: int = SOURCE_RATE) -> int:
        """Frames produced for a recording of ``num_samples`` at ``sample_rate`` (counted after trimming)."""
        resampled = int(np.ceil(num_samples * self.sample_rate / sample_rate))
        if self.center:
            return 1 + resampled // self.hop_length
        return 1 + (resampled - self.n_fft) // self.hop_length


def _import_audio():
    try:
        import librosa
        import soundfile
    except ImportError as exc:
        raise DataError(f"FSDD needs librosa and soundfile ({exc.name} is missing): "
                        "reinstall fwdlearn (pip install -e .), which requires both") from None
    return librosa, soundfile


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's (Slaney) mel filter bank ``[n_mels, 1 + n_fft // 2]``, built once per setting."""
    librosa, _ = _import_audio()
    with warnings.catch_warnings():
        # 128 mel bands are many for a 400-point FFT (40 Hz bins): with other settings (e.g. no
        # resampling: 8 kHz, n_fft=200) some narrow low-frequency filters catch no FFT bin and
        # librosa warns; those bands are then constant and harmless for cepstra. (The default
        # 16 kHz / 400-point analysis has no empty filter.)
        warnings.filterwarnings("ignore", message="Empty filters detected in mel frequency basis")
        basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    basis.setflags(write=False)
    return basis


def trim_silence(audio: np.ndarray, settings: MFCCSettings = MFCCSettings()) -> np.ndarray:
    """``audio`` without its leading and trailing frames quieter than ``settings.trim_db`` below its
    loudest one (``librosa.effects.trim``); unchanged when ``trim_db`` is 0 or nothing would remain."""
    if settings.trim_db == 0:
        return audio
    librosa, _ = _import_audio()
    trimmed, _ = librosa.effects.trim(audio, top_db=settings.trim_db, frame_length=settings.trim_frame,
                                      hop_length=settings.trim_hop)
    return trimmed if trimmed.size else audio


def mfcc_features(audio: np.ndarray, sample_rate: int, settings: MFCCSettings = MFCCSettings()) -> torch.Tensor:
    """MFCC features of one mono recording: float32 ``[T, settings.num_features]``, each frame standardised.

    ``audio`` is a 1-D float array at ``sample_rate`` Hz; its silent edges are trimmed
    (:func:`trim_silence`) and it is resampled to ``settings.sample_rate``.
    Equal to ``librosa.feature.mfcc(y=..., sr=..., n_mfcc, n_fft, hop_length, win_length, n_mels)``
    (which takes the DCT of ``power_to_db`` of the mel power spectrogram), minus c0, standardised
    per frame; the mel filter bank is built once and applied as a matrix product, which makes
    this ~3x faster than calling librosa's ``melspectrogram`` per file.
    """
    librosa, _ = _import_audio()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"mfcc_features expects a non-empty 1-D signal, got shape {audio.shape}")
    audio = trim_silence(audio, settings)
    if sample_rate != settings.sample_rate:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=settings.sample_rate,
                                 res_type=settings.res_type)
    with warnings.catch_warnings():
        # very short recordings: "n_fft=400 is too large for input signal"; centred zero padding handles them
        warnings.filterwarnings("ignore", message="n_fft=.* is too large for input signal")
        spectrum = librosa.stft(audio, n_fft=settings.n_fft, hop_length=settings.hop_length,
                                win_length=settings.win_length, window=settings.window, center=settings.center)
    power = np.abs(spectrum) ** 2                                                    # [1 + n_fft // 2, T]
    mel = _mel_basis(settings.sample_rate, settings.n_fft, settings.n_mels) @ power   # [n_mels, T]
    log_mel = librosa.power_to_db(mel, ref=1.0, top_db=settings.top_db)
    coefficients = librosa.feature.mfcc(S=log_mel, n_mfcc=settings.n_mfcc)           # [n_mfcc, T], DCT-II ortho
    if settings.drop_c0:
        coefficients = coefficients[1:]
    frames = torch.from_numpy(np.ascontiguousarray(coefficients.T, dtype=np.float32))
    return standardize(frames)


# --------------------------------------------------------------------------------------------
# files


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def find_fsdd_dir(data_dir: Path) -> Path:
    """Accept the folder holding the WAVs, or a parent with ``recordings/`` or ``fsdd/recordings/``."""
    for candidate in (data_dir, data_dir / "recordings", data_dir / "fsdd" / "recordings"):
        if candidate.is_dir() and any(_named_like_wav(p) for p in candidate.iterdir()):
            return candidate
    require_folder(data_dir, "FSDD")
    raise DataError(f"FSDD: no .wav recordings in {data_dir}, {data_dir / 'recordings'} "
                    f"or {data_dir / 'fsdd' / 'recordings'}")


def _named_like_wav(path: Path) -> bool:
    return path.suffix.lower() == ".wav" and not path.name.startswith(".")


def list_recordings(folder: Path) -> list[Recording]:
    """Every recording in ``folder``, ordered by file name (the order of the loaded splits)."""
    recordings = []
    for path in sorted((p for p in folder.iterdir() if _named_like_wav(p)), key=lambda p: p.name):
        if path.is_dir():
            raise DataError(f"{path}: a folder named like a recording; FSDD recordings are .wav files")
        match = NAME_PATTERN.match(path.name)
        if match is None:
            raise DataError(f"{path}: file name does not match {{digit}}_{{speaker}}_{{index}}.wav")
        recordings.append(Recording(path, int(match["digit"]), match["speaker"], int(match["index"])))
    return recordings


def _read_audio(path: Path) -> np.ndarray:
    """One mono 8 kHz recording as float32 in [-1, 1]; every problem is a one-line DataError."""
    _, soundfile = _import_audio()
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:   # soundfile.LibsndfileError is a RuntimeError
        reason = getattr(exc, "error_string", None) or str(exc).replace(str(path), "the file")
        reason = " ".join(reason.split()) or type(exc).__name__
        raise DataError(f"{path}: not a readable WAV file ({reason})") from None
    if rate != SOURCE_RATE:
        raise DataError(f"{path}: sample rate {rate} Hz, FSDD recordings are {SOURCE_RATE} Hz")
    if audio.shape[1] != 1:
        raise DataError(f"{path}: {audio.shape[1]} channels, FSDD recordings are mono")
    if audio.shape[0] == 0:
        raise DataError(f"{path}: empty recording (0 samples)")
    if not np.isfinite(audio).all():
        raise DataError(f"{path}: recording contains NaN or infinite samples")
    return audio[:, 0]


# --------------------------------------------------------------------------------------------
# cache


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$FWDLEARN_CACHE_DIR``, else ``~/.cache/fwdlearn``."""
    chosen = cache_dir if cache_dir not in (None, "") else os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def _cache_key(recordings: Sequence[Recording], settings: MFCCSettings) -> str:
    try:
        import librosa
        librosa_version = librosa.__version__
    except ImportError:
        librosa_version = None
    files = []
    for rec in recordings:
        try:
            stat = rec.path.stat()
        except OSError as exc:
            raise DataError(f"{rec.path}: cannot read ({exc.strerror or exc})") from None
        files.append([rec.path.name, stat.st_size, stat.st_mtime_ns])
    payload = {"format": CACHE_FORMAT_VERSION, "librosa": librosa_version, "settings": asdict(settings),
               "files": files}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _pack(key: str, features: dict[str, torch.Tensor]) -> dict:
    """The cache file's content: one ``[sum T, F]`` tensor, the names and each one's length.

    (One tensor loads ~5x faster than 3,000 small ones.)
    """
    names = list(features)
    return {"format": CACHE_FORMAT_VERSION, "key": key, "names": names,
            "lengths": torch.tensor([features[n].shape[0] for n in names], dtype=torch.int64),
            "features": torch.cat([features[n] for n in names]) if names else torch.empty(0, 0)}


def _load_cache(path: Path, key: str, names: Sequence[str], num_features: int) -> dict[str, torch.Tensor] | None:
    """The cached features (name -> ``[T, F]``) if the file is there, readable and complete; else ``None``."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:                      # corrupt, truncated or foreign: recompute and overwrite
        return None
    if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT_VERSION or blob.get("key") != key:
        return None
    cached_names, lengths, packed = blob.get("names"), blob.get("lengths"), blob.get("features")
    if (not isinstance(cached_names, list) or sorted(cached_names) != sorted(names)
            or not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64
            or lengths.shape != (len(cached_names),) or (lengths < 1).any()
            or not isinstance(packed, torch.Tensor) or packed.dtype != torch.float32 or packed.ndim != 2
            or packed.shape != (int(lengths.sum()), num_features) or not torch.isfinite(packed).all()):
        return None
    return dict(zip(cached_names, packed.split(lengths.tolist())))


def _compute_features(recordings: Sequence[Recording], settings: MFCCSettings,
                      show_progress: bool) -> dict[str, torch.Tensor]:
    features = {}
    with _single_threaded_blas():
        for rec in progress_bar(recordings, desc="FSDD MFCC features", enabled=show_progress, unit="file"):
            audio = _read_audio(rec.path)
            features[rec.path.name] = mfcc_features(audio, SOURCE_RATE, settings).contiguous()
    return features


def _single_threaded_blas():
    """Per-file products are tiny ([128, 201] x [201, ~35]): BLAS threads only add hand-off cost,
    and on a busy machine they make the whole computation ~6x slower."""
    try:
        from threadpoolctl import threadpool_limits     # installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------------
# loader


def _pad(sequences: Sequence[torch.Tensor], num_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.int64)
    x = torch.zeros(len(sequences), int(lengths.max()) if len(sequences) else 0, num_features)
    for i, seq in enumerate(sequences):
        x[i, : seq.shape[0]] = seq
    return x, lengths


def load_fsdd(folder: Path, holdout_speakers: Sequence[str] = (), cache_dir: Path | None = None,
              settings: MFCCSettings = MFCCSettings(), show_progress: bool = True) -> LabelledDataset:
    """Load FSDD as zero-padded MFCC sequences ``[N, T_max, 39]`` with ``lengths`` and digit labels.

    ``folder`` holds the WAVs or is a parent with ``recordings/`` or ``fsdd/recordings/``. By default
    the official split is used (takes 0-4 are the test set); with ``holdout_speakers`` every
    recording of those speakers is the test set and every other speaker's the training set.
    Samples are ordered by file name.
    """
    folder = find_fsdd_dir(Path(folder).expanduser())
    recordings = list_recordings(folder)
    speakers = sorted({rec.speaker for rec in recordings})
    if isinstance(holdout_speakers, str):
        holdout_speakers = (holdout_speakers,)
    holdout = sorted(set(holdout_speakers))
    unknown = [s for s in holdout if s not in speakers]
    if unknown:
        raise DataError(f"FSDD: unknown hold-out speaker(s) {', '.join(unknown)} in {folder}; "
                        f"speakers found: {', '.join(speakers)}")
    if holdout:
        is_test = [rec.speaker in holdout for rec in recordings]
        rule = f"speaker hold-out: test = all recordings of {', '.join(holdout)}; train = the other speakers"
    else:
        is_test = [rec.index in TEST_INDICES for rec in recordings]
        rule = "official: takes 0-4 test, takes 5-49 train"
    for split_name, wanted in (("train", False), ("test", True)):
        if wanted not in is_test:
            raise DataError(f"FSDD: the {split_name} split would be empty in {folder} ({rule})")

    names = [rec.path.name for rec in recordings]
    key = _cache_key(recordings, settings)
    cache_path = resolve_cache_dir(cache_dir) / f"fsdd-{key[:16]}.pt"
    features = _load_cache(cache_path, key, names, settings.num_features)
    cache_hit = features is not None
    if features is None:
        features = _compute_features(recordings, settings, show_progress)
        try:
            save_torch(_pack(key, features), cache_path)
        except FwdlearnError as exc:      # a cache that cannot be written only costs time next run
            warnings.warn(f"FSDD: feature cache not written ({exc})", RuntimeWarning, stacklevel=2)

    def make_split(test: bool) -> Split:
        chosen = [rec for rec, t in zip(recordings, is_test) if t == test]
        x, lengths = _pad([features[rec.path.name] for rec in chosen], settings.num_features)
        y = torch.tensor([rec.digit for rec in chosen], dtype=torch.int64)
        return Split(x, y, lengths)

    meta = {
        "mfcc": asdict(settings),
        "num_features": settings.num_features,
        "split": rule,
        "speakers": speakers,
        "holdout_speakers": holdout,
        "feature_cache": str(cache_path),
        "cache_hit": cache_hit,
    }
    return LabelledDataset("fsdd", make_split(False), make_split(True), CLASS_NAMES, str(folder), meta)
