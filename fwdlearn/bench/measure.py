"""Measure one update: wall time, peak tensor memory, MACs by role, modelled and measured energy.

Each number says whether it was measured or modelled. Order of work: a few warm-up updates
(the optimiser allocates its state, kernels are chosen), then ``repeats`` timed updates, then
one update under the operation counter and one under the memory profiler (those two are not
timed: both add overhead), then, if a counter exists, the energy of ``repeats`` more updates.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from ..hardware.energy import modelled_energy
from ..hardware.update_ops import count_update_macs
from .energy_meters import energy_meter
from .memory import peak_tensor_bytes, tensor_bytes
from .updates import build_update


@dataclass
class UpdateCost:
    rule: str
    depth: int
    width: int
    batch: int
    input_dim: int
    device: str
    seconds: dict            # measured: median, q1, q3, repeats
    memory: dict             # measured: resident and peak bytes, method
    macs: dict               # counted from the executed operations
    energy_modelled: dict    # from hardware/energy.py
    energy_measured: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def measure_update(rule: str, depth: int, width: int, batch: int = 100, input_dim: int = 784,
                   repeats: int = 20, warmup: int = 3, device: str = "cpu") -> UpdateCost:
    """Cost of one ``rule`` update of ``depth`` hidden layers of ``width`` units on a batch of ``batch``."""
    device = torch.device(device)
    update = build_update(rule, [width] * depth, batch, input_dim, device)
    for _ in range(warmup):
        update.step()
    times = _timed(update.step, device, repeats)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0], None, times[0])
    macs = count_update_macs(update.step, update.parameters)
    resident = tensor_bytes(update.resident())
    peak = peak_tensor_bytes(update.step, device)
    memory = {"kind": "measured", "resident_bytes": resident, "peak_above_resident_bytes": peak,
              "peak_bytes": resident + peak,
              "method": "CUDA allocator peak" if device.type == "cuda" else "CPU allocator events (torch profiler)"}
    meter, reason = energy_meter(device)
    measured: dict = {"kind": "measured", "available": meter is not None, "reason": reason}
    if meter is not None:
        before = meter.read()
        _timed(update.step, device, repeats)
        measured.update(counter=meter.name, joules_per_update=(meter.read() - before) / repeats)
    return UpdateCost(rule, depth, width, batch, input_dim, str(device),
                      {"kind": "measured", "median": statistics.median(times), "q1": q1, "q3": q3, "repeats": repeats},
                      memory, {"kind": "counted", **macs}, modelled_energy(macs["total"], resident + peak), measured)
