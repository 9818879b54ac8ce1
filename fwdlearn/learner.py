"""The one training loop every rule runs: named parameter groups, stages, one generator, history.

A rule is a ``Learner`` subclass that says three things:

- ``build_network(config, input_dim)``: the network, seeded, on the CPU (also the untrained baseline);
- ``make_groups()``: its named parameter groups, each with its own optimiser, optional per-epoch
  LR schedule and number of epochs (SCFF: one group per layer or direction; LAC: hidden and output;
  a back-propagation baseline: one group), and ``stages`` (which groups train together);
- ``train_batch(batch, active)``: one update of the ``active`` groups on one mini-batch, returning
  each group's statistics (floats) for the epoch's history.

The loop (``train``) does the rest for every rule alike: each stage runs for the largest epoch
count of its groups, a group trains while it has epochs left; one epoch draws its batches from
the learner's single generator (``epoch_batches``), averages each group's statistics, steps the
groups' schedules, appends one history record per group and calls ``on_epoch_end`` (where the run
writes its checkpoint). ``state_dict`` holds everything needed to resume exactly: the network,
every group's optimiser and schedule, the generator, the history and the position in the schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

from .data.batching import epoch_batches
from .data.dataset import check_samples
from .errors import CheckpointError, DataError, DivergenceError
from .progress import progress_bar


@dataclass
class ParamGroup:
    """Parameters that learn together from one objective, with their own optimiser and schedule."""

    name: str
    optimizer: torch.optim.Optimizer
    epochs: int
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


@dataclass(frozen=True)
class Batch:
    """One mini-batch as a rule receives it: samples, and where the data have them, lengths and labels."""

    x: torch.Tensor
    lengths: torch.Tensor | None = None
    y: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.x.shape[0])


class Learner:
    """Base of every rule's learner; see the module docstring for what a rule overrides.

    The class-level hooks below (``network_input``, ``check_config``, ``train_inputs``,
    ``probe_network``, ``baselines``, ``extra_metrics`` ...) are what the one run path
    (``run.py``) asks of every rule; their defaults suit a rule whose network returns every
    layer's features and trains on unlabelled samples.
    """

    min_batch: ClassVar[int] = 1          # smaller trailing batches are dropped (2 for pair-based rules)
    needs_labels: ClassVar[bool] = False  # supervised rules train on (x, y)
    # Data parallel training (``distributed/data_parallel.py``): a rule whose ``train_batch`` makes random draws
    # over the batch, or couples samples, takes its own rows after them (``shards_itself``); otherwise the loop
    # hands it this process's rows. ``summed_loss``: its loss sums over samples (its gradients are summed across
    # processes as they are); ``summed_stats``: its statistics are sums over rows, not means.
    shards_itself: ClassVar[bool] = False
    summed_loss: ClassVar[bool] = False
    summed_stats: ClassVar[bool] = False

    config: Any
    network: torch.nn.Module

    def __init__(self, config, input_dim, device: str | torch.device = "cpu"):
        self.check_config(config, "config")
        self.config = config
        self.input_dim = input_dim
        self.setup(self.build_network(config, input_dim), config.seed, device)

    def setup(self, network: torch.nn.Module, seed: int, device: str | torch.device = "cpu") -> None:
        """Network on ``device``, the one generator, the parameter groups, an empty history."""
        self.device = torch.device(device)
        self.network = network.to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.groups: dict[str, ParamGroup] = {g.name: g for g in self.make_groups()}
        self.history: list[dict] = []
        self.next_stage, self.next_epoch = 0, 0
        self.data_parallel = None
        self.pipeline = None

    def distribute(self, data_parallel) -> None:
        """Train data-parallel with the other processes of ``data_parallel`` (a ``distributed.DataParallel``)."""
        from .distributed.data_parallel import sync_batch_norms
        self.data_parallel = data_parallel
        sync_batch_norms(self.network, data_parallel)
        data_parallel.attach([group.optimizer for group in self.groups.values()])

    # ----- what the run path asks of a rule -------------------------------------------------------
    @staticmethod
    def network_input(dataset) -> int | tuple[int, ...]:
        """What the network is built for: features per sample (or per step); conv rules: the image shape."""
        return dataset.num_features

    @classmethod
    def check_config(cls, config, where: str) -> None:
        """Rule-specific checks of a validated config (one-line ``ConfigError``)."""

    @staticmethod
    def train_inputs(dataset) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(x, lengths, y)`` the rule trains on: by default the unlabelled split if the data set has one."""
        unlabelled = getattr(dataset, "unlabelled", None)
        if unlabelled is not None:
            return unlabelled, None, None
        return dataset.train.x, dataset.train.lengths, None

    @staticmethod
    def probe_network(network: torch.nn.Module) -> torch.nn.Module:
        """The module whose ``forward`` returns the per-layer features the linear probe reads."""
        return network

    @staticmethod
    def num_probe_layers(config) -> int:
        return len(config.layers)

    @staticmethod
    def describe(config, input_dim) -> str:
        """The architecture in one line for the log, e.g. ``64-128-128``."""
        first = "x".join(map(str, input_dim)) if isinstance(input_dim, (tuple, list)) else str(input_dim)
        return "-".join([first] + [str(layer.width) for layer in config.layers])

    @classmethod
    def baselines(cls, config, dataset, input_dim, show_progress: bool, log: Callable[[str], None]) -> dict:
        """Networks trained otherwise on the same architecture (back-propagation), probed beside the rule's:
        name -> ``TrainedBaseline``."""
        return {}

    @classmethod
    def extra_metrics(cls, config, network: torch.nn.Module, dataset, show_progress: bool) -> dict:
        """Rule-specific evaluation added to ``results["metrics"]`` (e.g. FF's goodness classification)."""
        return {}

    def prepare(self, dataset) -> None:
        """What the rule takes from the data set before training (e.g. its normalisation); refuse here, in one
        line, settings the data cannot take."""

    def epoch_artifacts(self, out_dir, dataset, first: bool = False) -> None:
        """Files the rule writes as training goes (before the first epoch if ``first``, then after each)."""

    # ----- what a rule defines -----------------------------------------------------------------
    @staticmethod
    def build_network(config, input_dim) -> torch.nn.Module:
        raise NotImplementedError

    def make_groups(self) -> list[ParamGroup]:
        raise NotImplementedError

    @property
    def stages(self) -> list[list[str]]:
        """Groups trained together, in order; default: all groups at once."""
        return [list(self.groups)]

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        """Refuse training data the rule cannot use (one-line ``DataError``)."""

    def batch_size(self) -> int:
        return self.config.batch_size

    def epoch_batches(self, n: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        """Row indices of each batch of the next epoch, drawn from the learner's generator."""
        return epoch_batches(n, self.batch_size(), self.generator, min_size=self.min_batch)

    def end_epoch(self, record: dict[str, dict[str, float]]) -> None:
        """Called after each epoch's schedules stepped, before its history is written (e.g. a test metric)."""

    def extra_state(self) -> dict:
        return {}

    def state_tensors(self) -> list[torch.Tensor]:
        """Tensors the learner keeps between updates beside its network and optimisers (e.g. an EMA target, a
        queue): what ``fwdlearn bench`` counts as resident."""
        return []

    def load_extra_state(self, state: dict) -> None:
        """Restore what ``extra_state`` saved."""

    # ----- the loop -----------------------------------------------------------------------------
    def stage_epochs(self, stage: list[str]) -> int:
        return max(self.groups[name].epochs for name in stage)

    @property
    def total_epochs(self) -> int:
        return sum(self.stage_epochs(stage) for stage in self.stages)

    @property
    def finished(self) -> bool:
        return self.next_stage >= len(self.stages)

    @property
    def completed_epochs(self) -> int:
        done = sum(self.stage_epochs(stage) for stage in self.stages[:self.next_stage])
        return done + (0 if self.finished else self.next_epoch)

    def train(self, x: torch.Tensor, lengths: torch.Tensor | None = None, y: torch.Tensor | None = None,
              on_epoch_end: Callable[["Learner"], None] | None = None, show_progress: bool = True) -> None:
        """Train on samples ``x`` (with ``lengths`` for sequences, ``y`` for supervised rules) from wherever
        the learner stands, fresh or resumed."""
        check_training_inputs(x, lengths, y)
        self.check_data(x, lengths)
        if self.data_parallel is None and self.pipeline is None:
            from .distributed.processes import processes_by_default
            if processes_by_default() is not None:
                from .distributed.data_parallel import DataParallel
                self.distribute(DataParallel(processes_by_default()))
        if self.needs_labels and y is None:
            raise DataError(f"{type(self).__name__} trains on labelled data; pass y")
        n = x.shape[0]
        while not self.finished:
            stage = self.stages[self.next_stage]
            active = [name for name in stage if self.next_epoch < self.groups[name].epochs]
            if not active:
                self._advance()
                continue
            epochs = self.stage_epochs(stage)
            self.network.train()
            batches = self.epoch_batches(n, lengths)
            sums: dict[str, dict[str, float]] = {name: {} for name in active}
            started = time.perf_counter()
            bar = progress_bar(batches, desc=f"{'+'.join(active)} epoch {self.next_epoch + 1}/{epochs}",
                               enabled=show_progress)
            for rows in bar:
                batch = Batch(x[rows], None if lengths is None else lengths[rows], None if y is None else y[rows])
                stats, weight = self._train_batch(batch, active)
                for name, values in stats.items():
                    for key, value in values.items():
                        sums[name][key] = sums[name].get(key, 0.0) + value * weight
                first = next(iter(stats.values()), {})
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(first.items())[:2]}, refresh=False)
            if self.pipeline is not None:
                sums = self.pipeline.end_epoch(sums)
            elif self.data_parallel is not None:
                sums = self.data_parallel.reduce_record(sums)
            seconds = time.perf_counter() - started
            record = {name: {k: v / len(batches) for k, v in sums[name].items()} for name in active}
            for name in active:
                if self.groups[name].scheduler is not None:
                    self.groups[name].scheduler.step()
            check_finite(record, self.next_epoch + 1, {name: self.groups[name].parameters for name in active})
            self.end_epoch(record)
            for name in active:
                self.history.append({"group": name, "epoch": self.next_epoch + 1, **record[name], "seconds": seconds})
            self.next_epoch += 1
            if self.next_epoch >= epochs:
                self._advance()
            if on_epoch_end is not None:
                on_epoch_end(self)
        self.network.eval()

    def _train_batch(self, batch: Batch, active: list[str]) -> tuple[dict[str, dict[str, float]], float]:
        """One batch as this process takes it: whole (one process), its rows (data parallel) or its stage's
        layers (pipelined); with the weight its statistics take in the epoch's sum across processes."""
        if self.pipeline is not None:
            return self.pipeline.train_batch(batch, active), 1.0
        if self.data_parallel is None:
            return self.train_batch(batch, active), 1.0
        share = self.data_parallel.start_batch(batch.size, self.summed_loss)
        if not self.shards_itself:
            rows = self.data_parallel.rows(batch.size)
            batch = Batch(batch.x[rows], None if batch.lengths is None else batch.lengths[rows],
                          None if batch.y is None else batch.y[rows])
        return self.train_batch(batch, active), 1.0 if self.summed_stats else share

    def _advance(self) -> None:
        self.next_stage, self.next_epoch = self.next_stage + 1, 0

    def seconds_per_epoch(self) -> dict[str, float]:
        """Mean wall time of one training epoch, per group."""
        per_group: dict[str, list[float]] = {}
        for record in self.history:
            per_group.setdefault(record["group"], []).append(record["seconds"])
        return {k: round(sum(v) / len(v), 3) for k, v in per_group.items()}

    # ----- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"network": self.network.state_dict(),
                "groups": {name: group.state_dict() for name, group in self.groups.items()},
                "generator": self.generator.get_state(), "history": [dict(r) for r in self.history],
                "position": [self.next_stage, self.next_epoch], "extra": self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.network.load_state_dict(state["network"])
            # Loading may replace parameters (Brevitas re-creates a quantiser's learned scale): rebuild the
            # optimisers on the parameters the network now holds, so every one of them keeps training.
            self.groups = {g.name: g for g in self.make_groups()}
            if set(state["groups"]) != set(self.groups):
                raise KeyError(f"parameter groups {sorted(state['groups'])}, expected {sorted(self.groups)}")
            for name, group in self.groups.items():
                group.load_state_dict(state["groups"][name])
            if self.data_parallel is not None:
                self.data_parallel.attach([group.optimizer for group in self.groups.values()])
            self.generator.set_state(state["generator"])
            self.history = [dict(r) for r in state["history"]]
            self.next_stage, self.next_epoch = state["position"]
            self.load_extra_state(state.get("extra", {}))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"learner state does not match this configuration "
                                  f"({str(exc).splitlines()[0]})") from None


class LayerwiseLearner(Learner):
    """A rule whose layers each learn on their own objective (SCFF, FF): one AdamW group per layer, named
    ``layer1``, ``layer2`` ..., from ``config.layers[i]`` (``lr``, ``weight_decay``, ``lr_decay``,
    ``epochs``); ``config.schedule`` ``sequential`` trains them one after the other (one stage each),
    ``simultaneous`` all on every batch."""

    def make_groups(self) -> list[ParamGroup]:
        return [adamw_group(f"layer{i + 1}", layer, c.lr, c.weight_decay, c.lr_decay, c.epochs)
                for i, (layer, c) in enumerate(zip(self.network.layers, self.config.layers))]

    @property
    def stages(self) -> list[list[str]]:
        names = list(self.groups)
        return [[name] for name in names] if self.config.schedule == "sequential" else [names]

    @staticmethod
    def layer_indices(active: list[str]) -> list[int]:
        """0-based layer indices of active groups ``layer1``, ``layer2`` ..."""
        return [int(name.removeprefix("layer")) - 1 for name in active]


def check_training_inputs(x, lengths, y) -> None:
    """Refuse what no rule can learn from (``data.dataset.check_samples``) and labels that do not match the
    samples (one-line ``DataError``)."""
    check_samples(x, lengths, "training data")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.dtype != torch.int64):
        raise DataError(f"training data: labels must be int64 of shape [{x.shape[0]}], got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {list(getattr(y, 'shape', []))}")


def check_finite(record: dict[str, dict[str, float]], epoch: int, parameters: dict[str, list[torch.Tensor]]) -> None:
    """The divergence guard: a ``DivergenceError`` naming the group (layer) and epoch whose averaged statistics
    (loss ...) or parameters are NaN or infinite. Called before the epoch is recorded or checkpointed, so the
    last checkpoint on disk stays the last finite one."""
    for name, stats in record.items():
        bad = [key for key, value in stats.items() if not math.isfinite(value)]
        if bad:
            raise DivergenceError(f"{name} diverged in epoch {epoch}: {bad[0]} is {stats[bad[0]]} "
                                  f"(lower its learning rate)")
    for name, params in parameters.items():
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise DivergenceError(f"{name} diverged in epoch {epoch}: its parameters hold NaN or infinite values "
                                  f"(lower its learning rate)")


@dataclass
class TrainedBaseline:
    """A network of the same architecture trained by another rule (e.g. back-propagation end to end)."""

    network: torch.nn.Module
    seconds: float = 0.0
    history: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def adamw_group(name: str, module: torch.nn.Module, lr: float, weight_decay: float, lr_decay: float,
                epochs: int) -> ParamGroup:
    """A group trained by fused AdamW with an exponential per-epoch decay (SCFF Tables F.2-F.5)."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    return ParamGroup(name, optimizer, epochs, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay))


def take_fused_step(group: ParamGroup, set_gradients: Callable[[], None]) -> None:
    """One optimiser step of ``group`` on gradients a closed-form update writes into ``.grad`` (no backward pass);
    gradients freed afterwards."""
    clear_gradients(group)
    set_gradients()
    step_and_clear(group)


def clear_gradients(group: ParamGroup) -> None:
    for p in group.parameters:
        p.grad = None


def step_and_clear(group: ParamGroup) -> None:
    """One step of ``group``'s optimiser on the gradients its parameters hold, which are then freed."""
    group.optimizer.step()
    clear_gradients(group)


def take_step(groups: list[ParamGroup], loss: torch.Tensor) -> None:
    """One backward pass of ``loss`` and one step of each group's optimiser; gradients freed afterwards.

    Callers pass a loss whose graph reaches only these groups' parameters (a local rule detaches
    every layer input), so each optimiser sees exactly the gradient of its own objective.
    """
    for group in groups:
        group.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in groups:
        group.optimizer.step()
        group.optimizer.zero_grad(set_to_none=True)
