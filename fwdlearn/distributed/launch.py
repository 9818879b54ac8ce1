"""``fwdlearn train --nproc N``: the same job ``torchrun --nproc-per-node N -m fwdlearn train ...`` starts, on
this machine, with one line when a process dies.

Each process gets the variables ``torchrun`` exports (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) and ``OMP_NUM_THREADS`` = cores / N unless set. When one process ends with an error or is killed,
the others are stopped at once (they would otherwise wait in a collective until its timeout) and the job ends
with one line naming the rank; the last checkpoint, written atomically by rank 0, resumes the run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from .processes import LAUNCHED_ENV, LOST_CONTACT

POLL_S = 0.1
SETTLE_S = 2.0
GRACE_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(rank: int, nproc: int, port: int) -> dict[str, str]:
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
               LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **{LAUNCHED_ENV: "1"})
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.update(loopback_only())
    return env


def loopback_only() -> dict[str, str]:
    """Processes on one machine talk over the loopback interface (unless ``GLOO_SOCKET_IFNAME`` says otherwise):
    gloo would otherwise bind to whatever the host name resolves to, which a container may not route."""
    if "GLOO_SOCKET_IFNAME" in os.environ or not sys.platform.startswith("linux"):
        return {}
    return {"GLOO_SOCKET_IFNAME": "lo"}


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed (signal {-code})"
    if code == 137:
        return "was killed (exit code 137)"
    return f"ended with exit code {code}"


def launch(argv: list[str], nproc: int, out: str) -> int:
    """Run ``fwdlearn`` with ``argv`` in ``nproc`` processes; their exit code (the first failure's)."""
    port = free_port()
    workers = [subprocess.Popen([sys.executable, "-m", "fwdlearn", *argv], env=worker_env(r, nproc, port))
               for r in range(nproc)]
    try:
        while True:
            codes = [w.poll() for w in workers]
            if any(c not in (None, 0) for c in codes):
                return _stop(workers, nproc, out)
            if all(c == 0 for c in codes):
                return 0
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _terminate(workers)
        raise


def _stop(workers: list[subprocess.Popen], nproc: int, out: str) -> int:
    """After a first failure: let the others end by themselves for a moment (a refused input ends every rank; a
    lost peer ends the rest), stop whatever still runs, and name the process that failed first in its own right."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline and any(w.poll() is None for w in workers):
        time.sleep(POLL_S)
    _terminate(workers)
    codes = [w.returncode for w in workers]
    if all(c == 2 for c in codes):
        return 2                                 # a refused input: every rank said so, rank 0 printed it
    causes = [r for r, c in enumerate(codes) if c not in (0, LOST_CONTACT, -signal.SIGTERM)]
    rank = causes[0] if causes else next(r for r, c in enumerate(codes) if c != 0)
    print(f"fwdlearn: error: rank {rank} of {nproc} {describe_exit(codes[rank])}; the other processes were stopped; "
          f"run the same command again to resume from the last checkpoint in {out}", file=sys.stderr)
    return 1


def _terminate(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()
    deadline = time.monotonic() + GRACE_S
    for w in workers:
        try:
            w.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
