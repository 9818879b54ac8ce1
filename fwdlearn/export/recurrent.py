"""The Bi-RNN's ONNX graph in seconds: one step traced once, repeated over the frames in ONNX.

Tracing the deployed Bi-RNN whole records every step of both directions: the exporter's cost grows
with the frames, and Brevitas' QCDQ exporter (torch's dynamo exporter) took minutes for FSDD's 183
frames. The graph it writes is a prologue, the same step repeated, and an epilogue:

- prologue, ``(x, lengths) -> drives_d``: every frame's input drive of direction ``d`` (``[N, T, hidden]``,
  the backward direction's read reversed within each length), and the zero initial states;
- step of direction ``d`` at frame ``t``: ``h <- where(t < lengths, ReLU(drive_d[:, t] + W_hh q(std(h)) + b), h)``
  (``RecurrentDirection.advance``);
- epilogue, ``(h_0, h_1) -> logits``: both final states standardised, the read-out, the output grid.

``trace_unrolled`` traces these three, side by side in one small module (``_Pieces``), with the very
exporter a whole-model trace would use (``onnx_export.TRACERS``, or the learnable float trace), so
every operator, initialiser name and rounding is the exporter's own. It then writes the unrolled
graph: the prologue's nodes once, per frame ``t`` one ``Less(t, lengths)`` mask and, per direction, a
``Gather`` of ``drive_d[:, t]`` and a copy of the step's nodes (tensors renamed ``dir<d>/step<t>/...``,
each reading the previous copy's state), then the epilogue's nodes on the last states. Nodes that
read no input (the weights' quantisers, constants) are written once and shared by every step, so
each weight is one initialiser however many frames the graph has. The result computes what the
whole-model trace computes, step for step (its onnxruntime logits are those of the whole trace, bit for
bit, float and QCDQ; only the step's mask is ``Less(t, lengths)`` where the trace wrote
``Greater(lengths, t)``); the exporter's checks (``onnx.checker``, parity with PyTorch in onnxruntime or
qonnx) judge it as they judged that one.

QONNX: built the same way, but qonnx's executor cannot run the Bi-RNN's graph, traced whole or not (its
shape inference leaves the prologue's gathered frames unshaped), so that export fails its check as before,
now in seconds.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..errors import ExportError
from .deployable import Deployable

PROLOGUE = ("x", "lengths")


def _step_inputs(d: int) -> tuple[str, str, str]:
    return f"drive_{d}", f"state_{d}", f"active_{d}"


class _Pieces(nn.Module):
    """The deployed Bi-RNN's prologue, one step of each direction and its epilogue, computed side by side.

    Registers the deployed model's ``encoder``, ``head`` and ``output_quant`` under those names, so the
    traced initialisers are named as in a whole-model trace (``ondevice.runtime.InferenceModel`` reads
    ``encoder.<parameter>``).
    """

    def __init__(self, deployed: nn.Module):
        super().__init__()
        self.encoder, self.head, self.output_quant = deployed.encoder, deployed.head, deployed.output_quant
        object.__setattr__(self, "deployed", deployed)   # for ``classify``; not a second copy of its parameters

    def forward(self, x, lengths, drive_0, state_0, active_0, drive_1, state_1, active_1, final_0, final_1):
        # named arguments, one per input: the dynamo exporter maps dynamic axes to them by name
        drives = self.encoder.drives(x, lengths)
        initial = [d.new_zeros(x.shape[0], direction.hidden_size)
                   for d, direction in zip(drives, self.encoder.directions)]
        nexts = [direction.advance(drive, state, active, direction.recurrent_map())[2]
                 for direction, drive, state, active in zip(self.encoder.directions, (drive_0, drive_1),
                                                            (state_0, state_1), (active_0, active_1))]
        return (*drives, *initial, *nexts, self.deployed.classify(self.encoder.features([final_0, final_1])))


def pieces_deployable(deployable: Deployable) -> Deployable:
    """``deployable`` with ``_Pieces`` as its module, example inputs for every piece and their names."""
    encoder = deployable.model.encoder
    count = len(encoder.directions)
    if count != 2:
        raise ExportError(f"the recurrent export expects a bidirectional layer, got {count} directions")
    x, lengths = deployable.example_inputs
    batch = x.shape[0]
    generator = torch.Generator().manual_seed(0)
    inputs, names = [x, lengths], list(PROLOGUE)
    for d, direction in enumerate(encoder.directions):
        hidden = direction.hidden_size
        inputs += [torch.randn(batch, hidden, generator=generator), torch.rand(batch, hidden, generator=generator),
                   torch.arange(batch) % 2 == 0]
        names += _step_inputs(d)
    inputs += [torch.rand(batch, direction.hidden_size, generator=generator) for direction in encoder.directions]
    names += [f"final_{d}" for d in range(count)]
    outputs = ([f"drives_{d}" for d in range(count)] + [f"initial_{d}" for d in range(count)]
               + [f"next_{d}" for d in range(count)] + ["logits"])
    return dataclasses.replace(deployable, model=_Pieces(deployable.model).eval(), example_inputs=tuple(inputs),
                               input_names=names, output_names=outputs)


def trace_unrolled(deployable: Deployable, path: Path, opset: int | None,
                   trace: Callable[[Deployable, Path, int | None], None]) -> None:
    """Write to ``path`` the graph of the recurrent ``deployable`` unrolled over its example input's frames,
    tracing only its pieces with ``trace`` (module docstring)."""
    import onnx

    pieces = pieces_deployable(deployable)
    with tempfile.TemporaryDirectory(prefix="fwdlearn-rnn-") as folder:
        traced = Path(folder) / "pieces.onnx"
        trace(pieces, traced, opset)
        model = onnx.load(str(traced))        # with any weights the exporter wrote beside it
    unroll(model, steps=deployable.example_inputs[0].shape[1], directions=len(deployable.model.encoder.directions))
    onnx.save(model, str(path))


def unroll(model, steps: int, directions: int) -> None:
    """Rewrite the traced pieces (``_Pieces``'s graph) in place into the graph unrolled over ``steps`` frames."""
    import onnx
    from onnx import AttributeProto, TensorProto, helper

    graph = model.graph
    stored = {i.name for i in graph.initializer}
    outputs = [o.name for o in graph.output]   # in _Pieces' order: drives, initial states, next states, logits
    drives, initial = outputs[:directions], outputs[directions:2 * directions]
    nexts, logits = outputs[2 * directions:3 * directions], outputs[3 * directions]
    inputs = [i.name for i in graph.input if i.name not in stored]
    step_inputs = [tuple(inputs[2 + 3 * d:5 + 3 * d]) for d in range(directions)]
    finals = inputs[2 + 3 * directions:]
    if inputs[:2] != list(PROLOGUE) or len(finals) != directions:
        raise ExportError(f"unexpected inputs of the traced recurrent step: {inputs}")

    # Which piece each node belongs to, by the piece inputs it depends on: none or the prologue's -> written
    # once; one direction's step inputs -> repeated per frame; the final states -> the epilogue.
    groups = {"once": set(PROLOGUE), "readout": set(finals)} | {d: set(step_inputs[d]) for d in range(directions)}
    depends: dict[str, frozenset] = {name: frozenset([name]) for name in inputs}
    members: dict[object, list] = {key: [] for key in groups}
    for node in graph.node:
        if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute):
            raise ExportError(f"the traced recurrent step has a {node.op_type} node with a subgraph; cannot repeat it")
        needs = frozenset().union(*(depends.get(name, frozenset()) for name in node.input))
        key = next((k for k, group in groups.items() if needs <= group), None)
        if key is None:
            raise ExportError(f"a {node.op_type} node of the traced pieces reads {sorted(needs)}; cannot repeat it")
        members[key].append(node)
        for name in node.output:
            depends[name] = needs

    # The exporter's shapes of every tensor (qonnx's executor needs them all): a copy's tensors are typed as
    # the tensors they copy.
    typed = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    value_info = []

    def typed_as(new_name: str, original: str) -> None:
        if original in typed and new_name != logits:
            value_info.append(onnx.ValueInfoProto())
            value_info[-1].CopyFrom(typed[original])
            value_info[-1].name = new_name

    def copy(node, rename: Callable[[str], str], prefix: str):
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[:] = [rename(name) if name else name for name in node.input]
        new.output[:] = [rename(name) if name else name for name in node.output]
        new.name = prefix + node.name
        for name, original in zip(new.output, node.output):
            typed_as(name, original)
        return new

    nodes = list(members["once"])
    for node in nodes:
        for name in node.output:
            typed_as(name, name)
    state = list(initial)
    for t in range(steps):
        step, mask = f"step{t}/t", f"step{t}/active"
        nodes.append(helper.make_node("Constant", [], [step], name=step,
                                      value=helper.make_tensor(step, TensorProto.INT64, [], [t])))
        nodes.append(helper.make_node("Less", [step, "lengths"], [mask], name=mask))
        value_info.append(helper.make_tensor_value_info(step, TensorProto.INT64, []))
        typed_as(mask, step_inputs[0][2])
        for d in range(directions):
            prefix = f"dir{d}/step{t}/"
            drive, previous, active = step_inputs[d]
            feeds = {drive: prefix + "drive", previous: state[d], active: mask}
            produced = {name for node in members[d] for name in node.output}
            nodes.append(helper.make_node("Gather", [drives[d], step], [feeds[drive]], name=feeds[drive], axis=1))
            typed_as(feeds[drive], drive)

            def rename(name, feeds=feeds, produced=produced, prefix=prefix):
                return feeds.get(name, prefix + name if name in produced else name)

            nodes += [copy(node, rename, prefix) for node in members[d]]
            state[d] = rename(nexts[d])
    last = dict(zip(finals, state))
    nodes += [copy(node, lambda name: last.get(name, name), "") for node in members["readout"]]

    keep = [i for i in graph.input if i.name in PROLOGUE or i.name in stored]
    output = next(o for o in graph.output if o.name == logits)
    del graph.node[:], graph.value_info[:]
    graph.node.extend(nodes)
    graph.value_info.extend(value_info)
    kept_inputs = [type(i)() for i in keep]
    for new, old in zip(kept_inputs, keep):
        new.CopyFrom(old)
    del graph.input[:]
    graph.input.extend(kept_inputs)
    kept_output = type(output)()
    kept_output.CopyFrom(output)
    del graph.output[:]
    graph.output.append(kept_output)
