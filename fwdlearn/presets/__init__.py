"""Shipped presets (TOML): the papers' configurations as data, loaded into each rule's config.

``load_preset("digits")`` reads a shipped preset, ``load_preset("my.toml")`` a file; the ``learner``
key names the rule (``fwdlearn.registry``), whose config dataclass the values load into. Every value
is checked: one that is wrong raises a one-line ``ConfigError`` naming the preset and the field.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..errors import ConfigError, check
from ..registry import config_class_for, get_rule, rules


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str):
    """Load a shipped preset by name (``digits``, ``mnist-paper``) or a TOML file by path."""
    path = Path(name_or_path)
    shipped = resources.files(__name__) / f"{name_or_path}.toml"
    if path.suffix == ".toml" or os.sep in name_or_path or not shipped.is_file():
        where = str(path)
        if path.suffix != ".toml" and not path.exists():
            raise ConfigError(f"unknown preset {name_or_path!r}; shipped presets: {', '.join(preset_names())}")
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"preset {path}: cannot read ({exc.strerror})") from None
    else:
        where, text = f"preset {name_or_path}", shipped.read_text()
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
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
