"""Which rules offer an on-device update: found, not listed by hand.

Every module of this package that implements a rule's update declares ``LEARNERS`` (the learner classes it
serves, matched exactly: a subclass such as the convolutional SCFF learner is another rule) and
``update_stages(learner, sample_shape, steps) -> [stage.UpdateStage]`` (one stage per parameter group;
``sample_shape``: one sample as the inference model takes it; ``steps``: the frames a recurrent graph is
unrolled for). The dependency runs from this package to the rules, never back.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Callable

from ..registry import rules


@cache
def _discover() -> dict[type, Callable]:
    from .. import ondevice as package
    found: dict[type, Callable] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in ("runtime", "offered"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for learner in getattr(module, "LEARNERS", ()):
            if learner in found:
                raise RuntimeError(f"{learner.__name__}'s on-device update is declared twice ({info.name})")
            found[learner] = module.update_stages
    return found


def offered_rules() -> list[str]:
    return sorted(name for name, rule in rules().items() if rule.learner in _discover())


def update_stages_for(rule_name: str) -> Callable | None:
    """``update_stages`` of the rule ``rule_name``, or ``None`` if it offers no on-device update."""
    rule = rules().get(rule_name)
    return None if rule is None else _discover().get(rule.learner)
