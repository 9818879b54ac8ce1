"""Drive exported update graphs with numpy and onnxruntime alone: what a device runs to keep learning.

Nothing here imports torch (a test checks it). ``fwdlearn export --update`` writes, beside the inference
model, one ONNX graph per trainable stage, ``update.npz`` (every parameter the graphs read and the optimiser
state training ended with, float32, no pickles) and ``update.json`` (the manifest: stages in order, each graph's inputs and how to draw them,
optimiser, learning rates, verification, cost). Example::

    runner = UpdateRunner("runs/fsdd/update.json")
    for x, lengths in batches:                   # unlabelled batches of exactly the exported batch size
        losses = runner.step(x, lengths=lengths)   # every stage takes one step on this batch
    model = InferenceModel("runs/fsdd/model.onnx", runner.parameters)   # the inference graph, adapted weights
    logits = model.run(x_test, lengths_test)

The random draws of a local rule (a negative pair's shift, a wrong label, a translation) are made here with
the runner's ``numpy.random.Generator`` (``draw``), so the graphs themselves are deterministic. Every stage
steps from the parameters the batch started with (as ``fwdlearn``'s learners do: a layer above trains on
the output of the layer below before that layer's step).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import FwdlearnError

DTYPES = {"float32": np.float32, "int64": np.int64}


class DeviceInputError(FwdlearnError):
    """A batch, a parameter or an optimiser state does not fit the exported update (one line)."""


def draw(inputs: list[dict], rng: np.random.Generator, samples: np.ndarray, lengths: np.ndarray | None = None,
         labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The data inputs of one batch (``inputs``: a manifest's ``inputs`` entries), drawing what is random."""
    feeds = {}
    for spec in inputs:
        name, kind, shape, bound = spec["name"], spec["kind"], tuple(spec["shape"]), spec["bound"]
        if kind == "samples":
            value = samples
        elif kind == "lengths":
            value = _required(lengths, name, "lengths")
        elif kind == "labels":
            value = _required(labels, name, "labels")
        else:
            value = _random(kind, shape, bound, samples.shape[0], labels, rng, name)
        feeds[name] = _fitted(value, spec)
    return feeds


def _random(kind, shape, bound, batch, labels, rng, name):
    if kind == "shift":
        return np.asarray(rng.integers(1, batch), dtype=np.int64)
    if kind == "shifts":
        return (rng.permutation(batch - 1)[:shape[0]] + 1).astype(np.int64)
    if kind == "wrong_labels":
        labels = _required(labels, name, "labels")
        return (np.asarray(labels, dtype=np.int64) + rng.integers(1, bound, size=batch)) % bound
    if kind == "translations":
        return rng.integers(0, 2 * bound + 1, size=shape).astype(np.int64)
    raise DeviceInputError(f"update input {name!r}: unknown kind {kind!r} (this runtime is older than the export)")


def _required(value, name: str, what: str):
    if value is None:
        raise DeviceInputError(f"update input {name!r}: this update needs {what} for every batch")
    return value


def _fitted(value, spec: dict) -> np.ndarray:
    """``value`` as the graph input ``spec`` (shape, dtype), or a one-line ``DeviceInputError``."""
    name, shape, dtype = spec["name"], tuple(spec["shape"]), spec["dtype"]
    array = np.asarray(value)
    if array.shape != shape:
        raise DeviceInputError(f"update input {name!r}: expected shape {list(shape)}, got {list(array.shape)}")
    if dtype == "float32":
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
            raise DeviceInputError(f"update input {name!r}: expected numbers, got dtype {array.dtype}")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise DeviceInputError(f"update input {name!r}: holds NaN or infinite values")
    elif not np.issubdtype(array.dtype, np.integer):
        raise DeviceInputError(f"update input {name!r}: expected integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=DTYPES[dtype])


def fit_frames(x: np.ndarray, lengths: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences cut or zero-padded to the ``frames`` a recurrent update or model is unrolled for (a cut sequence
    keeps its first frames and that many as its length)."""
    out = np.zeros((x.shape[0], frames, *x.shape[2:]), dtype=np.float32)
    kept = min(frames, x.shape[1])
    out[:, :kept] = x[:, :kept]
    return out, np.minimum(lengths, frames).astype(np.int64)


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DeviceInputError(f"{path}: no such update manifest (written by 'fwdlearn export --update')") from None
    except (OSError, ValueError) as exc:
        raise DeviceInputError(f"{path}: not a readable update manifest ({exc})") from None


def read_parameters(path: str | Path) -> dict[str, np.ndarray]:
    """Parameters saved by the export (``.npz``, read without unpickling anything)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, ValueError) as exc:
        raise DeviceInputError(f"{path}: not a readable parameter file ({exc})") from None


class UpdateRunner:
    """The exported update of every stage (``manifest``: ``update.json``), its parameters and optimiser state."""

    def __init__(self, manifest: str | Path, stages: list[str] | None = None, seed: int = 0,
                 providers: list[str] | None = None):
        import onnxruntime as ort

        path = Path(manifest)
        self.manifest = read_manifest(path)
        every = [s["name"] for s in self.manifest["stages"]]
        unknown = sorted(set(stages or []) - set(every))
        if unknown:
            raise DeviceInputError(f"{path}: no stage {', '.join(unknown)} (stages: {', '.join(every)})")
        self.stages = [s for s in self.manifest["stages"] if stages is None or s["name"] in stages]
        saved = read_parameters(path.parent / self.manifest["parameters"])
        state_names = {name for s in self.manifest["stages"] for p in s["trained"] for name in self._state_names(p)}
        self.parameters = {k: v for k, v in saved.items() if k not in state_names}
        self.state = {name: saved[name] if name in saved else np.zeros_like(saved[p]) for s in self.stages
                      for p in s["trained"] for name in self._state_names(p)}
        self.steps = {s["name"]: int(s.get("step", 0)) for s in self.stages}
        self.lr = {s["name"]: float(s["lr"]) for s in self.stages}
        self.rng = np.random.default_rng(seed)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.sessions = {s["name"]: ort.InferenceSession(str(path.parent / s["file"]), options,
                                                         providers=providers or ["CPUExecutionProvider"])
                         for s in self.stages}

    def _state_names(self, parameter: str) -> list[str]:
        """The optimiser state tensors of ``parameter`` (graph input names)."""
        return [f"{parameter}.{k}" for k in self.manifest["optimizer"]["state"]]

    @property
    def batch_size(self) -> int:
        return int(self.manifest["batch_size"])

    def step(self, samples: np.ndarray, lengths: np.ndarray | None = None, labels: np.ndarray | None = None
             ) -> dict[str, float]:
        """One step of every stage on this batch; returns each stage's loss."""
        start = dict(self.parameters)
        losses = {}
        for stage in self.stages:
            feeds = draw(stage["inputs"], self.rng, samples, lengths, labels)
            losses[stage["name"]] = self.step_stage(stage, feeds, start)
        return losses

    def step_stage(self, stage: dict, feeds: dict[str, np.ndarray], parameters: dict[str, np.ndarray]) -> float:
        """One step of ``stage`` from ``parameters`` (its frozen and trained ones) with these data inputs."""
        name = stage["name"]
        for p in stage["frozen"] + stage["trained"]:
            feeds[p] = _checked(parameters[p], p, stage["shapes"][p])
        for p in stage["trained"]:
            for s in self._state_names(p):
                feeds[s] = _checked(self.state[s], s, stage["shapes"][p])
        feeds["step"] = np.asarray(self.steps[name], dtype=np.float32)
        feeds["lr"] = np.asarray(self.lr[name], dtype=np.float32)
        session = self.sessions[name]
        outputs = dict(zip(stage["outputs"], session.run(stage["outputs"], used(session, feeds))))
        for p in stage["trained"]:
            self.parameters[p] = outputs[f"new.{p}"]
            for s in self._state_names(p):
                self.state[s] = outputs[f"new.{s}"]
        self.steps[name] += 1
        return float(outputs["loss"])


def used(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds a session takes (an exporter drops inputs a graph does not read, e.g. SGD's step count)."""
    names = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def _checked(value: np.ndarray, name: str, shape: list[int]) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != tuple(shape):
        raise DeviceInputError(f"update input {name!r}: expected shape {list(shape)}, got {list(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.float32)


class InferenceModel:
    """An exported inference model (``fwdlearn export --update``) run with other values for its weights (by
    initialiser name: ``encoder.<parameter>``), e.g. the ones an ``UpdateRunner`` learned.

    The weights become graph inputs fed on every run (onnxruntime would otherwise fold expressions of the
    stored initialisers, such as a transpose, before an override could reach them)."""

    def __init__(self, path: str | Path, parameters: dict[str, np.ndarray], prefix: str = "encoder.",
                 providers: list[str] | None = None):
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(path), load_external_data=False)
        graph = model.graph
        stored = {i.name: i for i in graph.initializer}
        read = {name for node in graph.node for name in node.input}
        self.weights = {}
        for name, value in parameters.items():
            key = prefix + name
            if key not in stored:
                continue
            if key not in read:
                raise DeviceInputError(f"{path}: the graph does not read {key} (its weights were folded at export); "
                                       f"export it with 'fwdlearn export --update'")
            if tuple(stored[key].dims) != np.shape(value):
                raise DeviceInputError(f"{path}: weight {key} is shaped {list(stored[key].dims)}, the value given "
                                       f"{list(np.shape(value))}")
            graph.initializer.remove(stored[key])
            graph.input.append(onnx.helper.make_tensor_value_info(key, stored[key].data_type, list(stored[key].dims)))
            self.weights[key] = np.ascontiguousarray(value, dtype=np.float32)
        if not self.weights:
            raise DeviceInputError(f"{path}: none of the learned parameters is a weight of this model")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), options,
                                            providers=providers or ["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs() if i.name not in self.weights]

    @property
    def replaced(self) -> int:
        return len(self.weights)

    def run(self, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        feeds = {self.input_names[0]: np.asarray(x, dtype=np.float32), **self.weights}
        if lengths is not None:
            feeds[self.input_names[1]] = np.asarray(lengths, dtype=np.int64)
        return self.session.run(None, feeds)[0]
