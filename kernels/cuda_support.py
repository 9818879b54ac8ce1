"""What every CUDA kernel module needs from numba-cuda, in one place.

``cuda_kernels(name)``: import a kernel module of this package that needs numba-cuda, or raise a one-line
``ConfigError`` naming the missing extra and the autograd way around it. ``device_array(t)``: a tensor as
numba-cuda reads it, the tensor itself on a GPU (``__cuda_array_interface__``, no copy), its host memory under
the simulator (``NUMBA_ENABLE_CUDASIM=1``). ``launch(kernel, items, *args)``: one thread per item, tensors
handed over as device arrays.
"""

from __future__ import annotations

import importlib

import torch


def cuda_kernels(name: str):
    """The module ``fwdlearn.kernels.<name>``, or a one-line error if numba-cuda is not installed."""
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError as exc:
        from ..errors import ConfigError
        raise ConfigError(f"the fused backend on a CUDA device needs numba-cuda ({exc}): "
                          f"pip install 'fwdlearn[cuda]', or train with --backend torch") from None


def device_array(t: torch.Tensor):
    """A device array for numba-cuda: the tensor itself on a GPU, its host memory in the simulator."""
    from numba import cuda
    return cuda.as_cuda_array(t) if t.is_cuda else t.numpy()


THREADS = 128


def launch(kernel, items: int, *args) -> None:
    """Run ``kernel`` on ``items`` threads (blocks of ``THREADS``), every tensor argument as a device array."""
    blocks = (items + THREADS - 1) // THREADS
    kernel[blocks, THREADS](*(device_array(a) if isinstance(a, torch.Tensor) else a for a in args))
