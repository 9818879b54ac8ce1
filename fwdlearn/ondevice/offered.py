"""Which rules offer an on-device update: found, not listed by hand.

Every module of this package that implements a rule's update declares ``RULES`` (the rule names it serves)
and ``update_stages(learner, sample_shape, steps) -> [stage.UpdateStage]`` (one stage per parameter group;
``sample_shape``: one sample as the inference model takes it; ``steps``: the frames a recurrent graph is
unrolled for). The dependency runs from this package to the rules, never back.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache


@cache
def _discover() -> dict[str, Callable]:
    from .. import ondevice as package
    found: dict[str, Callable] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in ("runtime", "offered"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name in getattr(module, "RULES", ()):
            if name in found:
                raise RuntimeError(f"rule {name!r}'s on-device update is declared twice ({info.name})")
            found[name] = module.update_stages
    return found


def offered_rules() -> list[str]:
    return sorted(_discover())


def update_stages_for(rule_name: str) -> Callable | None:
    """``update_stages`` of ``rule_name``, or ``None`` if the rule offers no on-device update."""
    return _discover().get(rule_name)
