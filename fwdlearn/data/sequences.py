"""An embedded synthetic sequence-classification task: the no-download default for recurrent learners.

Ten classes of variable-length sequences (16-40 steps) with 39 features per step, shaped like the
FSDD MFCC sequences (:mod:`fwdlearn.data.fsdd`) so that the same recurrent models run on both.

Each class is a trajectory through feature space: an ordered walk through 3 or 4 prototype
vectors drawn from a shared pool of 8, staying at each one for a random number of steps (at
least 2). The classes come in five pairs; both classes of a pair visit the *same* prototypes, in
two different orders (e.g. A B C D versus C A D B). So

* a single frame never identifies the class: every prototype is used by at least two classes;
* the time average identifies the pair but not the class within it: both orders have the same
  distribution of segment durations, hence the same distribution of averages. A linear probe on
  the time-averaged features lands near 50 % (chance is 10 %);
* the order of the steps identifies the class: a model that remembers which prototype came
  first (an RNN, or even the averages of the first and second halves) reaches ~100 %.

Every sample also gets a constant random offset over all its steps (a "speaker") and independent
Gaussian noise per step; then each frame is standardised over its 39 features (mean 0,
population std 1), like the MFCC frames. Everything (the prototypes, the class orders and the
samples) comes from one ``torch.Generator`` seeded with ``seed``, so a seed always gives the same
data set; 1,000 training and 300 test samples with exactly balanced classes.
"""

from __future__ import annotations

import torch

from .dataset import LabelledDataset, Split
from .transforms import standardize

NUM_CLASSES = 10
NUM_FEATURES = 39
MIN_LENGTH, MAX_LENGTH = 16, 40
NUM_TRAIN, NUM_TEST = 1000, 300
NUM_PROTOTYPES = 8
MAX_SEGMENTS = 4
MIN_SEGMENT = 2
NOISE = 0.6          # per-step Gaussian noise (prototypes have unit variance per feature)
OFFSET = 0.4         # per-sample constant offset ("speaker")


def _class_orders(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Five pairs of classes; a pair shares a set of 3 or 4 prototypes, visited in two different orders.

    Returns the ``[10, 4]`` prototype index per class and segment (the last index repeated for
    3-segment classes) and the number of segments per class.
    """
    orders, segments, used_sets = [], [], set()
    for pair in range(NUM_CLASSES // 2):
        k = 3 + pair % 2
        while True:
            chosen = torch.randperm(NUM_PROTOTYPES, generator=generator)[:k]
            if frozenset(chosen.tolist()) not in used_sets:
                break
        used_sets.add(frozenset(chosen.tolist()))
        while True:
            other = chosen[torch.randperm(k, generator=generator)]
            if not torch.equal(other, chosen):
                break
        for order in (chosen, other):
            padded = torch.cat([order, order[-1:].expand(MAX_SEGMENTS - k)])
            orders.append(padded)
            segments.append(k)
    return torch.stack(orders), torch.tensor(segments)


def _make_split(n: int, prototypes: torch.Tensor, orders: torch.Tensor, segments: torch.Tensor,
                generator: torch.Generator) -> Split:
    y = (torch.arange(n) % NUM_CLASSES)[torch.randperm(n, generator=generator)]
    lengths = torch.randint(MIN_LENGTH, MAX_LENGTH + 1, (n,), generator=generator)
    k = segments[y]
    # segment durations: MIN_SEGMENT steps each, the rest shared out in random proportions
    weights = torch.rand(n, MAX_SEGMENTS, generator=generator) + 0.5
    weights = weights * (torch.arange(MAX_SEGMENTS) < k[:, None])
    free = (lengths - MIN_SEGMENT * k).float()
    durations = (weights / weights.sum(1, keepdim=True) * free[:, None]).floor().long()
    durations += MIN_SEGMENT * (weights > 0)
    remainder_to = (torch.rand(n, generator=generator) * k).long()          # rounding remainder: a random
    durations[torch.arange(n), remainder_to] += lengths - durations.sum(1)  # segment, not always the last
    ends = durations.cumsum(1)
    steps = torch.arange(MAX_LENGTH)
    segment = (steps[None, :, None] >= ends[:, None, :]).sum(-1).clamp_(max=MAX_SEGMENTS - 1)   # [n, T]
    frames = prototypes[orders[y[:, None], segment]]                                          # [n, T, F]
    frames = frames + OFFSET * torch.randn(n, 1, NUM_FEATURES, generator=generator)
    frames = frames + NOISE * torch.randn(n, MAX_LENGTH, NUM_FEATURES, generator=generator)
    frames = standardize(frames.reshape(-1, NUM_FEATURES)).view(n, MAX_LENGTH, NUM_FEATURES)
    frames = frames * (steps[None, :] < lengths[:, None]).unsqueeze(-1)
    return Split(frames[:, : int(lengths.max())].contiguous(), y, lengths)


def load_synthetic_sequences(seed: int = 0) -> LabelledDataset:
    """The synthetic sequence task (see the module docstring): 1,000 / 300 samples ``[N, T_max, 39]``."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(NUM_PROTOTYPES, NUM_FEATURES, generator=generator)
    orders, segments = _class_orders(generator)
    train = _make_split(NUM_TRAIN, prototypes, orders, segments, generator)
    test = _make_split(NUM_TEST, prototypes, orders, segments, generator)
    meta = {
        "seed": seed,
        "num_prototypes": NUM_PROTOTYPES,
        "class_orders": [orders[c, : int(segments[c])].tolist() for c in range(NUM_CLASSES)],
        "length_range": [MIN_LENGTH, MAX_LENGTH],
        "noise": NOISE,
        "offset": OFFSET,
    }
    return LabelledDataset("sequences", train, test, tuple(str(c) for c in range(NUM_CLASSES)),
                           f"synthetic sequences (seed {seed})", meta)
