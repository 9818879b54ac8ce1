"""What one trainable stage's on-device update is: its inputs, its closed-form gradient, and the learner step it equals.

A rule offers on-device learning through a module of this package that declares it (``offered.py``): a function
``update_stages(learner, sample_shape, steps) -> list[UpdateStage]``, one stage per parameter group (an SCFF or FF layer, a recurrent direction).
A stage declares

- ``data_inputs``: the batch and the random draws the rule makes per batch (a negative pair's shift, a
  wrong label, a translation), each with a ``kind`` that tells ``runtime.UpdateRunner`` how to draw it with
  numpy (``KINDS``), so that the randomness stays on the device and the graph stays deterministic;
- ``frozen``: parameters of other stages the update reads (the layers below, run forward only);
- ``trained``: the stage's own parameters;
- ``gradients``: the loss and its gradient with respect to ``trained``, in closed form, with inference
  operators only (no autograd, so the graph exports as a forward computation);
- ``reference_step``: the learner's *own* update on the same inputs and draws (the verification runs both).

``UpdateGraph`` joins a stage and an optimiser (``optimizers.py``) into the module that is exported: inputs
``data..., frozen..., trained..., state..., step, lr`` and outputs ``new.<trained>..., new.<trained>.<state>...,
loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import optimizers
from .optimizers import OptimizerSpec

# How the runtime draws each kind of data input (documented in every graph's metadata).
KINDS = {
    "samples": "the batch itself (float32, the data set's sample shape, the data set's own scaling)",
    "lengths": "each sequence's number of real frames (int64, 1..T; frames past it are zero)",
    "labels": "each sample's class (int64)",
    "shift": "one negative-pair shift s, uniform in 1..B-1: sample k is paired with sample (k + s) mod B (int64)",
    "shifts": "distinct negative-pair shifts, uniform in 1..B-1 without replacement (int64)",
    "wrong_labels": "a class other than each sample's own, uniform among the others (int64)",
    "translations": "row and column offsets of two translated views per sample, uniform in 0..2t (int64 [2, 2, B]; "
                    "the shift is offset - t pixels, zeros shifted in)",
}


@dataclass(frozen=True)
class DataInput:
    """One per-batch input of an update graph. ``bound``: ``t`` of ``translations``, the class count of
    ``labels`` / ``wrong_labels``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str
    bound: int = 0

    def describe(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "kind": self.kind,
                "bound": self.bound, "meaning": KINDS[self.kind]}


def dense_parameter(index: int, what: str) -> str:
    """The ``state_dict`` key of layer ``index``'s ``weight`` or ``bias`` in a network of ``layers[i].linear``."""
    return f"layers.{index}.linear.{what}"


class UpdateStage(nn.Module):
    """One trainable stage's update (see the module docstring). Subclasses set ``name``, ``data_inputs``,
    ``frozen`` and ``trained`` (parameter names, graph order) and implement the methods below."""

    name: str
    data_inputs: list[DataInput]
    frozen: list[str]
    trained: list[str]
    hyper_parameters: dict

    def gradients(self, data: dict[str, torch.Tensor], frozen: dict[str, torch.Tensor],
                  params: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``(d loss / d params, loss)`` in closed form, inference operators only."""
        raise NotImplementedError

    def parameters_of(self, learner) -> dict[str, torch.Tensor]:
        """The learner's live tensors for ``frozen + trained``, by name (``state_dict`` keys)."""
        state = dict(learner.network.named_parameters())
        return {name: state[name] for name in self.frozen + self.trained}

    def group(self, learner):
        """The learner's ``ParamGroup`` this stage updates (the group named as the stage)."""
        return learner.groups[self.name]

    def reference_step(self, learner, data: dict[str, torch.Tensor]) -> None:
        """One step of the learner's own update of this stage on ``data`` (the same draws)."""
        raise NotImplementedError

    def data_inputs_described(self) -> list[dict]:
        return [d.describe() for d in self.data_inputs]

    def stored_parameters(self, learner) -> dict[str, torch.Tensor]:
        """The values the stage's ``trained`` parameters start from on the device (the learner's by default)."""
        live = self.parameters_of(learner)
        return {name: live[name] for name in self.trained}


class UpdateGraph(nn.Module):
    """``stage``'s gradient and one ``spec`` optimiser step, as one module with flat inputs and outputs."""

    def __init__(self, stage: UpdateStage, spec: OptimizerSpec):
        super().__init__()
        self.stage, self.spec = stage, spec

    @property
    def input_names(self) -> list[str]:
        s = self.stage
        return ([d.name for d in s.data_inputs] + list(s.frozen) + list(s.trained) + self.state_names
                + ["step", "lr"])

    @property
    def state_names(self) -> list[str]:
        return [f"{p}.{k}" for p in self.stage.trained for k in self.spec.state_names]

    @property
    def output_names(self) -> list[str]:
        return [f"new.{p}" for p in self.stage.trained] + [f"new.{n}" for n in self.state_names] + ["loss"]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.input_names, inputs))
        s = self.stage
        data = {d.name: named[d.name] for d in s.data_inputs}
        params = {p: named[p] for p in s.trained}
        grads, loss = s.gradients(data, {p: named[p] for p in s.frozen}, params)
        new_params, new_state = [], []
        for p in s.trained:
            state = [named[f"{p}.{k}"] for k in self.spec.state_names]
            value, state = optimizers.apply(self.spec, params[p], grads[p], state, named["step"], named["lr"])
            new_params.append(value)
            new_state.extend(state)
        return (*new_params, *new_state, loss)
