"""Progress bars (tqdm) that go quiet when asked or when output is not a terminal."""

from __future__ import annotations

import sys
from typing import Iterable

from tqdm.auto import tqdm


def bars_visible(enabled: bool = True) -> bool:
    """Whether progress bars show: asked for, and stderr is a terminal."""
    return enabled and sys.stderr.isatty()


def progress_bar(items: Iterable, desc: str, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over ``items``; disabled when ``enabled`` is False or stderr is not a TTY."""
    return tqdm(items, desc=desc, disable=not bars_visible(enabled), leave=False, dynamic_ncols=True, **kwargs)
