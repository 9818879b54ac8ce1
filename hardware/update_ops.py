"""Multiply-accumulates of one training update, counted from the operations it really runs.

``count_update_macs(update, parameters)`` calls ``update()`` once under a dispatch mode that sees
every ATen matrix product and convolution, computes its MACs from the operand shapes, and sorts
them by role:

- ``forward``: run outside autograd's backward pass (both SCFF passes, both LAC passes, BP's
  forward);
- ``weight_gradient``: run by the backward pass without reading a parameter
  (``grad_out^T x`` for a dense layer), or, outside it, a product that reads no parameter and yields a
  tensor of a parameter's shape (a closed-form update's ``R^T x``, methods section 6): what every rule
  needs to change its weights;
- ``input_gradient``: run by the backward pass and reading a parameter (``grad_out W``): the
  products that carry an error down to the layer below. Back-propagation needs them for every
  layer above the first; a local rule needs none, and a count of 0 here is a check of locality.

A convolution's backward computes both gradients in one call; its MACs are split by the call's
output mask. Parameters are recognised by their storage, so this classifies float layers; a
quantised layer computes with a derived weight and its input gradients would count as weight
gradients (the benchmark measures float networks).
"""

from __future__ import annotations

from collections import Counter
from math import prod
from typing import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
ROLES = ("forward", "weight_gradient", "input_gradient")


def _matmul_macs(func, args) -> int:
    """MACs of a dense product from its operand shapes (0 for anything else)."""
    if func in (aten.mm.default, aten.addmm.default):
        a, b = (args[0], args[1]) if func is aten.mm.default else (args[1], args[2])
        return a.shape[0] * a.shape[1] * b.shape[1]
    if func in (aten.bmm.default, aten.baddbmm.default):
        a, b = (args[0], args[1]) if func is aten.bmm.default else (args[1], args[2])
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return 0


def _conv_macs(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, transposed: bool) -> int:
    """Forward MACs of a convolution: per output element (or, transposed, per input element) one
    MAC per weight of its kernel slice."""
    kernel = prod(weight.shape[2:])
    return x.numel() * weight.shape[1] * kernel if transposed else out.numel() * weight.shape[1] * kernel


class UpdateMACCounter(TorchDispatchMode):
    """Counts MACs by role (``ROLES``) while active; ``parameters`` tell input gradients apart."""

    def __init__(self, parameters: Iterable[torch.Tensor]):
        super().__init__()
        parameters = list(parameters)
        self.parameter_storages = {p.untyped_storage().data_ptr() for p in parameters}
        self.parameter_shapes = {tuple(p.shape) for p in parameters if p.dim() == 2}
        self.macs: Counter[str] = Counter()

    def _reads_parameter(self, args) -> bool:
        return any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() in self.parameter_storages
                   for a in args)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        backward = torch._C._current_graph_task_id() != -1
        if func is aten.convolution_backward.default:
            grad_out, x, weight, transposed, mask = args[0], args[1], args[2], args[7], args[10]
            forward_macs = _conv_macs(x, weight, grad_out, transposed)
            self.macs["input_gradient"] += forward_macs * bool(mask[0])
            self.macs["weight_gradient"] += forward_macs * bool(mask[1])
            return out
        if func is aten.convolution.default:
            macs = _conv_macs(args[0], args[1], out, args[6])
        else:
            macs = _matmul_macs(func, args)
        if macs:
            self.macs[self._role(backward, args, out)] += macs
        return out

    def _role(self, backward: bool, args, out) -> str:
        if backward:
            return "input_gradient" if self._reads_parameter(args) else "weight_gradient"
        closed_form = not self._reads_parameter(args) and tuple(out.shape) in self.parameter_shapes
        return "weight_gradient" if closed_form else "forward"


def count_update_macs(update: Callable[[], object], parameters: Iterable[torch.Tensor]) -> dict[str, int]:
    """Run ``update()`` once and return its MACs by role plus ``total``."""
    with UpdateMACCounter(parameters) as counter:
        update()
    counts = {role: int(counter.macs[role]) for role in ROLES}
    return {**counts, "total": sum(counts.values())}
