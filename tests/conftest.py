"""Shared fixtures and helpers: small configurations that train in well under a second, and the
locality checker every local rule is run through (``tests/test_locality.py``)."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the machine's cores, so each (and every process it starts) computes on one
    # thread rather than N threads fighting over each core
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_variable] = "1"

import dataclasses
from pathlib import Path
from dataclasses import dataclass, field
from functools import cache

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from fwdlearn.config import DataConfig, LayerConfig, ProbeConfig, SCFFConfig
from fwdlearn.learner import Batch


def small_config(schedule: str = "sequential", algorithm: int = 1, epochs: int = 2, translate: int = 0,
                 widths: tuple[int, ...] = (32, 24), dataset: str = "digits") -> SCFFConfig:
    """An ``scff-mlp`` configuration of small layers on the 8x8 digits."""
    layers = [LayerConfig(width=widths[0], lr=3e-3, theta_pos=4.0, theta_neg=6.0, penalty=1e-4,
                          weight_decay=1e-5, lr_decay=0.9, epochs=epochs)]
    layers += [LayerConfig(width=w, lr=2e-3, theta_pos=1.0, theta_neg=1.0, lr_decay=0.8, epochs=epochs,
                           algorithm=algorithm) for w in widths[1:]]
    return SCFFConfig(name="small", learner="scff-mlp", layers=layers, batch_size=16, schedule=schedule,
                      data=DataConfig(dataset=dataset, translate=translate),
                      probe=ProbeConfig(epochs=2)).validate()


# ----- one quick configuration for every registered rule, from its own embedded preset -------------------

TINY_WIDTH = 8      # units / channels of every layer
TINY_BATCH = 8      # samples per batch (every batch size in the config)
TINY_EPOCHS = 1     # at most this many epochs anywhere (0 stays 0: a skipped baseline stays skipped)
_WIDTH_FIELDS = ("width",)               # one layer's size
_WIDTH_LIST_FIELDS = ("hidden", "widths")  # a list of layer sizes


def shrink(value, width: int | None, batch: int | None, epochs: int | None, keep: tuple[str, ...] = ()) -> None:
    """Cap, in a config dataclass and the dataclasses it holds, generically: layer sizes at ``width``, batch sizes
    at ``batch``, epoch counts at ``epochs`` (``None``: as they are; 0 stays 0). Sections named in ``keep``
    (e.g. ``probe``) are left alone."""
    for f in dataclasses.fields(value):
        current = getattr(value, f.name)
        if f.name in keep or isinstance(current, bool):
            continue
        if dataclasses.is_dataclass(current):
            shrink(current, width, batch, epochs, keep)
        elif isinstance(current, list) and current and all(dataclasses.is_dataclass(v) for v in current):
            for item in current:
                shrink(item, width, batch, epochs, keep)
        elif width is not None and f.name in _WIDTH_FIELDS and isinstance(current, int):
            setattr(value, f.name, min(current, width))
        elif (width is not None and f.name in _WIDTH_LIST_FIELDS and isinstance(current, list)
              and all(isinstance(v, int) for v in current)):
            setattr(value, f.name, [min(v, width) for v in current])
        elif batch is not None and f.name == "batch_size" and isinstance(current, int):
            setattr(value, f.name, min(current, batch))
        elif epochs is not None and f.name == "epochs" and isinstance(current, int):
            setattr(value, f.name, min(current, epochs))


def tiny_config(name: str):
    """A quick configuration of rule ``name``: its embedded default preset (``rule.presets[None]``) with every
    layer at most ``TINY_WIDTH`` wide, batches of ``TINY_BATCH`` and at most one epoch. Data-driven: no branch
    on the rule's name, so a rule added later is covered by its own preset."""
    from fwdlearn.presets import check_for_rule, load_preset
    from fwdlearn.registry import get_rule

    config = load_preset(get_rule(name).presets[None])
    shrink(config, TINY_WIDTH, TINY_BATCH, TINY_EPOCHS)
    config.validate("tiny")
    return check_for_rule(config, "tiny")


@cache
def _dataset(name: str):
    from fwdlearn.data import load_dataset
    return load_dataset(name)


def tiny_learner(name: str, n: int = TINY_BATCH):
    """Rule ``name``'s learner on ``tiny_config(name)`` and one batch of ``n`` training samples of the
    preset's (embedded) data set, as the run path would hand them to the rule."""
    from fwdlearn.registry import get_rule

    rule = get_rule(name)
    config = tiny_config(name)
    dataset = _dataset(config.data.dataset)
    learner = rule.learner(config, rule.learner.network_input(dataset))
    x, lengths, y = rule.learner.train_inputs(dataset)
    if rule.learner.needs_labels and y is None:
        y = dataset.train.y
    batch = Batch(x[:n], None if lengths is None else lengths[:n], None if y is None else y[:n])
    return learner, batch


@pytest.fixture
def images() -> torch.Tensor:
    """A batch of 16 random 1x8x8 images in [0, 1]."""
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class GradientArrivals:
    """Counts the gradients computed for each of ``params`` while alive: a tensor hook fires when autograd
    computes a parameter's gradient (even if the learner releases ``.grad`` after its step); a gradient a
    closed-form (``fused``) update writes into ``.grad`` is counted when an optimiser steps with it."""

    def __init__(self, params):
        self.params = [p for p in params if p.requires_grad]
        self.counts = [0] * len(self.params)
        self.by_autograd = [False] * len(self.params)
        self.handles = [p.register_hook(self._counter(i)) for i, p in enumerate(self.params)]
        self.handles.append(register_optimizer_step_pre_hook(self._stepping))

    def _counter(self, i):
        def hook(grad):
            self.counts[i] += 1
            self.by_autograd[i] = True
        return hook

    def _stepping(self, optimizer, args, kwargs):
        for i, p in enumerate(self.params):
            if p.grad is not None and not self.by_autograd[i]:
                self.counts[i] += 1
            self.by_autograd[i] = False

    def none(self) -> bool:
        return len(self.params) > 0 and not any(self.counts)

    def all(self) -> bool:
        return len(self.params) > 0 and all(self.counts)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ----- the locality checker ------------------------------------------------------------------------------

def _accumulators(node, seen=None) -> set[int]:
    """``id`` of every leaf tensor (parameter) the autograd graph below ``node`` reaches."""
    found: set[int] = set()
    stack, seen = [node], set() if seen is None else seen
    while stack:
        current = stack.pop()
        if current is None or current in seen:
            continue
        seen.add(current)
        variable = getattr(current, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(child for child, _ in current.next_functions)
    return found


def mixed_terms(root, owner: dict[int, str]) -> list[set[str]]:
    """Split the objective whose graph starts at ``root`` into summands (``a + b``) until each reaches the
    parameters of one group only; returns, for every term that cannot be split and still reaches several
    groups, the groups it reaches (empty: every term of the sum is some single group's objective)."""
    groups = {owner[i] for i in _accumulators(root) if i in owner}
    if len(groups) <= 1:
        return []
    if root.name() != "AddBackward0":
        return [groups]
    return [bad for child, _ in root.next_functions for bad in mixed_terms(child, owner)]


@dataclass
class BackwardPass:
    """One call of ``torch.autograd.backward`` / ``grad`` during an update: the graphs it started from,
    the parameters it computed a gradient for (``params``, indices) and the events' positions."""

    roots: list
    params: list[int] = field(default_factory=list)
    start: int = 0
    end: int = 0


@dataclass
class UpdateTrace:
    params: list[torch.nn.Parameter]
    owner: list[str]                      # group of each parameter
    arrivals: list[int]                   # gradients computed for each parameter
    passes: list[BackwardPass]
    steps: list[tuple[int, str]]          # (event position, group) of every optimiser step
    stray: list[int]                      # parameters whose gradient arrived outside any backward call

    def groups_of(self, backward: BackwardPass) -> set[str]:
        return {self.owner[i] for i in backward.params}


def use_reference_backend(learner) -> None:
    """Switch ``learner`` to the autograd backend (``backend = "torch"``) if its rule has a choice."""
    if getattr(learner.config, "backend", "torch") != "torch":
        learner.config = dataclasses.replace(learner.config, backend="torch")


def trace_update(learner, batch: Batch, active: list[str] | None = None) -> UpdateTrace:
    """Run ``learner.train_batch(batch, active)`` (default: every group) and record, with a tensor hook on
    every trainable parameter, every gradient autograd computes, which backward call computed it, and every
    optimiser step of every group.

    The trace reads autograd's graph, so a rule with a ``fused`` backend (closed-form gradients, no graph) is
    traced on its reference backend ``torch``; ``tests/test_fused_updates.py`` checks that both give the same
    gradients and that a fused step writes its own layer's gradients only."""
    use_reference_backend(learner)
    owner_of = {id(p): name for name, group in learner.groups.items() for p in group.parameters}
    params = [p for p in learner.network.parameters() if p.requires_grad]
    trace = UpdateTrace(params, [owner_of.get(id(p), "<no group>") for p in params], [0] * len(params), [], [], [])
    clock = [0]
    current: list[BackwardPass] = []

    def tick() -> int:
        clock[0] += 1
        return clock[0]

    def arrived(i):
        def hook(grad):
            trace.arrivals[i] += 1
            (current[-1].params if current else trace.stray).append(i)
        return hook

    def stepped(name):
        def hook(optimizer, args, kwargs):
            trace.steps.append((tick(), name))
        return hook

    def spy(real, first_argument):
        def call(*args, **kwargs):
            roots = args[0] if args else kwargs[first_argument]
            roots = [roots] if isinstance(roots, torch.Tensor) else list(roots)
            backward = BackwardPass([r.grad_fn for r in roots], start=tick())
            current.append(backward)
            try:
                return real(*args, **kwargs)
            finally:
                current.pop()
                backward.end = tick()
                trace.passes.append(backward)
        return call

    handles = [p.register_hook(arrived(i)) for i, p in enumerate(params)]
    handles += [group.optimizer.register_step_pre_hook(stepped(name)) for name, group in learner.groups.items()]
    real_backward, real_grad = torch.autograd.backward, torch.autograd.grad
    torch.autograd.backward = spy(real_backward, "tensors")
    torch.autograd.grad = spy(real_grad, "outputs")
    try:
        learner.train_batch(batch, list(learner.groups) if active is None else active)
    finally:
        torch.autograd.backward, torch.autograd.grad = real_backward, real_grad
        for handle in handles:
            handle.remove()
    return trace


def assert_local_update(learner, batch: Batch) -> UpdateTrace:
    """The locality contract of one update of every group on one batch:

    - the groups' optimisers hold disjoint parameters that together are the network's trainable ones;
    - every parameter receives its gradient exactly once, inside a backward call, and its group steps once;
    - a backward call that reaches one group's parameters only is that group's objective (the group steps
      after it); one that reaches several (e.g. one backward of a sum of the groups' losses) must be a sum of
      terms each of which reaches a single group's parameters: no objective reaches two groups.
    """
    owned = {name: [id(p) for p in group.parameters] for name, group in learner.groups.items()}
    assert len(owned) >= 2, "locality is a property between parameter groups; the tiny config has one"
    for name, ids in owned.items():
        assert ids and len(ids) == len(set(ids)), f"group {name} holds no parameter or one twice"
        for other, other_ids in owned.items():
            assert other == name or not set(ids) & set(other_ids), f"groups {name} and {other} share a parameter"
    trainable = {id(p) for p in learner.network.parameters() if p.requires_grad}
    assert set().union(*map(set, owned.values())) == trainable, "the groups do not cover the network"

    trace = trace_update(learner, batch)
    assert not trace.stray, "gradients computed outside any backward call"
    late = [(trace.owner[i], tuple(p.shape)) for i, p in enumerate(trace.params) if trace.arrivals[i] != 1]
    assert not late, f"parameters without exactly one gradient in the batch: {late}"
    assert sorted(name for _, name in trace.steps) == sorted(learner.groups), f"steps: {trace.steps}"
    owner = {id(p): trace.owner[i] for i, p in enumerate(trace.params)}
    for backward in trace.passes:
        reached = trace.groups_of(backward)
        if len(reached) == 1:
            (name,) = reached
            assert any(at > backward.end and who == name for at, who in trace.steps), \
                f"a backward reaching only {name} is not followed by {name}'s step"
        elif len(reached) > 1:
            mixed = [bad for root in backward.roots for bad in mixed_terms(root, owner)]
            assert not mixed, f"one objective reaches the parameters of several groups: {mixed}"
    return trace


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _toml_lines(values: dict, prefix: str) -> list[str]:
    plain = [f"{k} = {_toml_value(v)}" for k, v in values.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))]
    lines = plain
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", *_toml_lines(value, name + ".")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines += ["", f"[[{name}]]", *_toml_lines(item, name + ".")]
    return lines


def write_preset(config, path: Path) -> Path:
    """``config`` (a rule's config dataclass) as a preset TOML file that ``load_preset(path)`` reads back."""
    path.write_text("\n".join(_toml_lines(config.to_dict(), "")) + "\n")
    return path


def applied_gradients(learner, stage, data) -> dict[str, torch.Tensor]:
    """The gradients a learner's own update of an on-device ``stage`` hands its optimiser (captured just before
    its step): what the stage's closed-form gradient must equal."""
    group = stage.group(learner)
    captured = {}
    names = {id(p): n for n, p in stage.parameters_of(learner).items()}

    def record(optimizer, args, kwargs):
        captured.update({names[id(p)]: p.grad.detach().clone() for p in group.parameters})

    handle = group.optimizer.register_step_pre_hook(record)
    try:
        stage.reference_step(learner, data)
    finally:
        handle.remove()
    assert set(captured) == set(stage.trained)
    return captured


def exported_inference_only(graph, values: dict, path):
    """``graph`` (an ``ondevice.stage.UpdateGraph``) exported as the exporter does (TorchScript, opset 18) with
    inputs ``values``, checked here, independently of the exporter's own check, to hold default-domain inference
    operators only; returns the ONNX model."""
    import onnx
    torch.onnx.export(graph, tuple(values[n] for n in graph.input_names), str(path), dynamo=False, opset_version=18,
                      input_names=graph.input_names, output_names=graph.output_names)
    model = onnx.load(str(path))
    ops = {(node.domain, node.op_type) for node in model.graph.node}
    assert not [op for op in ops if op[0] not in ("", "ai.onnx") or "grad" in op[1].lower()
                or op[1] in ("Gradient", "Momentum", "Adagrad", "Adam")], ops
    return model
