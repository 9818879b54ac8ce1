"""Reading a preset's TOML (shipped in ``fwdlearn/presets`` or a file) into plain values, with one-line errors.

Kept apart from ``fwdlearn.presets`` (which loads the values into a rule's config through the registry) so
that a rule may read another rule's preset (the self-supervised baselines name their encoder's) without an
import cycle.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

PACKAGE = "fwdlearn.presets"


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files(PACKAGE).iterdir() if p.name.endswith(".toml"))


def read_preset(name_or_path: str) -> tuple[dict[str, Any], str]:
    """The values of a shipped preset (by name: ``digits``, ``mnist-paper``) or a TOML file (by path), and how
    errors should name it."""
    path = Path(name_or_path)
    shipped = resources.files(PACKAGE) / f"{name_or_path}.toml"
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
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
