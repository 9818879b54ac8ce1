"""A search space over a preset's values, read from TOML and checked before any trial runs.

Each key is a dotted path into the preset's values (as the preset file writes them), ``*`` standing for every
layer; each value says how a trial draws it::

    "layers.0.lr"       = { low = 1e-4, high = 1e-2, log = true }   # float, log-uniform
    "layers.*.penalty"  = { low = 0.0, high = 0.02 }                  # every layer, one draw each
    "layers.0.epochs"   = { low = 5, high = 20, int = true }          # integer
    "data.negatives"    = { choices = [1, 2] }                        # categorical
    "bp.epochs"         = 0                                           # fixed in every trial (not searched)

A plain value is set in every trial but not in the best settings' final run (e.g. skip a baseline while
searching).

A path the preset does not have, ``low > high``, a log range that is not above 0, an empty choice list or an
unknown field is refused in one line naming the key. Values the rule then refuses (its own config checks) fail
the trial with that one line, not the study.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

FIELDS = {"low", "high", "log", "int", "choices", "step"}


@dataclass(frozen=True)
class Dimension:
    """One value a trial draws: a float or int range (``log``: log-uniform), a list of ``choices``, or a ``fixed``
    value every trial uses (``fixed = True``)."""

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None
    fixed: bool = False
    value: Any = None

    def suggest(self, trial) -> Any:
        if self.fixed:
            return self.value
        if self.choices is not None:
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    source: str

    def suggest(self, trial) -> dict[str, Any]:
        """Every value of one trial (searched and fixed)."""
        return {d.path: d.suggest(trial) for d in self.dimensions}

    @property
    def searched(self) -> tuple[Dimension, ...]:
        return tuple(d for d in self.dimensions if not d.fixed)

    def current(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """The preset's own values of the searched dimensions, if every one is a single value inside its range
        (a study starts from them), else ``None``."""
        chosen = {}
        for d in self.searched:
            value = preset_value(values, d.path, d.path)
            if isinstance(value, list):
                if len({repr(v) for v in value}) != 1:
                    return None
                value = value[0]
            inside = (value in d.choices) if d.choices is not None else (
                isinstance(value, (int, float)) and not isinstance(value, bool) and d.low <= value <= d.high)
            if not inside:
                return None
            chosen[d.path] = value
        return chosen


def read_space(path: str | Path, preset_values: dict[str, Any]) -> SearchSpace:
    """The search space in ``path``, checked against the preset's values."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"search space {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"search space {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"search space {path}: not valid TOML ({exc})") from None
    if not raw:
        raise ConfigError(f"search space {path}: names nothing to search")
    return SearchSpace(tuple(_dimension(path, key, spec, preset_values) for key, spec in raw.items()), str(path))


def _dimension(path: Path, key: str, spec: Any, values: dict[str, Any]) -> Dimension:
    where = f"search space {path}: {key!r}"
    if isinstance(spec, (bool, int, float, str)):
        preset_value(values, key, where)
        return Dimension(key, fixed=True, value=spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table such as {{ low = 1e-4, high = 1e-2, log = true }} "
                          f"or a fixed value")
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(FIELDS))})")
    current = preset_value(values, key, where)
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        if set(spec) - {"choices"}:
            raise ConfigError(f"{where}: choices cannot be combined with {sorted(set(spec) - {'choices'})[0]!r}")
        return Dimension(key, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: give low and high (or choices)")
    low, high, log, integer = spec["low"], spec["high"], bool(spec.get("log", False)), bool(spec.get("int", False))
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range must lie above 0, got low {low}")
    if integer and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: an int range needs whole bounds, got {low}..{high}")
    whole = [v for v in (current if isinstance(current, list) else [current])]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in whole) and isinstance(low, int) \
            and isinstance(high, int):
        integer = True                                  # an integer setting (epochs, widths) stays one
    if "step" in spec:
        raise ConfigError(f"{where}: step is not supported; use choices for a grid")
    return Dimension(key, low=low, high=high, log=log, integer=integer)


def preset_value(values: dict[str, Any], key: str, where: str) -> list[Any]:
    """The preset's current value(s) at ``key`` (``*``: every element of a list); one-line error if absent."""
    found = [values]
    walked = []
    for part in key.split("."):
        nxt = []
        for node in found:
            if part == "*":
                if not isinstance(node, list):
                    raise ConfigError(f"{where}: '*' needs a list at {'.'.join(walked) or 'the top'}")
                nxt.extend(node)
            elif isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"{where}: the preset has no {'.'.join(walked + [part])} "
                                      f"({len(node)} entries in {'.'.join(walked)})")
                nxt.append(node[int(part)])
            elif isinstance(node, dict) and part in node:
                nxt.append(node[part])
            else:
                raise ConfigError(f"{where}: the preset has no value {'.'.join(walked + [part])} (a typo? the "
                                  f"preset file's keys are the names to use)")
        walked.append(part)
        found = nxt
    return found[0] if len(found) == 1 else found


def apply(values: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """A copy of the preset's ``values`` with every chosen value set (``*``: in every layer)."""
    out = copy.deepcopy(values)
    for key, value in chosen.items():
        _set(out, key.split("."), value)
    return out


def _set(node: Any, parts: list[str], value: Any) -> None:
    head, rest = parts[0], parts[1:]
    if head == "*":
        children = range(len(node))
    else:
        children = [int(head) if isinstance(node, list) else head]
    for child in children:
        if rest:
            _set(node[child], rest, value)
        else:
            node[child] = value
