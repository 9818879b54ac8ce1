"""Peak tensor memory of one call, on the CPU and on CUDA.

CUDA: the caching allocator's own counters (``torch.cuda.max_memory_allocated`` after a reset),
the bytes of live tensors, not the pool the allocator holds.

CPU: PyTorch has no peak counter for host tensors, and the process's resident set size is the
wrong measure (it includes the interpreter, libraries and the pages glibc keeps after a free,
and a page-granular high-water mark never falls). The profiler's memory events are the CPU
allocator's own record of every tensor allocation and free, in order; their running sum is the
live tensor memory at each moment, and its maximum is the peak. This sees exactly what the
update allocates (activations kept for backward, gradients, temporaries, optimiser updates),
and nothing else.

Both report the peak *above* what was live when the call started; ``resident_bytes`` adds the
tensors that persist between updates (parameters, optimiser state, the batch).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterable

import torch


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what the profiler's C++ side prints on file descriptor 2 (start/stop notices)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _cpu_peak(fn: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _cuda_peak(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


def peak_tensor_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensors allocated by ``fn()`` above those live when it starts."""
    return _cuda_peak(fn, device) if device.type == "cuda" else _cpu_peak(fn)


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct tensor storages (a storage shared by several tensors counts once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def optimizer_tensors(optimizers: Iterable[torch.optim.Optimizer]) -> list[torch.Tensor]:
    """Every tensor an optimiser keeps between steps (moments, step counts)."""
    return [v for opt in optimizers for state in opt.state.values() for v in state.values()
            if isinstance(v, torch.Tensor)]
