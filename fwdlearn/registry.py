"""The rule registry: every learning rule the toolkit can train, found in ``fwdlearn/rules/``.

Each module under ``fwdlearn/rules/`` declares its rules as ``Rule`` values (``fwdlearn/rule.py``) in a
module-level ``RULES`` tuple; nothing else lists them. Everything that needs to know the rules reads this
registry: the command line (choices, help, default presets, options), ``fwdlearn presets``, device
and quantisation support, the export metadata (what the graph contains), the update-cost bench and
the report labels. Adding a rule is one file in ``fwdlearn/rules/`` (with its objective in
``fwdlearn/objectives/``) and one preset.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from .errors import ConfigError
from .rule import Rule


@cache
def _discover() -> dict[str, Rule]:
    from . import rules as package
    found: dict[str, Rule] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for rule in getattr(module, "RULES", ()):
            if rule.name in found:
                raise RuntimeError(f"rule {rule.name!r} is declared twice ({info.name})")
            found[rule.name] = rule
    return found


def rules() -> dict[str, Rule]:
    """Every registered rule by name, in a stable order."""
    return dict(_discover())


def rule_names() -> list[str]:
    return list(_discover())


def get_rule(name: str) -> Rule:
    """The rule called ``name``, or a one-line ``ConfigError`` listing the known ones."""
    found = _discover()
    if name not in found:
        raise ConfigError(f"unknown learner {name!r}; known: {', '.join(found)}")
    return found[name]


def config_class_for(values: dict[str, Any], where: str) -> type:
    """The config dataclass of the rule a preset or checkpoint names in its ``learner`` key."""
    name = values.get("learner")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: missing 'learner' (one of {', '.join(_discover())})")
    if name not in _discover():
        raise ConfigError(f"{where}.learner must be one of {', '.join(_discover())}, got {name!r}")
    return _discover()[name].config


def default_preset(name: str, dataset: str | None) -> str:
    """The preset ``fwdlearn train NAME [--dataset DATASET]`` runs when no ``--preset`` is given."""
    presets = get_rule(name).presets
    return presets.get(dataset, presets[None])


def report_label(name: str) -> str:
    """How results tables name a rule (``SCFF``, ``LAC``, ``FF``); the raw name if unknown."""
    found = _discover()
    return found[name].label if name in found else name
