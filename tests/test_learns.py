"""Every registered rule *learns*: a short run on its embedded data lowers its own objective and helps the probe.

For each rule in ``fwdlearn.registry.rules()`` (a rule added later is run too, and fails until its
expectation below is measured and written down), a few seconds of training on a subsample of the
rule's embedded default data (``digits`` images, ``sequences``) must

- lower the training loss of every parameter group (first epoch against last, from the history);
- lift the linear probe (the run path's own, ``eval.report.probe_network``) above the same network
  untrained (``run.untrained_network``) by the rule's ``probe_margin``;
- pass the rule's own check of what its objective asks for: SCFF positive pairs ``[x_k, x_k]`` with
  more goodness than negative pairs ``[x_k, x_n]`` on test samples, by more than untrained (each layer,
  each direction); FF more goodness (summed over the layers it classifies by) for the correct label
  overlaid than for a wrong one; LAC a test reconstruction error well below the untrained autoencoder's
  (the hidden contrast's fall is the ``hidden`` group's loss).

``learning_failures`` is the one criterion; the controls run it on broken training and require it to
fail: every rule's update stepped on ``-loss`` (``take_step`` patched where the rule calls it; LAC,
whose update does not go through ``take_step``, with its gradients negated before each step, then its
hidden layers' alone), and SCFF MLP and CNN trained with positives and negatives swapped (the pair
builder patched).

Margins (``probe_margin``) are about half the smallest gain measured over seeds 0-2 with these settings;
the measurements are in ``EXPECTATIONS``' comments. The probe learns from the labels of the samples the rule
trained on (a few hundred): with few labels the learned features' advantage over random ones shows clearly.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from dataclasses import dataclass
from functools import cache
from typing import Callable

import pytest
import torch

import fwdlearn.learner
import fwdlearn.objectives.scff
import fwdlearn.registry
from conftest import shrink, write_preset
from fwdlearn.data import LabelledDataset, Split, load_dataset
from fwdlearn.errors import DivergenceError
from fwdlearn.eval.report import probe_network
from fwdlearn.learner import Batch, Learner
from fwdlearn.nn.autoencoder import reconstruction_error
from fwdlearn.objectives.scff import PairBatch
from fwdlearn.presets import load_preset
from fwdlearn.rules.lac import LACLearner
from fwdlearn.rules.scff import SCFFLearner
from fwdlearn.run import untrained_network

RULES = list(fwdlearn.registry.rules())


# ----- a short run on a subsample of the rule's embedded data ------------------------------------------------

@dataclass(frozen=True)
class Expectation:
    """How a rule is run here and what it must reach. ``epochs``, ``width``: caps on every epoch count and layer
    size of its embedded preset (narrow layers learn faster and their random features read worse, so learning
    shows); ``adjust``: any other change; ``train``: training samples it learns from; ``probe_margin``: the least
    gain of the probe's test accuracy (a fraction) over the untrained network; ``objective``: the rule's own
    check (failures, as text)."""

    epochs: int
    train: int
    probe_margin: float
    objective: Callable[["Run"], list[str]]
    width: int | None = None
    adjust: Callable[[object], None] | None = None


@dataclass
class Run:
    name: str
    config: object
    dataset: LabelledDataset
    input_dim: object
    learner: Learner

    @property
    def trained(self) -> torch.nn.Module:
        return self.learner.network

    def untrained(self) -> torch.nn.Module:
        return untrained_network(self.config, self.input_dim)


@cache
def subsampled(name: str, train: int) -> LabelledDataset:
    """Embedded data set ``name`` with ``train`` of its training samples (the same ones every time) and its whole
    test split."""
    dataset = load_dataset(name)
    rows = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))[:train]
    part = dataset.train
    return dataclasses.replace(dataset, train=Split(part.x[rows], part.y[rows],
                                                    None if part.lengths is None else part.lengths[rows]))


def expectation(name: str) -> Expectation:
    assert name in EXPECTATIONS, (f"rule {name!r} has no learning expectation: run it here over a few seeds and "
                                  f"add its settings and measured margin to EXPECTATIONS in tests/test_learns.py")
    return EXPECTATIONS[name]


def quick_config(name: str, seed: int = 0):
    """Rule ``name``'s embedded default preset, capped and adjusted as its ``Expectation`` says, with ``seed``."""
    rule = fwdlearn.registry.get_rule(name)
    config = load_preset(rule.presets[None])
    settings = expectation(name)
    shrink(config, settings.width, None, settings.epochs, keep=("probe",))   # the probe reads as the run path does
    if settings.adjust is not None:
        settings.adjust(config)
    config.seed = seed
    return config.validate("quick")


def train_quick(name: str, seed: int = 0) -> Run:
    """Train rule ``name`` as the run path does (``train_inputs``, ``Learner.train``) on ``Expectation.train`` of
    its embedded training samples; the probe then learns from those samples' labels and every check reads the
    whole test split."""
    rule, settings = fwdlearn.registry.get_rule(name), expectation(name)
    config = quick_config(name, seed)
    dataset = subsampled(config.data.dataset, settings.train)
    input_dim = rule.network_input(dataset)
    learner = rule.learner(config, input_dim)
    learner.prepare(dataset)
    learner.train(*rule.learner.train_inputs(dataset), show_progress=False)
    return Run(name, config, dataset, input_dim, learner)


# ----- the learning criterion ---------------------------------------------------------------------------------

def loss_curves(learner: Learner) -> dict[str, list[float]]:
    """Each group's training loss per epoch, from the learner's history."""
    curves: dict[str, list[float]] = {}
    for record in learner.history:
        curves.setdefault(record["group"], []).append(record["loss"])
    return curves


def probe_accuracy(run: Run, network: torch.nn.Module) -> float:
    """Test accuracy of the linear probe on the layers the run path reads together (``probe.layers``)."""
    learner = type(run.learner)
    combined = run.config.probe.layers or list(range(1, learner.num_probe_layers(run.config) + 1))
    (result,) = probe_network(learner.probe_network(network), run.dataset, run.config, [combined], "", False)
    return result.test_accuracy


@dataclass
class Measured:
    losses: dict[str, list[float]]
    trained_probe: float
    untrained_probe: float


def measure(run: Run) -> Measured:
    return Measured(loss_curves(run.learner), probe_accuracy(run, run.trained), probe_accuracy(run, run.untrained()))


def learning_failures(run: Run, measured: Measured | None = None) -> list[str]:
    """Why ``run`` did not learn (empty: it did): a group whose loss did not fall from its first epoch to its
    last, a probe gain below the rule's margin, or a failure of the rule's own objective check."""
    measured = measured or measure(run)
    curves = {group: measured.losses.get(group, []) for group in run.learner.groups}
    failures = [f"{group} trained {len(curve)} epoch(s): no fall to see" for group, curve in curves.items()
                if len(curve) < 2]
    failures += [f"{group} loss {curve[0]:.4g} -> {curve[-1]:.4g} did not fall"
                 for group, curve in curves.items() if len(curve) >= 2 and not curve[-1] < curve[0]]
    gain = measured.trained_probe - measured.untrained_probe
    margin = expectation(run.name).probe_margin
    if not gain >= margin:
        failures.append(f"probe {measured.trained_probe:.4f} vs untrained {measured.untrained_probe:.4f}: "
                        f"gain {gain:+.4f} below {margin}")
    return failures + expectation(run.name).objective(run)


# ----- each rule's own objective, measured on test samples ----------------------------------------------------

def _true_pairs(x: torch.Tensor) -> PairBatch:
    """Positives ``[x_k, x_k]`` and negatives ``[x_k, x_(k+1) mod N]``, written out here, not by the rule."""
    k = torch.arange(x.shape[0])
    return PairBatch(x, k, k, k, torch.roll(k, -1))


@torch.no_grad()
def scff_goodness_gaps(learner: Learner, x: torch.Tensor) -> list[float]:
    """Per layer of an SCFF MLP/CNN learner: mean goodness of the positive minus the negative pairs of ``x``,
    each layer fed as in training (the layer below's outputs, carried or re-paired: ``next_layer_batch``)."""
    learner.network.eval()
    pairs, gaps = _true_pairs(x), []
    for index, layer in enumerate(learner.network.layers):
        z_pos, z_neg = learner.preactivations(index, pairs)
        gaps.append(float(layer.goodness(z_pos).mean() - layer.goodness(z_neg).mean()))
        if index + 1 < len(learner.network.layers):
            pairs = learner.next_layer_batch(index, z_pos, z_neg)
    return gaps


@torch.no_grad()
def rnn_goodness_gaps(learner: Learner, x: torch.Tensor, lengths: torch.Tensor) -> list[float]:
    """Per direction of an SCFF recurrent learner: mean per-step goodness of the positive minus the negative
    sequence pairs of ``x``."""
    x = x[:, :int(lengths.max())]
    k = torch.arange(x.shape[0])
    left, right = torch.cat([k, k]), torch.cat([k, torch.roll(k, -1)])
    pair_lengths = torch.maximum(lengths[left], lengths[right])
    n, gaps = x.shape[0], []
    for which in range(len(learner.network.directions)):
        drive = learner.network.drive(which, x, lengths, left, right, pair_lengths)
        states = learner.previous_states(which, drive, pair_lengths)
        g, valid = learner.step_goodness(which, drive, pair_lengths, states)
        gaps.append(float(g[:n][valid[:n]].mean() - g[n:][valid[n:]].mean()))
    return gaps


def _pairs_separate_more(trained: list[float], untrained: list[float], part: str) -> list[str]:
    return [f"{part} {i + 1}: positive minus negative goodness {gap:+.4g}, untrained {before:+.4g}"
            for i, (gap, before) in enumerate(zip(trained, untrained)) if not gap > max(0.0, before)]


def scff_pairs_separate(run: Run) -> list[str]:
    """Positive test pairs have more goodness than negative ones in every layer, by more than before training."""
    fresh = type(run.learner)(run.config, run.input_dim)          # the untrained network
    x = run.dataset.test.x
    return _pairs_separate_more(scff_goodness_gaps(run.learner, x), scff_goodness_gaps(fresh, x), "layer")


def rnn_pairs_separate(run: Run) -> list[str]:
    """The same for each direction of the recurrent layer, on the per-step goodness."""
    fresh = type(run.learner)(run.config, run.input_dim)
    test = run.dataset.test
    return _pairs_separate_more(rnn_goodness_gaps(run.learner, test.x, test.lengths),
                                rnn_goodness_gaps(fresh, test.x, test.lengths), "direction")


@torch.no_grad()
def ff_label_wins(network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, first_layer: int) -> float:
    """Fraction of samples whose goodness summed over layers ``first_layer``.. (what FF classifies by, section 3.3)
    is higher with their own label overlaid than with the next one, ``(y + 1) mod C``."""
    network.eval()

    def goodness(labels: torch.Tensor) -> torch.Tensor:
        outputs = network.labelled(x, labels)
        return sum(layer.goodness(out) for layer, out in list(zip(network.layers, outputs))[first_layer - 1:])
    return float((goodness(y) > goodness((y + 1) % network.num_classes)).float().mean())


FF_LABEL_FRACTION = 0.75    # seeds 0-2: 0.95 / 0.96 / 0.91 trained, 0.53 / 0.51 / 0.59 untrained


def ff_correct_label_wins(run: Run) -> list[str]:
    test, first = run.dataset.test, run.config.classify_from
    fraction = ff_label_wins(run.trained, test.x, test.y, first)
    if fraction >= FF_LABEL_FRACTION:
        return []
    return [f"the correct label gives more goodness than a wrong one on {fraction:.2%} of test samples, "
            f"needs {FF_LABEL_FRACTION:.0%}"]


# Test reconstruction error at most this fraction of the untrained autoencoder's; seeds 0-2 reached 0.21-0.23
# (lac-mlp) and 0.42-0.63 (lac-conv).
LAC_RECONSTRUCTION_RATIO = 0.8


def lac_reconstructs(run: Run) -> list[str]:
    """The autoencoder reconstructs the test images better than untrained (the direction of the hidden contrast
    is the ``hidden`` group's loss, which must fall)."""
    target = run.config.target
    trained = reconstruction_error(run.trained, run.dataset.test.x, target)
    untrained = reconstruction_error(run.untrained(), run.dataset.test.x, target)
    if trained < LAC_RECONSTRUCTION_RATIO * untrained:
        return []
    return [f"test reconstruction error {trained:.4f} not below {LAC_RECONSTRUCTION_RATIO} x untrained {untrained:.4f}"]


def _threshold_is_width(config) -> None:
    """FF's threshold stays the layer's width (the preset's choice, 256 for 256 units) when layers are narrowed."""
    for layer in config.layers:
        layer.theta = float(layer.width)


def _faster_recurrent_layer(config) -> None:
    """10x the preset's rate, so that three short epochs on 200 sequences show the learning."""
    config.layers[0].lr *= 10


ENCODERS = tempfile.TemporaryDirectory(prefix="fwdlearn-encoders-")


def _narrow_encoder(width: int) -> Callable[[object], None]:
    """For a self-supervised rule: its encoder preset with every layer at most ``width`` wide (the local rule's
    ``width`` cap), written as a preset file the config names."""
    def adjust(config) -> None:
        local = load_preset(config.encoder)
        shrink(local, width, None, None)
        config.encoder = str(write_preset(local, Path(ENCODERS.name) / f"{local.name}-w{width}.toml"))
    return adjust


# Probe gain (trained minus untrained test accuracy) measured over seeds 0 / 1 / 2 with these settings; the margin
# is about half the smallest.
def ssl_views_agree(run: Run) -> list[str]:
    """Self-supervised objective: two views of the same test sample are embedded closer (cosine) than views of
    different samples, by a clear margin and by more than in the same learner untrained."""
    test = run.dataset.test
    batch = Batch(test.x[:256], None if test.lengths is None else test.lengths[:256])

    def agreement(learner) -> float:
        view1, view2 = learner.views(batch, torch.Generator().manual_seed(1))
        learner.online.eval()
        with torch.no_grad():
            z1 = torch.nn.functional.normalize(learner.online(view1), dim=1)
            z2 = torch.nn.functional.normalize(learner.online(view2), dim=1)
        similarity = z1 @ z2.T
        same = similarity.diagonal().mean()
        other = (similarity.sum() - similarity.diagonal().sum()) / (similarity.numel() - len(similarity))
        return float(same - other)

    trained = agreement(run.learner)
    untrained = agreement(type(run.learner)(run.config, run.input_dim))
    if trained > untrained + 0.1:
        return []
    return [f"views of one image agree by {trained:.3f} over other images' (untrained {untrained:.3f})"]


EXPECTATIONS: dict[str, Expectation] = {
    # +0.067 / +0.128 / +0.142
    "scff-mlp": Expectation(epochs=8, width=32, train=1000, probe_margin=0.03, objective=scff_pairs_separate),
    # +0.069 / +0.047 / +0.044
    "scff-cnn": Expectation(epochs=10, width=16, train=1000, probe_margin=0.02, objective=scff_pairs_separate),
    # +0.093 / +0.173 / +0.163
    "scff-rnn": Expectation(epochs=3, width=32, train=200, probe_margin=0.04, objective=rnn_pairs_separate,
                            adjust=_faster_recurrent_layer),
    # +0.047 / +0.122 / +0.147
    "ff": Expectation(epochs=8, width=32, train=1000, probe_margin=0.02, objective=ff_correct_label_wins,
                      adjust=_threshold_is_width),
    # +0.550 / +0.400 / +0.497 (the untrained encoder probes at 24-35 %)
    "lac-mlp": Expectation(epochs=5, train=800, probe_margin=0.2, objective=lac_reconstructs),
    # +0.536 / +0.542 / +0.567
    "lac-conv": Expectation(epochs=2, train=500, probe_margin=0.25, objective=lac_reconstructs),
    # +0.042 / +0.075 / +0.094 (SimCLR, the ssl-digits preset, encoder layers capped at 32)
    "ssl-mlp": Expectation(epochs=8, train=1000, probe_margin=0.02, objective=ssl_views_agree,
                           adjust=_narrow_encoder(32)),
    # +0.036 / +0.047 / +0.053 (SimCLR, the ssl-digits-conv preset, encoder channels capped at 16)
    "ssl-cnn": Expectation(epochs=10, train=1000, probe_margin=0.02, objective=ssl_views_agree,
                           adjust=_narrow_encoder(16)),
    # +0.053 / +0.067 / +0.047 (SimCLR by BPTT, the ssl-sequences preset, 32 units each way)
    "ssl-rnn": Expectation(epochs=3, train=200, probe_margin=0.02, objective=ssl_views_agree,
                           adjust=_narrow_encoder(32)),
}


# ----- every rule learns ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", RULES)
def test_a_short_run_of_every_rule_learns(name):
    failures = learning_failures(train_quick(name))
    assert not failures, f"{name} did not learn: " + "; ".join(failures)


# ----- the criterion fails when learning is broken --------------------------------------------------------------

def _step_modules(learner: type) -> list:
    """The modules of ``learner``'s class hierarchy that hold ``learner.take_step`` (imported by name, or its own)."""
    modules = {sys.modules[cls.__module__] for cls in learner.__mro__}
    return [m for m in modules if getattr(m, "take_step", None) is fwdlearn.learner.take_step]


def ascend_gradients(monkeypatch, name: str, groups: set[str] | None = None) -> list[int]:
    """Every optimiser step of rule ``name``'s parameter groups (or of ``groups``) takes the negated gradient:
    a step on ``-loss`` for a rule whose update does not go through ``take_step`` (LAC: one backward per layer
    before its group's step; the fused backends: gradients written in closed form). A step pre-hook on each optimiser, added where the learner makes its groups. Returns a
    counter of the negated steps."""
    learner, steps = fwdlearn.registry.get_rule(name).learner, [0]
    real = learner.make_groups

    def negate(optimizer, args, kwargs):
        steps[0] += 1
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.neg_()

    def make_groups(self):
        made = real(self)
        for group in made:
            if groups is None or group.name in groups:
                group.optimizer.register_step_pre_hook(negate)
        return made
    monkeypatch.setattr(learner, "make_groups", make_groups)
    return steps


def step_on_minus_loss(monkeypatch, name: str) -> list[int]:
    """Make rule ``name`` update on ``-loss``: ``take_step`` replaced in ``fwdlearn.learner`` and wherever the rule
    imported it; a rule that does not import it, or that takes closed-form steps (``take_fused_step``: the
    gradient written into ``.grad``, no loss to negate), has its gradients negated (``ascend_gradients``).
    Returns a counter of the negated steps."""
    learner = fwdlearn.registry.get_rule(name).learner
    imported = [module for module in _step_modules(learner) if module is not fwdlearn.learner]
    fused = any(getattr(sys.modules[cls.__module__], "take_fused_step", None) is fwdlearn.learner.take_fused_step
                for cls in learner.__mro__)
    if not imported or fused:
        return ascend_gradients(monkeypatch, name)
    real, steps = fwdlearn.learner.take_step, [0]

    def on_minus_loss(groups, loss):
        steps[0] += 1
        real(groups, -loss)
    for module in _step_modules(learner):
        monkeypatch.setattr(module, "take_step", on_minus_loss)
    return steps


def failures_of_broken_training(name: str) -> list[str]:
    """``learning_failures`` of a short run of ``name`` as patched by the caller; a run the divergence guard
    stops did not learn either."""
    try:
        run = train_quick(name)
    except DivergenceError as exc:
        return [f"training diverged: {exc}"]
    return learning_failures(run)


@pytest.mark.parametrize("name", RULES)
def test_every_rule_stepping_on_minus_its_loss_fails_the_criterion(name, monkeypatch):
    steps = step_on_minus_loss(monkeypatch, name)
    failures = failures_of_broken_training(name)
    assert steps[0] > 0, f"{name} imports take_step but never stepped through it"
    assert failures, f"{name} passed the learning criterion while stepping on -loss"


LAC_RULES = [name for name, rule in fwdlearn.registry.rules().items() if issubclass(rule.learner, LACLearner)]


@pytest.mark.parametrize("name", LAC_RULES)
def test_lac_hidden_layers_ascending_their_contrast_fail_the_criterion(name, monkeypatch):
    """The hidden loss's direction alone: the output layer still learns to reconstruct."""
    steps = ascend_gradients(monkeypatch, name, {"hidden"})
    failures = failures_of_broken_training(name)
    assert steps[0] > 0 and failures, f"{name} passed the learning criterion with its hidden contrast negated"


SCFF_PAIRED_RULES = [name for name, rule in fwdlearn.registry.rules().items() if issubclass(rule.learner, SCFFLearner)]


@pytest.mark.parametrize("name", SCFF_PAIRED_RULES)
def test_scff_trained_on_swapped_positives_and_negatives_fails_the_criterion(name, monkeypatch):
    """The pair builder hands ``[x_k, x_(k+s)]`` as the positives and ``[x_k, x_k]`` as the negatives while the rule
    trains; the criterion then reads the network with the true pairs."""
    real, built = fwdlearn.objectives.scff._paired, [0]

    def swapped(views, second, generator):
        built[0] += 1
        pairs = real(views, second, generator)
        return PairBatch(pairs.views, pairs.neg_left, pairs.neg_right, pairs.pos_left, pairs.pos_right)
    with monkeypatch.context() as patch:
        patch.setattr(fwdlearn.objectives.scff, "_paired", swapped)
        run = train_quick(name)
    assert built[0] > 0
    assert learning_failures(run), f"{name} passed the learning criterion trained on swapped pairs"
