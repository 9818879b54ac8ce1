"""Data parallel training: every process trains on its rows of every batch, gradients summed per group.

Every process draws the same batches from the same seeded generator (``Learner.epoch_batches``) and makes the
same random draws a one-process run makes on the whole batch (pairings, wrong labels, augmentations), then
keeps its own contiguous rows (``rows``: the batch split as evenly as it goes). Just before a parameter group's
optimiser steps, a hook multiplies that group's gradients by ``scale`` (this process's share of the batch for a
loss averaged over the batch, 1 for a summed one) and sums them across processes (one ``all_reduce`` per group,
issued as soon as that group's own gradient exists: a local layer's reduction does not wait for the next
layer). The sum is then the gradient of the whole batch, so ``P`` processes with batch ``b`` take the steps one
process takes with batch ``P b``, to float rounding.

Where a rule's objective couples samples (SCFF's negative pairs take a partner from anywhere in the batch), the
rule asks for the rows it needs: ``gather_rows`` (every process's rows of a tensor, in batch order) and
``sum_rows`` (per-row gradients summed and this process's rows kept). Batch normalisation is synchronised
(``sync_batch_norms``): the batch's mean and variance are taken over every process's rows, and their gradient
flows back to every process. ``bytes`` counts the payload this process hands to collectives, the communication
volume ``benchmarks/distributed_throughput.py`` records.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from .processes import Processes


class DataParallel:
    """This process's share of data-parallel training (see the module docstring)."""

    def __init__(self, processes: Processes):
        self.processes = processes
        self.rank, self.world = processes.rank, processes.world
        self.scale = 1.0
        self.bytes = 0
        self._hooks: list = []

    # ----- which rows are this process's --------------------------------------------------------------------
    def bounds(self, n: int, rank: int | None = None) -> tuple[int, int]:
        """``[start, stop)`` of ``rank``'s rows of a batch of ``n``: the first ``n mod P`` ranks take one more."""
        rank = self.rank if rank is None else rank
        base, extra = divmod(n, self.world)
        start = rank * base + min(rank, extra)
        return start, start + base + (rank < extra)

    def rows(self, n: int) -> slice:
        return slice(*self.bounds(n))

    def own(self, t: torch.Tensor, n: int, blocks: int = 1) -> torch.Tensor:
        """This process's rows of each of ``blocks`` consecutive blocks of ``n`` rows of ``t``."""
        if blocks == 1:
            return t[self.rows(n)]
        return torch.cat([block[self.rows(n)] for block in t.split(n)])

    def start_batch(self, n: int, summed_loss: bool) -> float:
        """Before a batch of ``n`` rows: set ``scale`` and return this process's share ``rows / n``."""
        start, stop = self.bounds(n)
        share = (stop - start) / n
        self.scale = 1.0 if summed_loss else share
        return share

    @contextlib.contextmanager
    def unscaled(self):
        """Gradients that already carry their share of the batch (``sum_rows``) are summed as they are."""
        saved, self.scale = self.scale, 1.0
        try:
            yield
        finally:
            self.scale = saved

    # ----- collectives ----------------------------------------------------------------------------------
    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed across processes, in place."""
        self.bytes += t.numel() * t.element_size()
        dist.all_reduce(t)
        return t

    def gather_rows(self, mine: torch.Tensor, n: int, blocks: int = 1) -> torch.Tensor:
        """Every process's rows (``own`` of each, in rank order) put back in batch order: ``[blocks * n, ...]``."""
        sizes = [stop - start for start, stop in (self.bounds(n, r) for r in range(self.world))]
        size, most = sizes[self.rank], max(sizes)
        mine = mine.detach().reshape(blocks, size, *mine.shape[1:])
        if size < most:
            mine = torch.cat([mine, mine.new_zeros(blocks, most - size, *mine.shape[2:])], 1)
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        self.bytes += mine.numel() * mine.element_size()
        dist.all_gather(parts, mine.contiguous())
        return torch.cat([torch.cat([part[b, :s] for part, s in zip(parts, sizes)]) for b in range(blocks)])

    def sum_rows(self, everyone: torch.Tensor, n: int, blocks: int = 1) -> torch.Tensor:
        """Per-row values every process computed for the whole batch, summed, and this process's rows of them."""
        return self.own(self.all_reduce(everyone.contiguous()), n, blocks)

    def reduce_record(self, sums: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """An epoch's weighted statistics summed across processes (every process holds the same keys)."""
        keys = [(name, key) for name in sums for key in sums[name]]   # the same order on every process
        if not keys:
            return sums
        total = self.all_reduce(torch.tensor([sums[name][key] for name, key in keys], dtype=torch.float64,
                                             device=self.processes.device)).cpu()
        out: dict[str, dict[str, float]] = {name: {} for name in sums}
        for (name, key), value in zip(keys, total.tolist()):
            out[name][key] = value
        return out

    # ----- gradients --------------------------------------------------------------------------------------
    def attach(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Sum each optimiser's gradients across processes just before it steps (replacing earlier hooks)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = [optimizer.register_step_pre_hook(self._reduce_gradients) for optimizer in optimizers]

    def reduce_now(self, optimizer: torch.optim.Optimizer) -> None:
        """Sum ``optimizer``'s gradients now (e.g. before clipping their norm); its next step sums nothing more."""
        self._reduce_gradients(optimizer, (), {})
        optimizer.fwdlearn_reduced = True

    def _reduce_gradients(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        if getattr(optimizer, "fwdlearn_reduced", False):
            optimizer.fwdlearn_reduced = False
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)
        if self.scale != 1.0:
            flat.mul_(self.scale)
        self.all_reduce(flat)
        for grad, summed in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(summed)

    def broadcast_(self, t: torch.Tensor, src: int) -> torch.Tensor:
        self.bytes += t.numel() * t.element_size()
        dist.broadcast(t, src)
        return t


def sync_batch_norms(module: torch.nn.Module, data_parallel: DataParallel) -> None:
    """Batch norms of ``module`` normalise with the statistics of every process's rows (training mode)."""
    for norm in module.modules():
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            norm.forward = functools.partial(_synced_batch_norm, norm, data_parallel)


def _synced_batch_norm(norm: torch.nn.modules.batchnorm._BatchNorm, data_parallel: DataParallel,
                       x: torch.Tensor) -> torch.Tensor:
    """``BatchNorm`` over the whole batch: per-channel sums of ``x`` and ``x^2`` and the row count summed across
    processes by a differentiable ``all_reduce`` (its backward sums the gradients as well)."""
    if not norm.training:
        return type(norm).forward(norm, x)
    channels, dims = x.shape[1], [0] + list(range(2, x.dim()))
    local = torch.cat([x.sum(dims), x.square().sum(dims), x.new_tensor([x.numel() / channels])])
    data_parallel.bytes += local.numel() * local.element_size()
    total = dist_functional.all_reduce(local)
    count = total[-1]
    mean = total[:channels] / count
    var = total[channels:2 * channels] / count - mean.square()
    if norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            norm.num_batches_tracked += 1
            momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            norm.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            norm.running_var.mul_(1 - momentum).add_(momentum * var.detach() * count / (count - 1))
    shape = [1, channels] + [1] * (x.dim() - 2)
    y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + norm.eps)
    if norm.affine:
        y = y * norm.weight.view(shape) + norm.bias.view(shape)
    return y
