"""Layer-pipelined local training: each process owns a contiguous stage of layers, pairs travel forward only.

Under SCFF's simultaneous schedule a layer's update needs nothing from the layers above it, and the layer above
reads the detached pairs its predecessor computed *before* its own step (``SCFFLearner.pass_on``). So stage ``s``
can train its layers on batch ``t`` while stage ``s + 1`` trains on batch ``t - 1``: stage 0 builds the pairs from
the data, each stage takes its layers' steps and sends the pairs for the next layer onward (``isend``, so it goes
on to the next batch at once); no gradient and no reply ever travels back. The random draws are stage 0's: it draws
the batch's augmentation, pairing and every later layer's re-pairing shift in the order a one-process run draws
them, and sends the shifts along, so the weights equal those of the one-process simultaneous schedule.

At each epoch's end the stages exchange what the run path needs on every process (``end_epoch``): each group's
statistics, parameters and optimiser state from the stage that owns it, and stage 0's generator, so rank 0 writes
a whole checkpoint and any process resumes from it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..data.augment import augment
from ..errors import ConfigError
from ..objectives.scff import PairBatch, data_pairs, random_shift
from .processes import Processes

NO_SHIFT = -1
_MAX_DIMS = 5


def stage_layers(num_layers: int, stages: int) -> list[range]:
    """Contiguous layers of each stage, as even as they go (earlier stages take one more)."""
    base, extra = divmod(num_layers, stages)
    bounds, start = [], 0
    for s in range(stages):
        stop = start + base + (s < extra)
        bounds.append(range(start, stop))
        start = stop
    return bounds


def check_pipeline(config, world: int, learner_class: type) -> None:
    """A one-line ``ConfigError`` for a run a layer pipeline cannot train (checked before processes start);
    ``learner_class``: the rule's learner, which says whether its layers can be staged (``pipelines``)."""
    if not getattr(learner_class, "pipelines", False):
        raise ConfigError(f"--pipeline: layer pipelines run SCFF (scff-mlp, scff-cnn); {config.learner} trains "
                          f"data parallel")
    if len(config.layers) > 1 and config.schedule != "simultaneous":
        raise ConfigError("--pipeline needs schedule = \"simultaneous\" (every layer learns on every batch)")
    if world > len(config.layers):
        raise ConfigError(f"--pipeline: {world} processes but {len(config.layers)} layers (at most one stage per layer)")


class LayerPipeline:
    """This process's stage of a layer pipeline over ``learner`` (an ``SCFFLearner``), see the module docstring."""

    def __init__(self, learner, processes: Processes):
        check_pipeline(learner.config, processes.world, type(learner))
        self.learner, self.processes, self.rank, self.world = learner, processes, processes.rank, processes.world
        self.stages = stage_layers(len(learner.config.layers), self.world)
        self.layers = self.stages[self.rank]
        self.bytes = 0           # payload sent by this stage, pairs forward only
        self._sending: list = []
        learner.pipeline = self
        for index in range(len(learner.config.layers)):
            if index not in self.layers:   # another stage steps it; its schedule still advances here, in step
                learner.groups[f"layer{index + 1}"].optimizer._opt_called = True

    def owner(self, layer: int) -> int:
        return next(s for s, layers in enumerate(self.stages) if layer in layers)

    # ----- one batch ------------------------------------------------------------------------------------
    def train_batch(self, batch, active: list[str]) -> dict[str, dict[str, float]]:
        learner = self.learner
        last = len(learner.config.layers) - 1
        if self.rank == 0:
            pairs, shifts = self._first_pairs(batch)
        else:
            pairs, shifts = self._receive()
        stats = {}
        for index in self.layers:
            projected, stats[f"layer{index + 1}"] = learner.update(index, pairs)
            if index < last:
                shift = None if shifts[index] == NO_SHIFT else shifts[index]
                pairs = learner.pass_on(index, projected, pairs, shift=shift)
            del projected
        if self.rank < self.world - 1:
            self._send(pairs, shifts)
        return stats

    def _first_pairs(self, batch) -> tuple[PairBatch, list[int]]:
        """Stage 0: the first layer's pairs and every later layer's shift, drawn in a one-process run's order."""
        learner = self.learner
        data, layers = learner.config.data, learner.config.layers
        x = augment(batch.x.to(learner.device), learner.generator, data.crop_pad, data.flip)
        pairs = data_pairs(x, learner.generator, data.translate)
        n = x.shape[0]
        shifts = [random_shift(n, learner.generator) if layers[i + 1].algorithm == 2 else NO_SHIFT
                  for i in range(len(layers) - 1)]
        return pairs, shifts

    def _send(self, pairs: PairBatch, shifts: list[int]) -> None:
        """Pairs for the next stage's first layer, without waiting for it (the previous send is finished first)."""
        self._finish_sends()
        views = pairs.views.detach().contiguous()
        indices = [pairs.pos_left, pairs.pos_right, pairs.neg_left, pairs.neg_right]
        present = [i is not None for i in indices]
        device = self.processes.device
        header = torch.tensor([views.dim(), *views.shape, *[0] * (_MAX_DIMS - views.dim()),
                               pairs.pos_left.shape[0], *present, pairs.owned, *shifts], dtype=torch.int64,
                              device=device)
        stacked = torch.stack([i.to(device, torch.int64) for i in indices if i is not None])
        for tensor in (header, views.to(device), stacked):
            self.bytes += tensor.numel() * tensor.element_size()
            self._sending.append((dist.isend(tensor, self.rank + 1), tensor))

    def _receive(self) -> tuple[PairBatch, list[int]]:
        learner = self.learner
        device = self.processes.device
        header = torch.empty(1 + _MAX_DIMS + 1 + 4 + 1 + len(learner.config.layers) - 1, dtype=torch.int64,
                             device=device)
        dist.recv(header, self.rank - 1)
        values = header.tolist()
        dims = values[0]
        shape, rest = values[1:1 + dims], values[1 + _MAX_DIMS:]
        rows, present, owned, shifts = rest[0], [bool(v) for v in rest[1:5]], bool(rest[5]), rest[6:]
        views = torch.empty(shape, dtype=next(learner.network.parameters()).dtype, device=device)
        dist.recv(views, self.rank - 1)
        stacked = torch.empty(sum(present), rows, dtype=torch.int64, device=device)
        dist.recv(stacked, self.rank - 1)
        device = learner.device
        it = iter(stacked.to(device))
        indices = [next(it) if p else None for p in present]
        return PairBatch(views.to(device), *indices, owned=owned), shifts

    def _finish_sends(self) -> None:
        for work, _ in self._sending:
            work.wait()
        self._sending = []

    # ----- epoch end ----------------------------------------------------------------------------------
    def end_epoch(self, sums: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Every stage's statistics, and each layer's weights, optimiser state and stage 0's generator on every
        process (what a checkpoint holds)."""
        self._finish_sends()
        learner = self.learner
        everyone: list = [None] * self.world
        dist.all_gather_object(everyone, {name: stats for name, stats in sums.items() if stats})
        merged = {name: {} for name in sums}
        for part in everyone:
            merged.update(part)
        for index, layer in enumerate(learner.network.layers):
            group = learner.groups[f"layer{index + 1}"]
            state = [{"layer": layer.state_dict(), "group": group.state_dict()}]
            dist.broadcast_object_list(state, src=self.owner(index))
            if self.owner(index) != self.rank:
                layer.load_state_dict(state[0]["layer"])
                group.load_state_dict(state[0]["group"])
        generator = [learner.generator.get_state()]
        dist.broadcast_object_list(generator, src=0)
        learner.generator.set_state(generator[0])
        return merged
