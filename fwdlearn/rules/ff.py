"""Hinton's Forward-Forward, supervised (Hinton 2022, arXiv:2212.13345, sections 2, 2.1 and 3.3).

For every batch of labelled samples ``(x, y)``:
  1. positives: ``x`` with its label written as a one-hot into its first ``C`` inputs; negatives: the
     same ``x`` with a wrong label drawn uniformly from the other ``C - 1`` (``objectives.ff``);
  2. each layer computes ``y = ReLU(W x + b)`` of its input (length-normalised for every layer after
     the first, section 2.1: only the direction of the activity below is passed on);
  3. each trained layer takes one AdamW step on its own loss
     ``softplus(theta - G_pos) + softplus(G_neg - theta)`` with ``G = sum_j y_j^2`` (section 2) and
     passes its detached activity on: its parameter group is that layer alone.

Classification (section 3.3): the sample is run once per label and the label with the highest
goodness summed over the layers from ``classify_from`` on wins (Hinton: every layer but the first).
The linear probe that reads every rule reads FF's activities for the neutral label (``1/C`` in each
label input). Schedules as for SCFF: ``simultaneous`` (Hinton's: every layer on every batch) or
``sequential``. Everything that can change a layer's weights is in this file and ``objectives/ff.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..baselines.end_to_end import train_end_to_end
from ..config import (SCHEDULES, BPTTConfig, DataConfig, ProbeConfig, RunConfig, check_backend, check_run_name,
                      check_trained_epochs)
from ..kernels.scff_pairs import scff_pair_gradient
from ..learner import Batch, LayerwiseLearner, ParamGroup, TrainedBaseline, take_fused_step, take_step
from ..errors import DataError, check
from ..eval.features import probe_inputs
from ..nn.ff_layer import FFLinear
from ..nn.quant import QuantConfig
from ..objectives.ff import classify_by_goodness, ff_loss, overlay_label, overlay_neutral, wrong_labels
from ..rule import Rule


@dataclass
class FFLayerConfig:
    """One FF layer and its own optimiser: AdamW, the rate times ``lr_decay`` after every epoch."""

    width: int
    lr: float
    theta: float                   # goodness threshold (sum of squares: of the order of the width)
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    epochs: int = 1

    def validate(self, where: str) -> None:
        check(self.width >= 1, f"{where}.width must be a positive integer, got {self.width}")
        check(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        check(self.theta > 0, f"{where}.theta must be > 0, got {self.theta}")
        check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        check(0 < self.lr_decay <= 1, f"{where}.lr_decay must lie in (0, 1], got {self.lr_decay}")
        check_trained_epochs(self.epochs, where)


@dataclass
class FFConfig(RunConfig):
    """A whole Forward-Forward run. ``label_value``: the one-hot's height in the input (data in [0, 1]: 1).
    ``classify_from``: the first (1-based) layer whose goodness counts for classification. ``bp``: the
    same network trained end to end by supervised back-propagation (0 epochs skips it)."""

    name: str
    layers: list[FFLayerConfig]
    description: str = ""
    learner: str = "ff"
    seed: int = 0
    batch_size: int = 100
    schedule: str = "simultaneous"
    num_classes: int = 10
    label_value: float = 1.0
    classify_from: int = 2
    normalize_first: bool = False  # section 2.1 normalises every layer's input after the first; True: the first's too
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    bp: BPTTConfig = field(default_factory=lambda: BPTTConfig(batch_size=100, grad_clip=0.0))
    quant: QuantConfig = field(default_factory=QuantConfig)
    backend: str = "fused"         # "fused": closed-form gradient (the pair kernel, goodness summed); "torch": autograd

    def validate(self, where: str = "config") -> "FFConfig":
        check_run_name(self.name, where)
        check_backend(self.backend, where)
        check(len(self.layers) >= 1, f"{where}.layers must list at least one layer")
        for i, layer in enumerate(self.layers):
            layer.validate(f"{where}.layers[{i}]")
        check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")
        check(self.schedule in SCHEDULES, f"{where}.schedule must be one of {', '.join(SCHEDULES)}, "
                                          f"got {self.schedule!r}")
        check(self.num_classes >= 2, f"{where}.num_classes must be >= 2, got {self.num_classes}")
        check(self.label_value > 0, f"{where}.label_value must be > 0, got {self.label_value}")
        check(1 <= self.classify_from <= len(self.layers),
              f"{where}.classify_from must lie in 1..{len(self.layers)}, got {self.classify_from}")
        self.data.validate(f"{where}.data")
        check(not self.data.is_sequence, f"{where}.data.dataset: ff takes fixed-size samples, "
                                         f"not the sequence data set {self.data.dataset!r}")
        self.probe.validate(f"{where}.probe", len(self.layers))
        self.bp.validate(f"{where}.bp")
        self.quant.validate(f"{where}.quant")
        return self


class FFNetwork(nn.Module):
    """``FFLinear`` layers; ``forward(x)`` runs ``x`` with the neutral label and returns every layer's activity.

    ``labelled(x, labels)`` runs it with the given labels, ``goodness_per_label(x)`` with every label.
    """

    def __init__(self, input_dim: int, widths: list[int], num_classes: int, label_value: float = 1.0,
                 normalize_first: bool = False):
        super().__init__()
        dims = [input_dim] + list(widths)
        self.layers = nn.ModuleList(FFLinear(dims[i], dims[i + 1], normalize_input=i > 0 or normalize_first)
                                    for i in range(len(widths)))
        self.num_classes, self.label_value = num_classes, label_value

    def run(self, h: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            h = layer.passed(layer(h))
            outputs.append(layer.tap(h))
        return outputs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.run(overlay_neutral(x, self.num_classes, self.label_value))

    def labelled(self, x: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        return self.run(overlay_label(x, labels, self.num_classes, self.label_value))

    @torch.no_grad()
    def goodness_per_label(self, x: torch.Tensor, first_layer: int = 1) -> torch.Tensor:
        """``[N, C]``: goodness summed over layers ``first_layer..`` (1-based) with each label overlaid."""
        columns = []
        for label in range(self.num_classes):
            labels = torch.full((x.shape[0],), label, dtype=torch.int64, device=x.device)
            outputs = self.labelled(x, labels)
            columns.append(sum(layer.goodness(y) for layer, y in
                               zip(self.layers[first_layer - 1:], outputs[first_layer - 1:])))
        return torch.stack(columns, dim=1)


class FFLearner(LayerwiseLearner):
    """Trains an ``FFNetwork`` layer-locally on labelled data; one parameter group per layer."""

    needs_labels = True
    shards_itself = True   # data parallel: wrong labels drawn over the whole batch, then the own rows kept

    @staticmethod
    def build_network(config, input_dim) -> FFNetwork:
        """The network exactly as a fresh learner initialises it (also the untrained baseline), on the CPU."""
        torch.manual_seed(config.seed)
        return FFNetwork(int(input_dim), [c.width for c in config.layers], config.num_classes, config.label_value,
                         config.normalize_first)

    @staticmethod
    def train_inputs(dataset):
        return dataset.train.x, None, dataset.train.y

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if lengths is not None:
            raise DataError("ff trains on fixed-size samples, not sequences")
        if x[0].numel() <= self.config.num_classes:
            raise DataError(f"ff writes the label into the first {self.config.num_classes} inputs; samples have "
                            f"only {x[0].numel()}")

    def train_batch(self, batch: Batch, active: list[str],
                    wrong: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
        """Positives (true label) and negatives (a wrong label) go through every layer up to the deepest
        active one as one block of ``2N`` rows; each active layer steps on its own loss. ``wrong``: the
        negatives' labels, drawn from the learner's generator when ``None`` (the on-device update gives its own)."""
        x, y = batch.x.to(self.device), batch.y.to(self.device)
        n, c = x.shape[0], self.config
        if int(y.max()) >= c.num_classes or int(y.min()) < 0:
            raise DataError(f"ff: labels must lie in 0..{c.num_classes - 1}")
        wrong = wrong_labels(y, c.num_classes, self.generator) if wrong is None else wrong.long().to(self.device)
        if self.data_parallel is not None:   # the wrong labels drawn for the whole batch, as one process draws them
            rows = self.data_parallel.rows(n)
            x, y, wrong, n = x[rows], y[rows], wrong[rows], len(range(n)[rows])
        h = torch.cat([overlay_label(x, y, c.num_classes, c.label_value),
                       overlay_label(x, wrong, c.num_classes, c.label_value)])
        indices = self.layer_indices(active)
        stats = {}
        for index in range(max(indices) + 1):
            layer, group = self.network.layers[index], self.groups.get(f"layer{index + 1}")
            if index in indices and c.backend == "fused":
                h, stats[group.name] = fused_ff_step(layer, h, n, c.layers[index].theta, group)
            elif index in indices:
                out = layer(h)
                g = layer.goodness(out)
                terms = ff_loss(g[:n], g[n:], c.layers[index].theta)
                take_step([group], terms.loss)
                stats[group.name] = {"loss": float(terms.loss.detach()), "goodness_pos": float(terms.goodness_pos),
                                     "goodness_neg": float(terms.goodness_neg)}
                h = layer.passed(out).detach()
            else:
                with torch.no_grad():
                    h = layer.passed(layer(h))
        return stats

    @classmethod
    def extra_metrics(cls, config, network, dataset, show_progress) -> dict:
        """Classification by the label with the highest goodness (section 3.3), on both splits."""
        return {"goodness_classification": {
            split: round(goodness_accuracy(network, getattr(dataset, part).x, getattr(dataset, part).y,
                                           config.classify_from), 5)
            for split, part in (("train_accuracy", "train"), ("test_accuracy", "test"))}}

    @classmethod
    def baselines(cls, config, dataset, input_dim, show_progress, log) -> dict:
        """The same network (neutral label) trained end to end by supervised back-propagation (``[bp]``)."""
        if not config.bp.epochs:
            return {}
        network = cls.build_network(config, input_dim)
        layers = config.probe.layers or list(range(1, len(config.layers) + 1))
        log(f"BP baseline: the same network trained end to end for {config.bp.epochs} epochs")

        def features_of(batch: Batch) -> torch.Tensor:
            return probe_inputs(network(batch.x), layers, config.probe.standardize)

        width = sum(config.layers[i - 1].width for i in layers)
        seconds, history = train_end_to_end(network, features_of, width, dataset.train.x, dataset.train.y,
                                            dataset.num_classes, config.bp, config.seed, show_progress)
        return {"bp": TrainedBaseline(network, seconds, history)}


def fused_ff_step(layer: FFLinear, h: torch.Tensor, n: int, theta: float, group: ParamGroup):
    """One closed-form FF step (methods section 6 with Hinton's goodness, the sum of squares): ``P = W x`` of the
    ``n`` positive and ``n`` negative inputs ``h`` (one product), the pair kernel (each example a single row:
    goodness, ``softplus`` losses, ``R = dL/dP``), ``dW = R^T x`` (one product), one AdamW step. Returns the
    layer's activity (from the weights before the step, as the reference path) and its statistics."""
    projections, inputs = layer.fused_projection(h)
    k = torch.arange(n, device=h.device)
    out = scff_pair_gradient(projections, layer.linear.bias, k, None, k + n, None, theta, theta, 0.0, goodness="sum")
    activity = layer.passed(torch.relu(projections + layer.linear.bias.detach()))
    take_fused_step(group, lambda: layer.accumulate_gradients(projections, inputs, out.rows))
    return activity, {"loss": out.loss, "goodness_pos": out.goodness_pos, "goodness_neg": out.goodness_neg}


def goodness_accuracy(network: FFNetwork, x: torch.Tensor, y: torch.Tensor, first_layer: int,
                      batch_size: int = 2000) -> float:
    """Fraction of ``x`` whose highest-goodness label (layers ``first_layer``.., section 3.3) is ``y``."""
    network.eval()
    device = next(network.parameters()).device
    correct = 0
    for s in range(0, x.shape[0], batch_size):
        scores = network.goodness_per_label(x[s:s + batch_size].to(device), first_layer)
        correct += int((classify_by_goodness(scores).cpu() == y[s:s + batch_size]).sum())
    return correct / max(1, x.shape[0])


def _bench_update(widths: list[int], x: torch.Tensor):
    """One FF update: every layer on every batch (Hinton's schedule), random labels."""
    config = FFConfig(name="bench", layers=[FFLayerConfig(width=w, lr=1e-4, theta=float(w)) for w in widths],
                      batch_size=x.shape[0], classify_from=1).validate("bench")
    learner = FFLearner(config, x.shape[1], device=x.device)
    labels = torch.randint(0, config.num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    return learner, Batch(x, y=labels.to(x.device))


RULES = (
    Rule(name="ff", label="FF", learner=FFLearner, config=FFConfig,
         summary="Hinton's Forward-Forward, supervised: the label overlaid on the input, one goodness per layer",
         presets={None: "ff-digits", "mnist": "ff-mnist"}, quantisable=False, bench=_bench_update,
         in_graph="label overlay: the first C inputs replaced by the neutral label (label_value/C each); per layer "
                  "ReLU(W·x + b), the input of every layer after the first divided by its L2 norm (+1e-8); "
                  "linear read-out of the activities"),
)
