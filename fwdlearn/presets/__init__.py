"""Shipped presets (TOML): the papers' configurations as data, loaded into each rule's config.

``load_preset("digits")`` reads a shipped preset, ``load_preset("my.toml")`` a file; the ``learner``
key names the rule (``fwdlearn.registry``), whose config dataclass the values load into. Every value
is checked: one that is wrong raises a one-line ``ConfigError`` naming the preset and the field.
"""

from __future__ import annotations

from typing import Any

from ..config import from_dict
from ..errors import check
from ..preset_files import preset_names, read_preset
from ..registry import config_class_for, get_rule, rules

__all__ = ["check_for_rule", "config_from_dict", "load_preset", "preset_names"]   # preset_names: from preset_files


def load_preset(name_or_path: str):
    """Load a shipped preset by name (``digits``, ``mnist-paper``) or a TOML file by path."""
    values, where = read_preset(name_or_path)
    return config_from_dict(values, where)


def config_from_dict(values: dict[str, Any], where: str = "config"):
    """A validated config of the rule ``values["learner"]`` names (from a preset or a ``to_dict()``)."""
    config = from_dict(config_class_for(values, where), values, where).validate(where)
    return check_for_rule(config, where)


def check_for_rule(config, where: str = "config"):
    """The checks that depend on the rule: its capabilities (registry) and its own ``check_config``."""
    rule = get_rule(config.learner)
    check(rule.quantisable or not config.quant.enabled,
          f"{where}.quant: {rule.name} has no quantised layers yet (quantisable: "
          f"{', '.join(name for name, r in rules().items() if r.quantisable)})")
    rule.learner.check_config(config, where)
    return config
