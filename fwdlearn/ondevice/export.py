"""``fwdlearn export --update``: each trainable stage's update as a verified inference graph (on-device learning).

For every stage the rule offers (``offered.update_stages_for``) the exporter

1. traces ``UpdateGraph(stage, optimiser)`` with the TorchScript exporter (static shapes: the run's batch
   size, a recurrent model's frames);
2. refuses the graph if it holds any operator outside the default ONNX domain or any training operator
   (``Gradient``, ``Momentum``, ``Adagrad``, ``Adam`` of ``ai.onnx.preview.training``, or anything named
   ``*Grad*``): a device that runs inference runs it;
3. runs ``steps`` updates in onnxruntime, from the run's trained parameters and optimiser state (``trained_state``), on
   batches of the run's own data (random samples if it cannot be read here) with random draws made by
   ``runtime.draw`` (the device's own code), and the same number of the learner's *own* updates on the same
   batches and draws (``stage.reference_step``, the learner's own AdamW continuing at the same rate, or
   ``torch.optim.SGD``); every parameter must agree to ``TOLERANCE`` (``relative_error``);
4. writes the graph only if it passed (temporary name, then rename), with metadata naming every input and
   output, the hyper-parameters, the optimiser and what stays float.

Beside the graphs: ``update.npz`` (the parameters the graphs start from) and ``update.json`` (the manifest
``runtime.UpdateRunner`` reads, with the verification and the cost of one on-device update: MACs, bytes
moved, modelled energy).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write, save_json
from ..checkpoint import load_checkpoint
from ..errors import ExportError, FwdlearnError
from ..export.onnx_export import quiet_tracing
from ..registry import get_rule
from .cost import graph_cost
from .offered import offered_rules, update_stages_for
from .optimizers import NAMES, OptimizerSpec
from .runtime import draw, fit_frames, used
from .stage import UpdateGraph, UpdateStage

TOLERANCE = 1e-5
VERIFIED_STEPS = 10
TRAINING_OPERATORS = {"Gradient", "Momentum", "Adagrad", "Adam"}
FLOAT_NOTE = "every tensor is float32 (parameters, optimiser state, activations); indices int64"


@dataclass(frozen=True)
class UpdateExport:
    """What ``export_update`` wrote and measured."""

    manifest: Path
    report: dict


def load_learner(checkpoint: str | Path):
    """``(payload, rule, learner)``: the run's learner with its trained state."""
    payload = load_checkpoint(checkpoint)
    config = payload["config"]
    rule = get_rule(config.learner)
    if update_stages_for(rule.name) is None:
        raise ExportError(f"{checkpoint}: {config.learner} has no on-device update "
                          f"(offered for: {', '.join(offered_rules())})")
    learner = rule.learner(config, payload["input_dim"])
    learner.load_state_dict(payload["state"])
    return payload, rule, learner


def export_update(checkpoint: str | Path, out_dir: str | Path | None = None, optimizer: str = "adamw",
                  lr: float | None = None, steps: int = VERIFIED_STEPS, opset: int = 18, frames: int | None = None,
                  data_dir: str | Path | None = None, seed: int = 0, log=print) -> UpdateExport:
    """Export and verify every stage's update of the run at ``checkpoint`` into ``out_dir`` (default: beside it)."""
    if optimizer not in NAMES:
        raise ExportError(f"--optimizer must be one of {', '.join(NAMES)}, got {optimizer!r}")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ExportError(f"--lr must be a positive number, got {lr}")
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir else checkpoint.parent
    payload, rule, learner = load_learner(checkpoint)
    samples, lengths, labels, source = _batches_source(payload["config"], rule, data_dir, payload["input_dim"])
    frames = frames or (None if lengths is None else int(lengths.max()))
    stages = update_stages_for(rule.name)(learner, sample_shape=tuple(samples.shape[1:]), steps=frames)
    rng = np.random.default_rng(seed)
    batches = [_batch(samples, lengths, labels, learner.config.batch_size, frames, rng) for _ in range(steps)]
    entries, parameters = [], {}
    for stage in stages:
        spec = device_optimizer(optimizer, stage.group(learner).optimizer)
        stage_lr = lr if lr is not None else float(stage.group(learner).optimizer.param_groups[0]["lr"])
        path = out_dir / f"update-{stage.name}.onnx"
        entry = _export_stage(checkpoint, rule, stage, spec, stage_lr, path, batches, opset, seed)
        entries.append(entry)
        for name, value in stage.parameters_of(learner).items():
            parameters[name] = value.detach().float().cpu().numpy()
        parameters.update(trained_state(stage, learner, spec)[0])
        log(f"{path}: {entry['verification']['steps']} steps in onnxruntime equal the learner's to "
            f"{entry['verification']['worst_relative']:.1e}; one update {entry['cost']['macs'] / 1e6:.1f} M MACs, "
            f"{entry['cost']['bytes_in_out'] / 1e6:.2f} MB in and out")
    weights = out_dir / "update.npz"
    atomic_write(weights, lambda tmp: _save_npz(tmp, parameters))
    manifest = {
        "format": "fwdlearn-update", "version": 1, "learner": learner.config.learner, "checkpoint": str(checkpoint),
        "batch_size": learner.config.batch_size, "frames": frames, "parameters": weights.name,
        "optimizer": {"name": optimizer, "state": list(spec.state_names),
                      "hyper_parameters": "per stage (stages[i].optimizer): a layer may have its own weight decay"},
        "float": FLOAT_NOTE, "verification_data": source, "stages": entries,
        "cost_per_update": _total_cost(entries),
    }
    path = save_json(manifest, out_dir / "update.json")
    return UpdateExport(path, manifest)


def trained_state(stage: UpdateStage, learner, spec: OptimizerSpec) -> tuple[dict[str, np.ndarray], int]:
    """The optimiser state the device continues from, and its step count: the learner's own AdamW moments when
    the graph applies AdamW (the device keeps training where training stopped); SGD's momentum starts empty."""
    live = stage.parameters_of(learner)
    optimizer = stage.group(learner).optimizer
    state, step = {}, 0
    for p in stage.trained:
        saved = optimizer.state.get(live[p], {}) if spec.name == "adamw" else {}
        for k in spec.state_names:
            value = saved.get(k)
            state[f"{p}.{k}"] = (np.zeros(tuple(live[p].shape), np.float32) if value is None
                                 else value.detach().float().cpu().numpy().copy())
        step = int(saved["step"]) if "step" in saved else step
    return state, step


def continue_with(group, spec: OptimizerSpec, lr: float) -> None:
    """The reference of the device's steps: the learner's own AdamW continuing at ``lr`` (no schedule), or
    ``torch.optim.SGD`` from an empty momentum buffer."""
    if spec.name == "adamw" and isinstance(group.optimizer, torch.optim.AdamW):
        for settings in group.optimizer.param_groups:
            settings["lr"] = lr
    else:
        group.optimizer = spec.torch_optimizer(group.parameters, lr)
    group.scheduler = None


def device_optimizer(optimizer: str, learner_optimizer) -> OptimizerSpec:
    """The learner's AdamW hyper-parameters, or SGD with the learner's weight decay."""
    own = OptimizerSpec.of(learner_optimizer)
    return own if optimizer == own.name else OptimizerSpec("sgd", weight_decay=own.weight_decay)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _batches_source(config, rule, data_dir, input_dim):
    """Training samples of the run's data set (and lengths, labels), or random ones if it cannot be read."""
    from ..run import load_run_dataset
    try:
        dataset = load_run_dataset(config, data_dir)
        train = dataset.train
        return train.x.float(), train.lengths, train.y, f"{dataset.name} training split"
    except FwdlearnError as exc:
        shape = tuple(input_dim) if isinstance(input_dim, (tuple, list)) else (input_dim,)
        generator = torch.Generator().manual_seed(0)
        n = 4 * config.batch_size
        if rule.sequence:
            lengths = torch.randint(2, 17, (n,), generator=generator)
            return torch.rand((n, 16, *shape), generator=generator), lengths, None, f"random ({exc})"
        labels = torch.randint(0, getattr(config, "num_classes", 10), (n,), generator=generator)
        return torch.rand((n, *shape), generator=generator), None, labels, f"random ({exc})"


def _batch(samples, lengths, labels, batch_size, frames, rng) -> dict:
    index = rng.choice(samples.shape[0], size=batch_size, replace=samples.shape[0] < batch_size)
    batch = {"samples": samples[index].numpy()}
    if lengths is not None:
        batch["samples"], batch["lengths"] = fit_frames(batch["samples"], lengths[index].numpy(), frames)
    if labels is not None:
        batch["labels"] = labels[index].numpy().astype(np.int64)
    return batch


def _export_stage(checkpoint, rule, stage: UpdateStage, spec: OptimizerSpec, lr: float, path: Path,
                  batches: list[dict], opset: int, seed: int) -> dict:
    import onnx

    graph = UpdateGraph(stage, spec)
    _, _, reference = load_learner(checkpoint)
    start = {n: v.detach().float().clone() for n, v in stage.parameters_of(reference).items()}
    rng = np.random.default_rng(seed + 1)
    feeds = [draw(stage.data_inputs_described(), rng, **b) for b in batches]

    measured = {}

    def write(tmp: Path) -> None:
        _trace(graph, _example(graph, start, feeds[0]), tmp, opset)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model, full_check=True)
        _check_operators(model, path)
        verification = _verify(tmp, graph, stage, start, lr, feeds, reference, spec, path)
        for key, value in _metadata(rule, stage, graph, spec, lr, verification).items():
            model.metadata_props.add(key=key, value=value)
        model.producer_name = "fwdlearn"
        onnx.save(model, str(tmp))
        measured.update(verification=verification, cost=graph_cost(model))

    atomic_write(path, write)
    return {"name": stage.name, "file": path.name, "step": measured["verification"]["first_step"],
            "inputs": stage.data_inputs_described(),
            "frozen": list(stage.frozen), "trained": list(stage.trained),
            "shapes": {n: list(v.shape) for n, v in start.items()}, "outputs": graph.output_names,
            "lr": lr, "hyper_parameters": stage.hyper_parameters, "optimizer": spec.hyper_parameters(), "verification": measured["verification"],
            "cost": measured["cost"]}


def _example(graph: UpdateGraph, start: dict, feeds: dict) -> tuple[torch.Tensor, ...]:
    values = {**{k: torch.from_numpy(v) for k, v in feeds.items()}, **start}
    for name in graph.state_names:
        values[name] = torch.zeros_like(start[name.rsplit(".", 1)[0]])
    values["step"], values["lr"] = torch.tensor(0.0), torch.tensor(1e-3)
    return tuple(values[n] for n in graph.input_names)


def _trace(graph: UpdateGraph, example: tuple, path: Path, opset: int) -> None:
    with quiet_tracing(f"update export of stage {graph.stage.name}"):
        torch.onnx.export(graph, example, str(path), dynamo=False, input_names=graph.input_names,
                          output_names=graph.output_names, opset_version=opset)


def _check_operators(model, path: Path) -> None:
    """Inference operators only: the default domain, no training operator, nothing named like a gradient."""
    bad = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in model.graph.node
                  if n.domain not in ("", "ai.onnx") or n.op_type in TRAINING_OPERATORS or "Grad" in n.op_type})
    if bad:
        raise ExportError(f"{path}: the update graph holds operators a device's inference runtime may not run: "
                          f"{', '.join(bad)}")


def _verify(tmp: Path, graph: UpdateGraph, stage: UpdateStage, start: dict, lr: float, feeds: list[dict],
            reference, spec: OptimizerSpec, path: Path) -> dict:
    """``len(feeds)`` steps in onnxruntime against as many of the learner's own steps (see the module docstring).

    A float stage runs free: the device's parameters and state only ever come from its own outputs, and are
    compared after the last step. A weight-quantised stage (``stage.lockstep``) starts every step from the
    learner's parameters and state and is compared after each: rounding to the weight grid turns a float-noise
    difference in a weight into a whole grid step, so two exact implementations running free part after a few
    steps while each single step still agrees to rounding."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    lockstep = bool(getattr(stage, "lockstep", False))
    values = {n: v.numpy() for n, v in start.items()}
    state, first = trained_state(stage, reference, spec)
    continue_with(stage.group(reference), spec, lr)
    seconds, worst, largest = [], 0.0, 0.0
    for step, batch in enumerate(feeds):
        if lockstep and step:
            values = {n: v.detach().float().numpy().copy() for n, v in stage.parameters_of(reference).items()}
            state = trained_state(stage, reference, spec)[0]
        inputs = {**batch, **values, **state, "step": np.asarray(first + step, dtype=np.float32),
                  "lr": np.asarray(lr, dtype=np.float32)}
        started = time.perf_counter()
        outputs = dict(zip(graph.output_names, session.run(graph.output_names, used(session, inputs))))
        seconds.append(time.perf_counter() - started)
        for name in stage.trained:
            values[name] = outputs[f"new.{name}"]
        for name in state:
            state[name] = outputs[f"new.{name}"]
        stage.reference_step(reference, {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()})
        if lockstep or step == len(feeds) - 1:
            live = stage.parameters_of(reference)
            for name in stage.trained:
                ours, theirs = values[name], live[name].detach().float().numpy()
                if not np.isfinite(ours).all():
                    raise ExportError(f"{path}: onnxruntime's update of {name} is not finite after {step + 1} steps")
                worst = max(worst, relative_error(ours, theirs))
                largest = max(largest, float(np.abs(ours - theirs).max()))
    if not worst <= TOLERANCE:
        raise ExportError(f"{path}: {len(feeds)} update steps in onnxruntime differ from the learner's by "
                          f"{worst:.1e} (relative; allowed {TOLERANCE:.0e}); nothing written")
    return {"steps": len(feeds), "mode": "lock-step" if lockstep else "free-running", "first_step": first,
            "worst_relative": worst, "largest_difference": largest, "tolerance": TOLERANCE,
            "reference": f"the learner's own update ({type(reference).__name__}) with "
                         f"torch.optim.{type(stage.group(reference).optimizer).__name__}",
            "seconds_per_update_onnxruntime_cpu": float(np.median(seconds))}


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """``||ours - theirs|| / ||theirs||`` (Frobenius): AdamW divides each gradient by its own running size, so
    an element whose gradient is zero up to rounding may step by a fraction of ``lr`` either way; the norm
    weighs such elements by what they change."""
    return float(np.linalg.norm(ours - theirs)) / max(float(np.linalg.norm(theirs)), 1e-30)


def _metadata(rule, stage: UpdateStage, graph: UpdateGraph, spec: OptimizerSpec, lr: float, verification) -> dict:
    return {
        "fwdlearn.kind": "local update (one optimiser step of one stage)",
        "fwdlearn.learner": rule.name,
        "fwdlearn.stage": stage.name,
        "fwdlearn.inputs": json.dumps({"data": stage.data_inputs_described(), "frozen": stage.frozen,
                                       "trained": stage.trained, "state": graph.state_names,
                                       "step": "steps taken before this one (float32 scalar)",
                                       "lr": "learning rate of this step (float32 scalar)"}),
        "fwdlearn.outputs": json.dumps({"new": graph.output_names[:-1], "loss": "the stage's loss on the batch "
                                        "before the step"}),
        "fwdlearn.optimizer": json.dumps({"name": spec.name, **spec.hyper_parameters(), "lr_exported_with": lr}),
        "fwdlearn.hyper_parameters": json.dumps(stage.hyper_parameters),
        "fwdlearn.float": FLOAT_NOTE,
        "fwdlearn.verification": json.dumps(verification),
    }


def _total_cost(entries: list[dict]) -> dict:
    from ..hardware.energy import modelled_energy
    macs = sum(e["cost"]["macs"] for e in entries)
    moved = sum(e["cost"]["bytes_moved"] for e in entries)
    in_out = sum(e["cost"]["bytes_in_out"] for e in entries)
    return {"macs": macs, "bytes_in_out": in_out, "bytes_moved": moved, "energy": modelled_energy(macs, in_out // 2),
            "note": "every stage stepping once on one batch; bytes_in_out: each graph's inputs read and outputs "
                    "written once (batch, parameters, optimiser state), which the modelled DRAM energy counts; "
                    "bytes_moved: every operator's inputs and outputs once (an upper bound for a fused device kernel)"}
