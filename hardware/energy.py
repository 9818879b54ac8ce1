"""Energy per operation, and the modelled energy of one training update.

The table is Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
45 nm at 0.9 V, as quoted in the project's methods notes (section 4). Every modelled number in
``fwdlearn bench`` is computed from ``PICOJOULES`` below and nothing else, so it can be traced
back to this table (a test checks that it is).

A multiply-accumulate (MAC) costs one multiply and one add. ``fp32`` multiplies and adds in
fp32; ``int8`` multiplies int8 operands into an int32 accumulator (the usual integer datapath:
an int8 multiply, an int32 add).

Data movement is modelled separately and only where it is unavoidable: the update's peak tensor
memory (``bench/memory.py``) written once to DRAM and read back once, 64 bits per access, at the
table's low and high DRAM figures. On-chip SRAM reuse would cut that; recomputation could too.
"""

from __future__ import annotations

# picojoules per operation (Horowitz, ISSCC 2014; 45 nm, 0.9 V)
PICOJOULES: dict[str, dict[str, float]] = {
    "add": {"int8": 0.03, "int32": 0.1, "fp16": 0.4, "fp32": 0.9},
    "multiply": {"int8": 0.2, "int32": 3.1, "fp16": 1.1, "fp32": 3.7},
    "sram_read_64bit": {"8KB": 10.0, "32KB": 20.0, "1MB": 100.0},
    "dram_access_64bit": {"low": 1300.0, "high": 2600.0},
}
SOURCE = "Horowitz, ISSCC 2014, 45 nm, 0.9 V"

# (multiply, accumulate) operand types of one MAC at each precision
MAC_PRECISIONS: dict[str, tuple[str, str]] = {"fp32": ("fp32", "fp32"), "int8": ("int8", "int32")}


def mac_picojoules(precision: str) -> float:
    """Energy of one multiply-accumulate at ``precision`` (``fp32`` or ``int8``), in pJ."""
    if precision not in MAC_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(MAC_PRECISIONS)}, got {precision!r}")
    multiply, accumulate = MAC_PRECISIONS[precision]
    return PICOJOULES["multiply"][multiply] + PICOJOULES["add"][accumulate]


def modelled_energy(macs: int, peak_bytes: int) -> dict:
    """Modelled energy of one update (joules): arithmetic at fp32 and int8, and DRAM traffic.

    ``macs``: multiply-accumulates of the update; ``peak_bytes``: its peak tensor memory, written
    once and read once (the DRAM range uses the table's low and high figures per 64-bit access).
    """
    accesses = 2 * peak_bytes / 8
    return {
        "kind": "modelled",
        "source": SOURCE,
        "arithmetic_joules": {p: macs * mac_picojoules(p) * 1e-12 for p in MAC_PRECISIONS},
        "dram_joules": {k: accesses * v * 1e-12 for k, v in PICOJOULES["dram_access_64bit"].items()},
    }
