"""Training across processes and machines with ``torch.distributed`` (gloo on CPUs, NCCL on GPUs).

- ``processes.py``: the process group a ``torchrun`` launch (or ``fwdlearn train --nproc N``) sets up.
- ``data_parallel.py``: every process trains on its rows of every batch; each parameter group's gradients are
  summed across processes just before that group's optimiser steps.
- ``pipeline.py``: the layers split into contiguous stages, one per process, under SCFF's simultaneous
  schedule; detached pairs travel forward, nothing travels back.
- ``launch.py``: ``fwdlearn train --nproc N`` and the one-line report of a process that died.
"""

from .data_parallel import DataParallel
from .processes import Processes, current_processes

__all__ = ["DataParallel", "Processes", "current_processes"]
