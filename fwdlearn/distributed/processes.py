"""The process group of a distributed run: set up from the variables ``torchrun`` exports.

``torchrun`` (``python -m torch.distributed.run``) starts one process per worker and exports ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``current_processes`` reads them and joins
the group (gloo on CPUs, NCCL when the run trains on CUDA). Without those variables a run is one process and
nothing here is used.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError

TIMEOUT_ENV = "FWDLEARN_DIST_TIMEOUT_S"   # how long a collective waits for a silent peer (default 300 s)
LAUNCHED_ENV = "FWDLEARN_LAUNCHED"        # set by ``fwdlearn train --nproc``: the launcher reports failures
LOST_CONTACT = 75                         # exit code of a process whose peer died (EX_TEMPFAIL)


@dataclass(frozen=True)
class Processes:
    """This process's place in the job: ``rank`` of ``world`` processes, over ``backend``."""

    rank: int
    world: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, results and plots, and talks to the terminal."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where tensors handed to collectives live: NCCL takes CUDA tensors only, gloo CPU tensors."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def place(self, device: str) -> str:
        """``cuda`` without an index becomes this process's GPU (``cuda:LOCAL_RANK``); anything else is kept."""
        chosen = torch.device(device)
        if chosen.type == "cuda" and chosen.index is None:
            return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        return device

    def barrier(self) -> None:
        dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def current_processes(device: str = "cpu") -> Processes | None:
    """Join the job ``torchrun`` started (once per process), or ``None`` when this run is one process."""
    if not launched_by_torchrun():
        return None
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no CUDA device for NCCL")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "300")))
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timeout)
    return Processes(dist.get_rank(), dist.get_world_size(), dist.get_backend())


_default: list[Processes | None] = [None]


@contextlib.contextmanager
def default_processes(processes: Processes | None):
    """Within: a learner that starts training on its own (a back-propagation baseline the run trains after the
    rule) trains data parallel over ``processes``."""
    saved, _default[0] = _default[0], processes
    try:
        yield
    finally:
        _default[0] = saved


def processes_by_default() -> Processes | None:
    return _default[0]


def leave() -> None:
    """Leave the process group (at the end of a run, or when it failed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
