"""Content digests that tie files together: a read-out to the exact encoder it was trained on, a checkpoint
to the exact samples it was trained on."""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import torch

DIGEST_CHARS = 16   # hex characters kept: 64 bits, ample to tell two runs or two data sets apart


def tensors_digest(named: Iterable[tuple[str, torch.Tensor | None]]) -> str:
    """BLAKE2b over each tensor's name, dtype, shape and bytes, in the order given (``None`` entries skipped)."""
    digest = hashlib.blake2b(digest_size=DIGEST_CHARS // 2)
    for name, tensor in named:
        if tensor is None:
            continue
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def network_digest(state: Mapping[str, torch.Tensor]) -> str:
    """The digest of a network's ``state_dict`` (parameters and buffers, by name): equal only for the same weights."""
    return tensors_digest(sorted((k, v) for k, v in state.items() if isinstance(v, torch.Tensor)))
