"""Run ``measure_update`` over rules, depths and widths and print a table; the document is JSON-ready."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Callable

import torch

from ..errors import ConfigError
from .measure import measure_update
from .updates import RULES


def check_device(device: str) -> None:
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device: not a device: {device!r} (use cpu or cuda)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"--device: {device!r} is not supported (use cpu or cuda)")


def describe_device(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}), {torch.get_num_threads()} threads"


def run_sweep(rules: list[str], depths: list[int], widths: list[int], batch: int, input_dim: int = 784,
              repeats: int = 20, device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Every (rule, depth, width) combination; returns the results document."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ConfigError(f"unknown rule(s) {', '.join(unknown)} (choose from {', '.join(RULES)})")
    check_device(device)
    rows = []
    log(header())
    for width in widths:
        for depth in depths:
            for rule in rules:
                cost = measure_update(rule, depth, width, batch, input_dim, repeats, device=device).to_dict()
                rows.append(cost)
                log(table_row(cost))
    return {"kind": "update-cost", "device": describe_device(device), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "batch": batch, "input_dim": input_dim, "repeats": repeats, "rows": rows}


def header() -> str:
    return (f"{'rule':8s} {'depth':>5s} {'width':>6s} {'ms/update (IQR)':>18s} {'peak MB':>8s} "
            f"{'resident MB':>11s} {'MMAC fwd / w-grad / in-grad':>28s} {'modelled uJ fp32 / int8':>24s}  measured")


def table_row(cost: dict) -> str:
    s, m, macs, e = cost["seconds"], cost["memory"], cost["macs"], cost["energy_modelled"]["arithmetic_joules"]
    timing = f"{s['median'] * 1e3:.2f} ({s['q1'] * 1e3:.2f}-{s['q3'] * 1e3:.2f})"
    mac_text = " / ".join(f"{macs[k] / 1e6:.1f}" for k in ("forward", "weight_gradient", "input_gradient"))
    measured = cost["energy_measured"]
    energy = (f"{measured['joules_per_update'] * 1e6:.0f} uJ" if measured.get("available") else "n/a")
    return (f"{cost['rule']:8s} {cost['depth']:5d} {cost['width']:6d} {timing:>18s} {m['peak_bytes'] / 1e6:8.2f} "
            f"{m['resident_bytes'] / 1e6:11.2f} {mac_text:>28s} {e['fp32'] * 1e6:11.1f} / {e['int8'] * 1e6:10.1f}  {energy}")
