"""How the run path puts a learner on several processes, and what it records about them."""

from __future__ import annotations

from ..errors import ConfigError
from .data_parallel import DataParallel
from .pipeline import LayerPipeline
from .processes import Processes

MODES = ("data", "pipeline")


def distribute(learner, processes: Processes, parallel: str) -> None:
    """``data``: every process trains on its rows of every batch; ``pipeline``: on its stage of layers."""
    if parallel not in MODES:
        raise ConfigError(f"parallel mode must be one of {', '.join(MODES)}, got {parallel!r}")
    if parallel == "pipeline":
        LayerPipeline(learner, processes)
    else:
        learner.distribute(DataParallel(processes))


def describe_processes(processes: Processes | None, parallel: str) -> str:
    if processes is None:
        return ""
    how = "layer pipeline" if parallel == "pipeline" else "data parallel"
    return f", {processes.world} processes ({how}, {processes.backend})"


def processes_record(learner, processes: Processes, parallel: str) -> dict:
    """What ``results.json`` says of the processes: how many, how, and rank 0's communication payload."""
    record = {"world": processes.world, "parallel": parallel, "backend": processes.backend}
    if learner.pipeline is not None:
        record["stages"] = [[i + 1 for i in layers] for layers in learner.pipeline.stages]
        record["bytes_sent_rank0"] = learner.pipeline.bytes
    elif learner.data_parallel is not None:
        record["bytes_reduced_rank0"] = learner.data_parallel.bytes
    return record
