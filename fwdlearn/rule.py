"""What the toolkit needs to know about one learning rule: a ``Rule`` value, declared in the rule's own file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    """What the toolkit needs to know about one learning rule.

    ``learner``: its ``learner.Learner`` subclass (builds the network, owns the parameter groups
    and the per-batch update). ``config``: the dataclass its presets load into.
    ``presets``: default preset per data set (key ``None``: the embedded default used when no data set
    is named). ``in_graph``: what an exported model's graph computes from its input (ONNX metadata).
    ``local``: every parameter group learns from its own objective only (the locality contract).
    ``bench``: ``bench(widths, x) -> (learner, batch)``, a learner of this rule on hidden layers ``widths`` and
    a fixed batch on ``x``'s device, whose ``train_batch(batch, all groups)`` ``fwdlearn bench`` measures;
    or, for a rule with several variants, a dict naming one such builder per variant (``benches``).
    A rule's on-device update (``fwdlearn export --update``) is declared by the module of ``fwdlearn.ondevice``
    that implements it (``ondevice.offered``), so that rules do not depend on the exporter.
    """

    name: str
    summary: str
    label: str
    learner: type
    config: type
    presets: dict[str | None, str]
    in_graph: str
    local: bool = True
    devices: tuple[str, ...] = ("cpu", "cuda")
    quantisable: bool = True
    sequence: bool = False
    hls4ml: bool = False
    bench: Callable[[list[int], Any], tuple[Any, Any]] | dict[str, Callable] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def benches(self) -> dict[str, Callable[[list[int], Any], tuple[Any, Any]]]:
        """What ``fwdlearn bench --rules`` can measure of this rule: name -> builder (none, one, or per variant)."""
        if self.bench is None:
            return {}
        return dict(self.bench) if isinstance(self.bench, dict) else {self.name: self.bench}

    def network_input(self, dataset) -> int | tuple[int, ...]:
        """What the rule's network is built for, from a ``LabelledDataset``."""
        return self.learner.network_input(dataset)
