"""Measured energy, where the machine has a counter: NVML on NVIDIA GPUs, RAPL on Linux CPUs.

Both count the whole device (the GPU board; the CPU package), idle power and other processes
included, so a measured figure per update is the counter's difference over many updates divided
by their number. Where no counter can be read the meter is ``None`` and the report says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyMeter:
    """``read()`` returns a monotone energy counter in joules."""

    def __init__(self, name: str, read: Callable[[], float]):
        self.name, self.read = name, read


def _nvml_meter(device: torch.device) -> tuple[EnergyMeter | None, str]:
    try:
        import pynvml
    except ImportError:
        return None, "NVML not available (pip install 'fwdlearn[gpu]')"
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:  # NVML raises its own error types
        return None, f"NVML energy counter not readable ({exc})"
    return EnergyMeter("NVML total energy (GPU board)",
                       lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0), ""


def _rapl_meter() -> tuple[EnergyMeter | None, str]:
    packages = sorted(RAPL_ROOT.glob("intel-rapl:[0-9]*/energy_uj")) if RAPL_ROOT.exists() else []
    packages = [p for p in packages if p.parent.name.count(":") == 1]
    if not packages:
        return None, f"no RAPL counter under {RAPL_ROOT}"
    try:
        [int(p.read_text()) for p in packages]
    except (OSError, ValueError) as exc:
        return None, f"RAPL counter not readable ({exc})"
    return EnergyMeter(f"RAPL package energy ({len(packages)} package(s))",
                       lambda: sum(int(p.read_text()) for p in packages) / 1e6), ""


def energy_meter(device: torch.device) -> tuple[EnergyMeter | None, str]:
    """The device's energy counter, or ``None`` and the reason there is none."""
    return _nvml_meter(device) if device.type == "cuda" else _rapl_meter()
