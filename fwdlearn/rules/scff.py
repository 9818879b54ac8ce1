"""SCFF for multilayer perceptrons and convolutional networks, read against Algorithms 1 and 2.

One learner for both: ``scff-mlp`` builds an ``SCFFNetwork`` (``PairedLinear`` layers),
``scff-cnn`` an ``SCFFConvNetwork`` (``PairedConv2d`` layers, pairs concatenated along channels,
goodness maps per position); the layers offer the same interface (``nn.blocks.LocalBlock``), so
the schedule below is shared. Everything that can change a layer's weights is in this file and
``objectives/scff.py``.

For every batch (Algorithm 1/2, inner loop):
  1. build the first layer's pairs from the data (``data_pairs``);
  2. for each layer below the one(s) being trained, compute its pre-activations without
     gradients and build the next layer's examples: Algorithm 1 carries the positive and
     negative outputs on (``carry_pairs``), Algorithm 2 re-pairs the positive outputs (``repair``);
  3. the trained layer takes one local step on its own loss: the goodness of the ReLU of its
     positive and negative pre-activations (Eq. 1), the thresholded loss with the penalty
     (Eqs. 3-4, ``scff_loss``), one AdamW step; its parameter group is that layer alone. The ``fused``
     backend (the default) computes that step in closed form (methods section 6, ``fused_step``): the
     projections, one kernel for everything element-wise, the weight-gradient product; ``torch`` runs
     autograd through the same operations (the reference, equal to rounding).

Schedules: ``sequential`` trains each layer for its epochs and freezes it before the next
(section 3.2): one stage per layer; ``simultaneous`` trains every layer on every batch, each on the
detached output of the layer below. Each layer's learning rate decays by ``lr_decay`` per epoch
(Tables F.2-F.5). All randomness (shuffling, shifts, translations, augmentation) comes from the
learner's one generator, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..baselines.supervised import train_supervised
from ..kernels.scff_pairs import scff_pair_gradient
from ..learner import Batch, LayerwiseLearner, ParamGroup, TrainedBaseline, clear_gradients, step_and_clear, take_step
from ..config import SCFFConfig
from ..data.augment import augment
from ..data.transforms import EPS, image_shape
from ..errors import DataError, check
from ..nn.scff_conv_network import SCFFConvNetwork
from ..nn.scff_network import SCFFNetwork
from ..distributed.scff_pairs import every_projection, next_pairs, own_gradient_rows, own_pairs
from ..objectives.scff import PairBatch, carry_pairs, data_pairs, repair, scff_loss
from ..rule import Rule


def _check_images(config, where: str) -> None:
    """The MLP and conv rules train on fixed-size samples; sequences are scff-rnn's."""
    check(not config.data.is_sequence, f"{where}.data.dataset {config.data.dataset!r} is a sequence data set; "
                                       f"use scff-rnn")


class SCFFLearner(LayerwiseLearner):
    """Trains an ``SCFFNetwork`` layer-locally (``scff-mlp``); ``SCFFConvLearner`` the convolutional one."""

    min_batch = 2   # a negative pair needs two samples
    shards_itself = True   # data parallel: pairs are drawn over the whole batch, then each process keeps its own
    pipelines = True       # its layers can be split into stages (``distributed/pipeline.py``)

    @classmethod
    def check_config(cls, config, where: str) -> None:
        _check_images(config, where)
        for i, layer in enumerate(config.layers):
            check(not layer.conv.enabled, f"{where}.layers[{i}].conv applies to scff-cnn only")
        check(config.bptt.epochs == 0, f"{where}.bptt applies to scff-rnn only")

    @staticmethod
    def build_network(config, input_dim) -> torch.nn.Module:
        """The network exactly as a fresh learner initialises it (also the untrained baseline), on the CPU."""
        torch.manual_seed(config.seed)
        layers = config.layers
        return SCFFNetwork(input_dim, [c.width for c in layers], [c.algorithm for c in layers],
                           [c.activation for c in layers], config.quant)

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if lengths is not None:
            raise DataError("scff-mlp trains on fixed-size samples; for sequences use scff-rnn")
        if x.shape[0] < 2:
            raise DataError(f"SCFF needs at least 2 training samples to form negative pairs, got {x.shape[0]}")

    def distribute(self, data_parallel) -> None:
        check(self.config.backend == "fused", "data parallel SCFF runs the fused backend (backend = \"fused\")")
        super().distribute(data_parallel)

    def preactivations(self, index: int, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative pre-activations of layer ``index``; each distinct view is projected once."""
        layer = self.network.layers[index]
        projections = layer.project(batch.views)
        return (layer.combine(projections, batch.pos_left, batch.pos_right),
                layer.combine(projections, batch.neg_left, batch.neg_right))

    def update(self, index: int, batch: PairBatch) -> tuple[Projected, dict[str, float]]:
        """One local step of layer ``index``. Returns what it computed with (its detached projections ``W x`` of
        ``batch.views`` and its bias before the step) and its statistics. ``backend = "fused"``: the closed-form gradient (``fused_step``); ``"torch"``: autograd."""
        if batch.views.requires_grad:
            raise RuntimeError("a local layer's input must be detached from the layers before it")
        layer, c = self.network.layers[index], self.config.layers[index]
        group = self.groups[f"layer{index + 1}"]
        if self.config.backend == "fused":
            return fused_step(layer, batch, c, group, self.data_parallel)
        projections = layer.project(batch.views)
        bias = layer.bias.detach().clone()
        z_pos = layer.combine(projections, batch.pos_left, batch.pos_right)
        z_neg = layer.combine(projections, batch.neg_left, batch.neg_right)
        terms = scff_loss(layer.goodness(z_pos), layer.goodness(z_neg), c.theta_pos, c.theta_neg, c.penalty)
        take_step([group], terms.loss)
        return Projected(projections.detach(), bias), {"loss": float(terms.loss.detach()),
                                                       "goodness_pos": float(terms.goodness_pos),
                                                       "goodness_neg": float(terms.goodness_neg)}

    def next_layer_batch(self, index: int, z_pos: torch.Tensor, z_neg: torch.Tensor | None,
                         overwrite: bool = False, shift: int | None = None,
                         spread: tuple[int, int] | None = None) -> PairBatch:
        """Examples for layer ``index + 1`` from layer ``index``'s detached pre-activations (``z_neg``: Algorithm 1
        only; ``overwrite``: they are no one else's, the activation may run in place; ``shift``: Algorithm 2's
        pairing, drawn from the learner's generator when ``None``; ``spread``: data parallel, the pre-activations
        are this process's rows, ``PairBatch.spread``)."""
        layer = self.network.layers[index]
        passed = getattr(layer, "passed_", layer.passed) if overwrite else layer.passed
        carried = self.config.layers[index + 1].algorithm == 1
        if spread is not None:
            return next_pairs(passed(z_pos), passed(z_neg) if carried else None, self.data_parallel, spread[0],
                              self.generator, shift)
        if carried:
            return carry_pairs(passed(z_pos), passed(z_neg))
        return repair(passed(z_pos), self.generator, shift)

    def pass_on(self, index: int, projected: Projected, batch: PairBatch, shift: int | None = None) -> PairBatch:
        """``next_layer_batch`` from layer ``index``'s projections of ``batch`` (and the bias they were computed
        with), without a graph (no gradient crosses to the next layer): Algorithm 2 forms the positives only."""
        layer, (projections, bias) = self.network.layers[index], projected
        with torch.no_grad():
            z_pos = layer.combine(projections, batch.pos_left, batch.pos_right, bias)
            carried = self.config.layers[index + 1].algorithm == 1
            z_neg = layer.combine(projections, batch.neg_left, batch.neg_right, bias) if carried else None
            return self.next_layer_batch(index, z_pos, z_neg, overwrite=True, shift=shift, spread=batch.spread)

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        """One batch: frozen layers run forward only; each active layer takes its own step."""
        indices = self.layer_indices(active)
        data = self.config.data
        x = augment(batch.x.to(self.device), self.generator, data.crop_pad, data.flip)
        pairs = data_pairs(x, self.generator, data.translate)
        if self.data_parallel is not None:
            pairs = own_pairs(pairs, self.data_parallel, x.shape[0])
        stats = {}
        for index in range(max(indices) + 1):
            if index in indices:
                projected, stats[f"layer{index + 1}"] = self.update(index, pairs)
            else:
                layer = self.network.layers[index]
                with torch.no_grad():
                    projections = every_projection(layer.project(pairs.views), pairs, self.data_parallel)
                    projected = Projected(projections, layer.bias.detach())
            if index < max(indices):
                pairs = self.pass_on(index, projected, pairs)
            del projected                     # the next layer's update must not keep this layer's projections alive
        return stats

    @classmethod
    def baselines(cls, config, dataset, input_dim, show_progress, log) -> dict:
        """The same network trained end to end by supervised back-propagation (``[bp]``, 0 epochs skips it)."""
        if not config.bp.epochs:
            return {}
        network = cls.build_network(config, input_dim)
        log(f"BP baseline: the same network trained end to end for {config.bp.epochs} epochs")
        seconds, history = train_supervised(network, dataset.train.x, dataset.train.y, dataset.num_classes,
                                            config.bp, config.probe.layers, config.probe.standardize, config.seed,
                                            show_progress)
        return {"bp": TrainedBaseline(network, seconds, history)}


class SCFFConvLearner(SCFFLearner):
    """Convolutional SCFF (Table D.1): the same schedule on ``PairedConv2d`` layers."""

    @classmethod
    def check_config(cls, config, where: str) -> None:
        _check_images(config, where)
        for i, layer in enumerate(config.layers):
            check(layer.conv.enabled, f"{where}.layers[{i}].conv.kernel must be >= 1 for scff-cnn")
        check(config.bp.epochs == 0 and config.bptt.epochs == 0,
              f"{where}.bp / bptt: scff-cnn has no end-to-end baseline yet")

    @staticmethod
    def network_input(dataset) -> tuple[int, ...]:
        return dataset.sample_shape

    @staticmethod
    def build_network(config, input_dim) -> torch.nn.Module:
        torch.manual_seed(config.seed)
        layers = config.layers
        return SCFFConvNetwork(input_dim, [c.width for c in layers], [c.conv for c in layers],
                               [c.algorithm for c in layers], [c.activation for c in layers], config.quant)


class Projected(NamedTuple):
    """A layer's projections ``W x`` of a batch's views (detached) and the bias it held when computing them."""

    projections: torch.Tensor
    bias: torch.Tensor


def fused_step(layer, batch: PairBatch, c, group: ParamGroup, data_parallel=None) -> tuple[Projected, dict[str, float]]:
    """One closed-form step of an SCFF layer (methods section 6): ``P = W x`` of every distinct view (one product),
    the pair kernel (``kernels/scff_pairs.py``: goodness, loss, ``R = dL/dP`` in one pass, no graph), the weight
    gradient ``R^T x`` (one product), one AdamW step. The gradients equal autograd's (``backend = "torch"``).
    Data parallel (``batch.spread``): this process projects its own views, the pairs read everyone's projections
    and the partners' rows of ``R`` go back to their owners (``distributed/scff_pairs.py``)."""
    mine, inputs = layer.fused_projection(batch.views, overwrite=batch.owned)
    projections = every_projection(mine, batch, data_parallel)
    out = scff_pair_gradient(projections.detach(), layer.bias, batch.pos_left, batch.pos_right, batch.neg_left,
                             batch.neg_right, c.theta_pos, c.theta_neg, c.penalty)
    bias, stats = layer.bias.detach().clone(), {"loss": out.loss, "goodness_pos": out.goodness_pos,
                                                "goodness_neg": out.goodness_neg}
    rows = own_gradient_rows(out.rows, batch, data_parallel)
    del out
    clear_gradients(group)
    layer.accumulate_gradients(mine, inputs, rows)
    del rows, inputs                      # R and the inputs are not needed by the step: free them first
    if batch.spread is None:
        step_and_clear(group)
    else:
        with data_parallel.unscaled():    # the rows carry each process's share already
            step_and_clear(group)
    return Projected(projections.detach(), bias), stats


def _bench_learner(widths: list[int], x: torch.Tensor, algorithm: int, translate: int):
    from ..config import DataConfig, LayerConfig

    layers = [LayerConfig(width=w, lr=1e-4, theta_pos=1.0, theta_neg=1.0, penalty=1e-4, activation="triangle",
                          algorithm=algorithm) for w in widths]
    config = SCFFConfig(name="bench", learner="scff-mlp", layers=layers, batch_size=x.shape[0],
                        schedule="simultaneous", data=DataConfig(translate=translate)).validate("bench")
    learner = SCFFLearner(config, x.shape[1], device=x.device)
    if translate:                  # translations need images
        x = x.view(x.shape[0], *image_shape(x.shape[1]))
    return learner, Batch(x)


def _bench_paper(widths: list[int], x: torch.Tensor):
    """SCFF as the paper pairs it: [x_k, x_k] and [x_k, x_n] share one projection per sample (B rows), Algorithm 2
    (re-paired positive outputs, B rows) at every deeper layer; every layer stepped on every batch."""
    return _bench_learner(widths, x, algorithm=2, translate=0)


def _bench_mnist_layout(widths: list[int], x: torch.Tensor):
    """SCFF as the mnist-paper preset runs it: two random 2-pixel translations per image (2B distinct views),
    Algorithm 1 (positive and negative outputs carried on, 2B rows) at every deeper layer; every layer stepped on
    every batch."""
    return _bench_learner(widths, x, algorithm=1, translate=2)


MLP_GRAPH = (f"per-sample standardisation of the input (mean 0, population std 1 over all values, eps {EPS}); "
             "each layer 2·(W·x + b) (tied-weight pair [x, x]), triangle/ReLU; linear read-out")

RULES = (
    Rule(name="scff-mlp", label="SCFF", learner=SCFFLearner, config=SCFFConfig,
         summary="Self-Contrastive Forward-Forward on a fully connected network (Chen et al.)",
         presets={None: "digits", "mnist": "mnist-paper"},
         in_graph=MLP_GRAPH,
         hls4ml=True, bench={"scff-mlp": _bench_paper, "scff-mlp-mnist": _bench_mnist_layout}),
    Rule(name="scff-cnn", label="SCFF", learner=SCFFConvLearner, config=SCFFConfig,
         summary="the same rule on a convolutional network (Table D.1)",
         presets={None: "digits-conv", "mnist": "mnist-conv", "cifar10": "cifar10-paper", "stl10": "stl10-paper"},
         in_graph=f"per layer: per-sample standardisation of the input maps (eps {EPS}), reflect padding, "
                  "convolution 2·(W*x + b) (tied-weight pair [x, x]), triangle/ReLU, pooling; read-out taps pooled "
                  "once more and flattened; linear read-out",
         hls4ml=True),
)
