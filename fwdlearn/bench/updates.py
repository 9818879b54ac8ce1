"""One training update of the same fully connected encoder under each rule, ready to be measured.

Every rule trains hidden layers of the given widths on ``input_dim`` inputs (MNIST-sized by
default) with one batch held fixed. The local rules come from the registry: each rule that can be
benched declares how to build its update (``Rule.bench`` in its own file: SCFF trains every layer on
every batch on the detached output of the layer below; LAC runs its two passes and steps both
groups; ...). The reference is ``bp``: the same hidden layers (Linear-ReLU) with a linear 10-class
head, trained end to end by back-propagation of the cross-entropy (Adam).

``Update.step()`` is one update; ``Update.parameters`` are the trained tensors;
``Update.resident()`` lists what persists between updates (parameters, optimiser state, the batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import rules
from .memory import optimizer_tensors

NUM_CLASSES = 10
BP_DOC = "end-to-end back-propagation with a 10-class head"


@dataclass
class Update:
    step: Callable[[], object]
    parameters: list[torch.Tensor]
    resident: Callable[[], list[torch.Tensor]]


def learner_resident(learner, inputs: list[torch.Tensor]) -> tuple[list[torch.Tensor], Callable[[], list[torch.Tensor]]]:
    """A learner's trained tensors (its network's and every group's, heads included), and what persists between
    its updates (those, buffers, optimiser state, the learner's own state such as an EMA target, the batch)."""
    params = list({id(p): p for p in [*learner.network.parameters(),
                                      *(p for group in learner.groups.values() for p in group.parameters)]}.values())
    buffers = list(learner.network.buffers()) + learner.state_tensors()
    optimizers = [group.optimizer for group in learner.groups.values()]
    return params, lambda: params + buffers + optimizer_tensors(optimizers) + list(inputs)


def _bp(widths: list[int], x: torch.Tensor) -> Update:
    dims = [x.shape[1], *widths]
    blocks: list[nn.Module] = []
    for i in range(len(widths)):
        blocks += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
    network = nn.Sequential(*blocks, nn.Linear(dims[-1], NUM_CLASSES)).to(x.device)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    labels = torch.randint(0, NUM_CLASSES, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(x.device)

    def step() -> None:
        # gradients exist only during the update, as in every learner's step (``learner.take_step``): left
        # allocated between updates they would be neither resident nor counted (the profiler sees only their free)
        F.cross_entropy(network(x), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    params = list(network.parameters())
    return Update(step, params, lambda: params + optimizer_tensors([optimizer]) + [x, labels])


def _rule_update(bench) -> Callable[[list[int], torch.Tensor], Update]:
    """One update of a registered rule: its learner's ``train_batch`` on every group, on a fixed batch."""
    def build(widths: list[int], x: torch.Tensor) -> Update:
        learner, batch = bench(widths, x)
        active = list(learner.groups)
        inputs = [t for t in (batch.x, batch.lengths, batch.y) if t is not None]
        return Update(lambda: learner.train_batch(batch, active), *learner_resident(learner, inputs))
    return build


def builders() -> dict[str, Callable[[list[int], torch.Tensor], Update]]:
    """Every benchable rule (and variant) of the registry, then the back-propagation reference ``bp``."""
    return {**{name: _rule_update(bench) for rule in rules().values() for name, bench in rule.benches.items()},
            "bp": _bp}


def bench_rules() -> dict[str, str]:
    """Bench name -> what its update is, for ``fwdlearn bench --help`` and the cost table: the builder's docstring
    where it has one (e.g. which pairs and algorithm an SCFF row is), else the rule's summary."""
    def describe(rule, name, builder) -> str:
        what = rule.summary if name == rule.name or builder.__doc__ else f"{rule.summary}: {name}"
        return f"{what}. Measured: {' '.join(builder.__doc__.split())}" if builder.__doc__ else what
    return {**{name: describe(rule, name, builder) for rule in rules().values()
               for name, builder in rule.benches.items()}, "bp": BP_DOC}


RULES = tuple(bench_rules())


def build_update(rule: str, widths: list[int], batch: int, input_dim: int = 784,
                 device: str | torch.device = "cpu", seed: int = 0) -> Update:
    """One update of ``rule`` on hidden layers ``widths`` with a fixed random batch in [0, 1]."""
    found = builders()
    if rule not in found:
        raise ConfigError(f"rule must be one of {', '.join(found)}, got {rule!r}")
    if not widths or min(widths) < 1:
        raise ConfigError(f"hidden widths must be positive and at least one, got {widths}")
    if batch < 2 or input_dim < 1:
        raise ConfigError(f"batch must be >= 2 and input_dim >= 1, got batch {batch}, input_dim {input_dim}")
    torch.manual_seed(seed)
    x = torch.rand(batch, input_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return found[rule](list(widths), x)
