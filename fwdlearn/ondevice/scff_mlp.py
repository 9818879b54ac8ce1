"""SCFF's MLP update (``scff-mlp``) as an inference graph: one stage per layer (methods section 6, SCFF Eqs. 1, 3, 4).

Stage ``layer<l>`` takes a batch and the draws the learner makes for it (the first layer's negative-pair
shift, each Algorithm-2 layer's re-pairing shift up to ``l``, the two views' translations when the run
translates), runs the layers below forward exactly as ``SCFFLearner.train_batch`` does (standardised input,
tied-weight pairs, the passed-on activation; Algorithm 1 carries positive and negative outputs on,
Algorithm 2 re-pairs the positive outputs), then layer ``l``'s closed-form gradient:

    P = std(x) W^T (one row per distinct view);  z_pos = P_k + P_k' + 2b, z_neg = P_k + P_(k+s)' + 2b  (paired)
    G = mean_j relu(z_j)^2 (Eq. 1);  L = mean softplus(theta_pos - G_pos) + mean softplus(G_neg - theta_neg)
        + lambda mean G_pos (Eqs. 3-4; the norm of a one-element goodness map is the goodness)
    dL/dz = 2 dL/dG relu(z) / H;  R[m] = sum over the examples that use view m of dL/dz;  dW = R^T std(x),
    db = sum_m R[m]

A weight-quantised layer (``weight_bits``) computes ``P`` with Brevitas' quantised weight and steps its float
weight with the straight-through gradient (``quantised.py``), as quantisation-aware training does.

Every row gather that forms a pair is a ``Gather`` with indices computed in the graph from the shift, and the
sum over the examples that use a view is a gather of the inverse shift (a shift is a permutation), so the
graph holds no scatter and no gradient operator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.transforms import EPS, image_shape, standardize, translate
from ..errors import ExportError
from ..nn.activations import ACTIVATIONS
from ..nn.scff_network import is_paired
from ..objectives.scff import PairBatch, shifted_pairs
from ..rules.scff import Projected, SCFFLearner
from .quantised import float_gradient, quantised
from .stage import DataInput, UpdateStage, dense_parameter

LEARNERS = (SCFFLearner,)


class SCFFLayerUpdate(UpdateStage):
    """Layer ``index`` of an ``SCFFNetwork`` (float), the layers below run forward."""

    def __init__(self, learner, index: int, sample_shape: tuple[int, ...]):
        super().__init__()
        config = learner.config
        quant = config.quant
        if quant.act_bits:
            raise ExportError("the on-device update of scff-mlp with quantised activations (act_bits) is not "
                              "available yet: weight quantisation (weight_bits) and float runs are")
        self.weight_bits, self.per_channel = quant.weight_bits, quant.per_channel
        self.lockstep = bool(self.weight_bits)      # verified step by step (export._verify)
        self.index, self.name = index, f"layer{index + 1}"
        self.batch, self.translate = config.batch_size, config.data.translate
        self.algorithms = [c.algorithm for c in config.layers[:index + 1]]
        self.activations = [c.activation for c in config.layers[:index + 1]]
        c = config.layers[index]
        self.theta_pos, self.theta_neg, self.penalty = c.theta_pos, c.theta_neg, c.penalty
        self.hyper_parameters = {"theta_pos": c.theta_pos, "theta_neg": c.theta_neg, "penalty": c.penalty,
                                 "standardisation_eps": EPS, "activations_passed_on": self.activations[:index],
                                 "algorithms": self.algorithms, "weight_bits": self.weight_bits,
                                 "per_channel": self.per_channel}
        self.sample_shape = tuple(sample_shape)
        inputs = [DataInput("samples", (self.batch, *self.sample_shape), "float32", "samples")]
        if self.translate:
            inputs.append(DataInput("translations", (2, 2, self.batch), "int64", "translations", self.translate))
        inputs += [DataInput(f"shift{i + 1}", (), "int64", "shift") for i in range(index + 1)
                   if is_paired(i, self.algorithms[i])]
        self.data_inputs = inputs
        self.frozen = [dense_parameter(i, w) for i in range(index) for w in ("weight", "bias")]
        self.trained = [dense_parameter(index, "weight"), dense_parameter(index, "bias")]

    # ----- the graph ------------------------------------------------------------------------------
    def _first_views(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's distinct views and, per sample, the row of its pair's second half."""
        x = data["samples"]
        k = torch.arange(self.batch)
        if not self.translate:
            return x.flatten(1), k
        images = x.reshape(self.batch, *_image_shape(self.sample_shape))
        offsets = data["translations"]
        views = torch.cat([translate(images, offsets[0], self.translate),
                           translate(images, offsets[1], self.translate)])
        return views.flatten(1), k + self.batch

    def gradients(self, data, frozen, params):
        views, second = self._first_views(data)
        paired = True
        for i in range(self.index + 1):
            source = params if i == self.index else frozen
            weight, bias = source[dense_parameter(i, "weight")], source[dense_parameter(i, "bias")]
            inputs = standardize(views, EPS)
            if self.weight_bits:
                float_weight, weight = weight, quantised(weight, self.weight_bits, self.per_channel)
            projections = inputs @ weight.t()
            k = torch.arange(self.batch)
            if paired:
                partner = torch.gather(second, 0, torch.remainder(k + data[f"shift{i + 1}"], self.batch))
                z_pos = projections[k] + projections[second] + 2.0 * bias
                z_neg = projections[k] + projections[partner] + 2.0 * bias
            else:
                z_pos, z_neg = projections[k] + bias, projections[k + self.batch] + bias
            if i == self.index:
                grads, loss = self._closed_form(inputs, z_pos, z_neg, paired, second, data.get(f"shift{i + 1}"))
                if self.weight_bits:
                    name = self.trained[0]
                    grads[name] = float_gradient(float_weight, grads[name], self.weight_bits, self.per_channel)
                return grads, loss
            passed = ACTIVATIONS[self.activations[i]]
            if self.algorithms[i + 1] == 1:
                views, paired = torch.cat([passed(z_pos), passed(z_neg)]), False
            else:
                views, second, paired = passed(z_pos), k, True
        raise AssertionError("unreachable")

    def _closed_form(self, inputs, z_pos, z_neg, paired, second, shift):
        width = z_pos.shape[1]
        a_pos, a_neg = torch.relu(z_pos), torch.relu(z_neg)
        g_pos, g_neg = (a_pos * a_pos).mean(1), (a_neg * a_neg).mean(1)
        loss = F.softplus(self.theta_pos - g_pos).mean() + F.softplus(g_neg - self.theta_neg).mean()
        slope_pos = -torch.sigmoid(self.theta_pos - g_pos)
        if self.penalty:
            loss = loss + self.penalty * g_pos.mean()
            slope_pos = slope_pos + self.penalty * (g_pos > 0).to(g_pos.dtype)
        slope_neg = torch.sigmoid(g_neg - self.theta_neg)
        d_pos = (slope_pos * (2.0 / (width * self.batch)))[:, None] * a_pos
        d_neg = (slope_neg * (2.0 / (width * self.batch)))[:, None] * a_neg
        if not paired:
            rows = torch.cat([d_pos, d_neg])
        else:
            k = torch.arange(self.batch)
            back = torch.remainder(k - shift, self.batch)      # the example whose partner is sample k's second view
            from_partners = d_pos + torch.gather(d_neg, 0, back[:, None].expand(-1, width))
            if inputs.shape[0] == self.batch:                  # both halves are the sample's own view
                rows = d_pos + d_neg + from_partners
            else:                                               # first views, then second views
                rows = torch.cat([d_pos + d_neg, from_partners])
        grads = {self.trained[0]: rows.t() @ inputs, self.trained[1]: rows.sum(0)}
        return grads, loss

    # ----- the learner's side -----------------------------------------------------------------------
    def reference_step(self, learner, data):
        """``SCFFLearner.train_batch`` for this layer alone, with the given draws."""
        views, second = self._first_views(data)
        views = views.reshape(-1, *self.sample_shape)
        pairs: PairBatch = shifted_pairs(views, second, int(data["shift1"]))
        for i in range(self.index):
            layer = learner.network.layers[i]
            with torch.no_grad():
                projected = Projected(layer.project(pairs.views), layer.bias.detach())
            shift = data.get(f"shift{i + 2}")
            pairs = learner.pass_on(i, projected, pairs, None if shift is None else int(shift))
        learner.update(self.index, pairs)


def _image_shape(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A translated sample as ``[C, H, W]`` (``SCFFLearner`` translates images; a flat input is seen as one)."""
    return tuple(sample_shape) if len(sample_shape) == 3 else image_shape(math.prod(sample_shape))


def update_stages(learner, sample_shape: tuple[int, ...], steps: int | None = None) -> list[UpdateStage]:
    """One stage per layer; ``sample_shape``: one sample as the exported inference model takes it."""
    return [SCFFLayerUpdate(learner, i, sample_shape) for i in range(len(learner.config.layers))]
