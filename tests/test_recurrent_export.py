"""The Bi-RNN's ONNX graph built from one traced step (``fwdlearn/export/recurrent.py``): PyTorch's logits on
real test sequences of different lengths, float and QCDQ, each weight stored once however many frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="export needs the export extras")
onnxruntime = pytest.importorskip("onnxruntime", reason="export needs the export extras")

from fwdlearn.data import load_dataset  # noqa: E402
from fwdlearn.eval.readout import Readout  # noqa: E402
from fwdlearn.export import export_onnx  # noqa: E402
from fwdlearn.export.deployable import deployable_from  # noqa: E402
from fwdlearn.export.verify import FLOAT_TOLERANCE, fit_to_graph  # noqa: E402
from fwdlearn.nn.local_birnn import LocalBiRNN  # noqa: E402
from fwdlearn.nn.quant import QuantConfig  # noqa: E402
from fwdlearn.presets import load_preset  # noqa: E402

FRAMES = 24      # the embedded sequences run 16 to 40 frames: cut to 24, their lengths differ
WIDTH = 12


def tiny_deployable(quantised: bool, frames: int = FRAMES):
    """An untrained (seeded) Bi-RNN on the embedded sequences with a read-out fitted to its final states by least
    squares: what ``load_deployable`` gives for a trained run, in a fraction of a second."""
    quant = QuantConfig(weight_bits=4, act_bits=4, per_channel=True) if quantised else QuantConfig()
    config = dataclasses.replace(load_preset("sequences"), quant=quant)
    train = load_dataset("sequences").train
    torch.manual_seed(0)
    encoder = LocalBiRNN(train.x.shape[-1], WIDTH, quant).eval()
    x, lengths = fit_to_graph_sequences(train.x[:300], train.lengths[:300], frames)
    with torch.no_grad():
        features = torch.cat([encoder(x, lengths)[0], torch.ones(len(x), 1)], dim=1)
    targets = torch.nn.functional.one_hot(train.y[:300], 10).float() * 2 - 1
    solution = torch.linalg.lstsq(features, targets).solution.T
    weight, bias = solution[:, :-1].contiguous(), solution[:, -1].contiguous()
    head = Readout(weight=weight, bias=bias, layers=[1], standardized=False, dataset="sequences",
                   class_names=tuple(str(i) for i in range(10)), sample_shape=(40, train.x.shape[-1]),
                   test_accuracy=0.0, logit_bound=float((features[:, :-1] @ weight.T + bias).abs().max()))
    return deployable_from(encoder, head, config, sequence_length=frames)


def fit_to_graph_sequences(x, lengths, frames):
    x = x[:, :frames] if x.shape[1] >= frames else torch.nn.functional.pad(x, (0, 0, 0, frames - x.shape[1]))
    return x.float(), lengths.clamp(max=frames)


def session(path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def real_sequences(deployable, count: int = 60):
    """Test sequences as the graph takes them, with their own lengths (16..24 frames), then the same ones read
    only up to shorter lengths (1..15 frames, the rest zeroed): lengths from 1 to the graph's frames."""
    test = load_dataset("sequences").test
    index = torch.linspace(0, len(test) - 1, count).round().long()
    x, lengths = fit_to_graph(deployable, test.x[index], test.lengths[index])
    short = torch.arange(count) % 15 + 1
    cut = x * (torch.arange(x.shape[1])[None, :, None] < short[:, None, None])
    return torch.cat([x, cut]), torch.cat([lengths, short])


@pytest.mark.parametrize("export_format", ["float", "qcdq"])
def test_unrolled_graph_gives_pytorchs_logits_and_stores_each_weight_once(tmp_path, export_format):
    if export_format == "qcdq":
        pytest.importorskip("brevitas")
    deployable = tiny_deployable(quantised=export_format == "qcdq")
    path = tmp_path / "rnn.onnx"
    report = export_onnx(deployable, path, export_format)
    check = report["verification"]["onnxruntime"]       # the exporter's own check, on 64 test sequences
    assert check["inputs"] == "sequences test split, 64 samples" and check["same_class"] == "64/64"

    x, lengths = real_sequences(deployable)
    assert len(set(lengths.tolist())) >= 15 and int(lengths.max()) == FRAMES
    (got,) = session(path).run(["logits"], {"x": x.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected = deployable.model(x, lengths).numpy()
    difference = np.abs(got - expected)
    step = deployable.model.output_step()
    if export_format == "float":
        assert difference.max() <= FLOAT_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    else:   # on PyTorch's level of the 8-bit output grid, but for at most 1 % of the logits one step off
        assert step > 0 and difference.max() <= step * (1 + 1e-4) and (difference > step / 2).mean() <= 0.01
    assert (got.argmax(1) == expected.argmax(1)).all()
    # frames past a sequence's end change nothing
    noisy = x + 5.0 * (torch.arange(FRAMES)[None, :, None] >= lengths[:, None, None])
    (other,) = session(path).run(["logits"], {"x": noisy.numpy(), "lengths": lengths.numpy()})
    assert np.abs(other - got).max() <= (1e-5 if export_format == "float" else 0.0)

    # one traced step repeated: every frame of both directions is a copy reading the same weights
    model = onnx.load(str(path))
    names = {node.name.split("/", 2)[0] + "/" + node.name.split("/", 2)[1] for node in model.graph.node
             if node.name.startswith("dir")}
    assert names == {f"dir{d}/step{t}" for d in (0, 1) for t in range(FRAMES)}
    assert report["operators"]["Gemm"] == 2 * FRAMES + 1                 # W_hh per step and direction, the read-out
    matrices = [i for i in model.graph.initializer if len(i.dims) >= 2 and i.data_type != onnx.TensorProto.INT64]
    # 2 x (W_ih, W_hh) and the read-out; float also holds each W_ih transposed for the frames' MatMul (as the
    # whole-model trace does: the untransposed one gives the row sums of the tied pair)
    assert len(matrices) == (5 if export_format == "qcdq" else 7)
    recurrent = [i for i in matrices if list(i.dims) == [WIDTH, WIDTH]]
    assert len(recurrent) == 2                                         # W_hh of each direction, once
    if export_format == "qcdq":
        assert all(i.data_type == onnx.TensorProto.INT8 for i in matrices)
        assert report["operators"]["QuantizeLinear"] >= 2 * FRAMES + 2 + 1
    stored = sum(np.prod(i.dims) for i in model.graph.initializer)
    assert stored < 2 * report["parameters"]                           # not a copy per frame


def test_unrolled_graph_computes_what_the_whole_trace_computes(tmp_path):
    """Float: the graph traced whole (every step recorded by the exporter) and the one built from one traced step
    give bit-identical logits in onnxruntime."""
    from fwdlearn.export.onnx_export import TRACERS, quiet_tracing
    from fwdlearn.export.recurrent import trace_unrolled

    deployable = tiny_deployable(quantised=False, frames=18)
    whole, unrolled = tmp_path / "whole.onnx", tmp_path / "unrolled.onnx"
    with quiet_tracing("test export"):
        TRACERS["float"](deployable, whole, 18)
        trace_unrolled(deployable, unrolled, 18, TRACERS["float"])
    x, lengths = real_sequences(deployable, 20)
    feeds = {"x": x.numpy(), "lengths": lengths.numpy()}
    (a,), (b,) = session(whole).run(["logits"], feeds), session(unrolled).run(["logits"], feeds)
    assert np.array_equal(a, b)
