"""Forward-Forward's update (``ff``) as an inference graph: one stage per layer (Hinton 2022, sections 2, 2.1, 3.3;
methods sections 5-6 with Hinton's goodness, the sum of squares).

Stage ``layer<l>`` takes a batch, its labels and the wrong label the learner draws for each sample, writes the
one-hot label (times ``label_value``) into the first ``C`` inputs of every sample (positives: its own label,
negatives: the wrong one; the one-hot is a comparison of the label with ``0..C-1``, so the labels stay graph
inputs), runs the ``2B`` rows through the layers below forward exactly as ``FFLearner.train_batch`` does (each
layer's input, flattened, scaled to length ``sqrt(in)`` where the layer normalises, then ``relu(W x + b)``), and
then layer ``l``'s closed-form gradient:

    X = prepare(h) [2B, D];  a = relu(X W^T + b);  G = sum_j a_j^2
    L = mean softplus(theta - G_pos) + mean softplus(G_neg - theta)
    R = dL/d(X W^T) = 2 dL/dG a, dL/dG_pos = -sigmoid(theta - G_pos) / B, dL/dG_neg = sigmoid(G_neg - theta) / B
    dW = R^T X,  db = sum_m R[m]

No gather, no scatter, no gradient operator: products, element-wise operations and reductions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ExportError
from ..learner import Batch
from ..objectives.ff import length_normalize
from ..rules.ff import FFLearner
from .stage import DataInput, UpdateStage, dense_parameter

NORM_EPS = 1e-8  # objectives.ff.length_normalize's default


class FFLayerUpdate(UpdateStage):
    """Layer ``index`` of an ``FFNetwork`` (float), the layers below run forward."""

    def __init__(self, learner, index: int, sample_shape: tuple[int, ...]):
        super().__init__()
        config = learner.config
        if config.quant.enabled:
            raise ExportError("the on-device update of a quantised ff run is not available: export a float run")
        self.index, self.name = index, f"layer{index + 1}"
        self.batch, self.num_classes, self.label_value = config.batch_size, config.num_classes, config.label_value
        self.normalize = [bool(layer.normalize_input) for layer in learner.network.layers[:index + 1]]
        self.theta = float(config.layers[index].theta)
        self.hyper_parameters = {"theta": self.theta, "goodness": "sum of squares", "num_classes": self.num_classes,
                                 "label_value": self.label_value, "normalized_inputs": self.normalize,
                                 "normalisation_eps": NORM_EPS}
        self.sample_shape = tuple(int(d) for d in sample_shape)
        features = 1
        for d in self.sample_shape:
            features *= d
        if features <= self.num_classes:
            raise ExportError(f"ff writes the label into the first {self.num_classes} inputs; samples of shape "
                              f"{list(self.sample_shape)} have only {features}")
        self.data_inputs = [
            DataInput("samples", (self.batch, *self.sample_shape), "float32", "samples"),
            DataInput("labels", (self.batch,), "int64", "labels", self.num_classes),
            DataInput("wrong_labels", (self.batch,), "int64", "wrong_labels", self.num_classes),
        ]
        self.frozen = [dense_parameter(i, w) for i in range(index) for w in ("weight", "bias")]
        self.trained = [dense_parameter(index, "weight"), dense_parameter(index, "bias")]

    # ----- the graph ------------------------------------------------------------------------------
    def _overlay(self, flat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``objectives.ff.overlay_label`` out of place: the one-hot of ``labels`` replaces inputs ``0..C-1``."""
        classes = torch.arange(self.num_classes, device=labels.device)
        one_hot = (labels.unsqueeze(1) == classes.unsqueeze(0)).to(flat.dtype) * self.label_value
        return torch.cat([one_hot, flat[:, self.num_classes:]], dim=1)

    def _prepare(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """``FFLinear.prepare`` of layer ``i``."""
        return length_normalize(h, NORM_EPS) * h.shape[1] ** 0.5 if self.normalize[i] else h

    def gradients(self, data, frozen, params):
        flat = data["samples"].reshape(self.batch, -1)
        h = torch.cat([self._overlay(flat, data["labels"]), self._overlay(flat, data["wrong_labels"])])
        for i in range(self.index):
            weight, bias = frozen[dense_parameter(i, "weight")], frozen[dense_parameter(i, "bias")]
            h = torch.relu(self._prepare(i, h) @ weight.t() + bias)
        weight, bias = params[self.trained[0]], params[self.trained[1]]
        inputs = self._prepare(self.index, h)
        activity = torch.relu(inputs @ weight.t() + bias)
        goodness = (activity * activity).sum(1)
        g_pos, g_neg = goodness[:self.batch], goodness[self.batch:]
        loss = F.softplus(self.theta - g_pos).mean() + F.softplus(g_neg - self.theta).mean()
        slope = torch.cat([-torch.sigmoid(self.theta - g_pos), torch.sigmoid(g_neg - self.theta)])
        rows = (slope * (2.0 / self.batch)).unsqueeze(1) * activity
        return {self.trained[0]: rows.t() @ inputs, self.trained[1]: rows.sum(0)}, loss

    # ----- the learner's side -----------------------------------------------------------------------
    def reference_step(self, learner, data):
        """``FFLearner.train_batch`` for this layer alone, with the given wrong labels."""
        batch = Batch(data["samples"], y=data["labels"].long())
        learner.train_batch(batch, [self.name], wrong=data["wrong_labels"])


LEARNERS = (FFLearner,)


def update_stages(learner, sample_shape: tuple[int, ...] | None = None, steps: int | None = None) -> list[UpdateStage]:
    """One stage per layer; ``sample_shape``: one sample as the exported inference model takes it (by default the
    learner's flat input). ``steps`` is not used (FF's draws do not depend on the step)."""
    shape = tuple(sample_shape) if sample_shape is not None else (int(learner.input_dim),)
    return [FFLayerUpdate(learner, i, shape) for i in range(len(learner.config.layers))]
