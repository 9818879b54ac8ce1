"""Activation sparsity and synaptic operations (``hardware/sparsity.py``, NeuroBench) against numbers worked out by
hand, and their place in the export report, ``fwdlearn bench --checkpoint`` and ``benchmarks/sparsity.py``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from fwdlearn.cli import main
from fwdlearn.errors import DataError
from fwdlearn.hardware.ops import count_macs
from fwdlearn.hardware.sparsity import measure_sparsity
from fwdlearn.hardware.synapses import effective_products
from fwdlearn.nn.local_birnn import LocalBiRNN
from fwdlearn.nn.paired_conv import ConvConfig
from fwdlearn.nn.quant import QuantConfig
from fwdlearn.nn.scff_conv_network import SCFFConvNetwork
from fwdlearn.nn.scff_network import SCFFNetwork

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _one_layer_conv() -> SCFFConvNetwork:
    """One paired 3x3 SCFF convolution, 1 -> 2 channels, reflect padding 1, no pooling, on 3x3 maps."""
    torch.manual_seed(0)
    return SCFFConvNetwork((1, 3, 3), [2], [ConvConfig(kernel=3, padding=1, pool="none")], [2], ["relu"])


def _point(row: int, col: int) -> torch.Tensor:
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, row, col] = 1.0
    return x


# ----- one weight layer: NeuroBench's Effective_MACs ------------------------------------------------------

def test_dense_layer_counts_products_whose_input_and_weight_are_non_zero():
    layer = nn.Linear(5, 3)
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0],     # 2 non-zero inputs x 3 outputs
                      [0.0, 0.0, 0.0, 0.0, 4.0]])    # 1 x 3
    assert effective_products(layer, x) == 9
    with torch.no_grad():
        layer.weight[:, 2] = 0.0                       # input 2 meets no weight: 3 products fewer
        layer.weight[0, 4] = 0.0                       # input 4 meets one weight fewer
    assert effective_products(layer, x) == 5


def test_convolution_counts_the_non_zero_inputs_of_each_receptive_field_zero_padding_included():
    conv = nn.Conv2d(1, 2, 3, padding=1)              # zero padding: a 3x3 map stays 3x3
    # a corner pixel lies in the windows of the 4 outputs around it (each of 2 channels)
    assert effective_products(conv, _point(0, 0)) == 4 * 2
    # the centre pixel lies in all 9 windows
    assert effective_products(conv, _point(1, 1)) == 9 * 2
    assert count_macs(conv, _point(1, 1))["total"] == 9 * 2 * 9     # dense: every output x 3x3 taps


# ----- SCFF layers: the standardisation folded ---------------------------------------------------------------

def test_scff_convolution_counts_the_raw_input_with_its_reflected_copies():
    """Reflect padding of a 3-wide map is [x1, x0, x1, x2, x1]: the centre value sits at padded positions 0, 2, 4
    of each axis, which the three windows (0-2, 1-3, 2-4) hold 2, 1 and 2 times: (2 + 1 + 2)^2 = 25 products
    per channel. A corner value sits once, at position 1, in windows 0-2 and 1-3: 2^2 = 4."""
    network = _one_layer_conv()
    (centre,) = measure_sparsity(network, _point(1, 1))["layers"]
    assert centre["standardisation"] == "folded"
    assert centre["effective_macs"] == 25 * 2
    assert centre["correction_macs"] == 2                         # mu (W 1): one per channel
    assert centre["dense_macs"] == 2 * 3 * 3 * 9
    assert centre["effective_macs_as_graph"] == 2 * 3 * 3 * 9     # the standardised map has no zeros
    assert centre["input_sparsity"] == pytest.approx(8 / 9)
    (corner,) = measure_sparsity(network, _point(0, 0))["layers"]
    assert corner["effective_macs"] == 4 * 2


def test_scff_dense_layer_counts_the_raw_input_per_inference():
    torch.manual_seed(0)
    network = SCFFNetwork(4, [3], algorithms=[1], activations=["relu"])
    x = torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    result = measure_sparsity(network, x)
    (row,) = result["layers"]
    assert result["samples"] == 2
    assert row["effective_macs"] == (2 + 1) * 3 / 2               # mean per sample
    assert row["dense_macs"] == row["effective_macs_as_graph"] == 4 * 3
    assert row["correction_macs"] == 3
    assert row["input_sparsity"] == 5 / 8
    assert result["total"]["effective_plus_correction_macs"] == 4.5 + 3
    assert result["total"]["effective_over_dense"] == 7.5 / 12


def _two_layers() -> SCFFNetwork:
    """Layer 1 (2 -> 2): ``W = [[1, -1], [-1, 1]]``: a standardised pair of two different values is (1, -1) or
    (-1, 1), so exactly one unit is positive: half the outputs are zero. Layer 2 (2 -> 3): equal weights see
    ``1 - 1 = 0`` and a bias of 1: every output is 2."""
    network = SCFFNetwork(2, [2, 3], algorithms=[1, 1], activations=["relu", "relu"])
    with torch.no_grad():
        network.layers[0].linear.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        network.layers[0].linear.bias.zero_()
        network.layers[1].linear.weight.fill_(1.0)
        network.layers[1].linear.bias.fill_(1.0)
    return network


@pytest.mark.parametrize("x, input_sparsity", [(torch.tensor([[1.0, 3.0], [2.0, 5.0]]), 0.0),
                                                (torch.tensor([[1.0, 0.0], [0.0, 2.0]]), 0.5)])
def test_activation_sparsity_per_layer_and_over_every_neuron(x, input_sparsity):
    result = measure_sparsity(_two_layers(), x)
    first, second = result["layers"]
    assert first["input_sparsity"] == input_sparsity
    assert first["activation_sparsity"] == 0.5
    assert second["input_sparsity"] == 0.5 and second["activation_sparsity"] == 0.0
    assert result["total"]["activation_sparsity"] == 1 / (2 + 3)   # per neuron, not the mean of the layers
    # layer 2 takes one non-zero of its two inputs: 1 x 3 products instead of 2 x 3
    assert second["effective_macs"] == 3 and second["dense_macs"] == 6 == second["effective_macs_as_graph"]


def test_a_rounded_standardised_input_is_counted_as_the_graph_multiplies_it():
    x = torch.rand(6, 1, 4, 4)
    x[x < 0.5] = 0.0
    rounded = measure_sparsity(SCFFNetwork(16, [8], [1], ["relu"], QuantConfig(weight_bits=4, act_bits=4)), x)
    (row,) = rounded["layers"]
    assert row["standardisation"] == "in graph" and row["correction_macs"] == 0
    assert row["effective_macs"] == row["effective_macs_as_graph"] <= row["dense_macs"]
    weights_only = measure_sparsity(SCFFNetwork(16, [8], [1], ["relu"], QuantConfig(weight_bits=4)), x)
    assert weights_only["layers"][0]["standardisation"] == "folded"


def test_dense_macs_are_the_export_reports_count():
    torch.manual_seed(1)
    x = torch.rand(5, 1, 8, 8)
    for network in (SCFFNetwork(64, [20, 12], [1, 1], ["triangle", "triangle"]),
                    SCFFConvNetwork((1, 8, 8), [4, 6], [ConvConfig(kernel=3, padding=1)] * 2, [2, 1],
                                    ["triangle"] * 2)):
        result = measure_sparsity(network, x)
        assert result["total"]["dense_macs"] * 5 == count_macs(network, x)["total"]
        for row in result["layers"]:
            assert row["effective_macs"] <= row["dense_macs"]


# ----- the Bi-RNN: real frames only ---------------------------------------------------------------------------

def _constant_rnn() -> LocalBiRNN:
    """3 features, 2 units; small equal weights and a bias of 1 keep every state positive."""
    network = LocalBiRNN(3, 2)
    with torch.no_grad():
        for direction in network.directions:
            direction.input.weight.fill_(0.05)
            direction.recurrent.weight.fill_(0.05)
            direction.recurrent.bias.fill_(1.0)
    return network


@pytest.mark.parametrize("padded_frames", [0, 3])
def test_recurrent_network_counts_every_real_frame_of_both_directions(padded_frames):
    x = torch.zeros(2, 2 + padded_frames, 3)
    x[0, :2] = torch.tensor([[2.0, 0.0, 2.0], [1.0, 1.0, 0.0]])     # sequence 0: 2 frames
    x[1, 0] = torch.tensor([0.0, 0.0, 5.0])                           # sequence 1: 1 frame
    result = measure_sparsity(_constant_rnn(), x, torch.tensor([2, 1]))
    rows = {row["layer"]: row for row in result["layers"]}
    assert len(rows) == 4
    for name in ("forward", "backward"):
        frames, states = rows[f"{name} direction, input weights"], rows[f"{name} direction, recurrent weights"]
        # 3 real frames of 3 features into 2 units; 5 of their 9 values are non-zero
        assert frames["dense_macs"] == 3 * 3 * 2 / 2
        assert frames["effective_macs"] == frames["effective_macs_as_graph"] == 5 * 2 / 2
        assert frames["input_sparsity"] == 4 / 9
        # the previous state is zero at each sequence's first step; only sequence 0's second step has one
        assert states["dense_macs"] == 3 * 2 * 2 / 2
        assert states["effective_macs"] == 1 * 2 * 2 / 2
        assert states["input_sparsity"] == 4 / 6
        assert frames["correction_macs"] == states["correction_macs"] == 3 * 2 / 2
        assert frames["activation_sparsity"] == states["activation_sparsity"] == 0.0
    assert result["total"]["dense_macs"] == 2 * (9 + 6)


def test_bad_input_gives_one_line_errors():
    with pytest.raises(DataError, match="float samples"):
        measure_sparsity(SCFFNetwork(4, [3], [1], ["relu"]), torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(DataError, match="needs the sequences' lengths"):
        measure_sparsity(_constant_rnn(), torch.zeros(2, 2, 3))
    with pytest.raises(DataError, match="lengths apply to recurrent networks"):
        measure_sparsity(SCFFNetwork(4, [3], [1], ["relu"]), torch.zeros(2, 4), torch.tensor([1, 1]))
    with pytest.raises(DataError, match="lengths must lie in 1..2"):
        measure_sparsity(_constant_rnn(), torch.zeros(2, 2, 3), torch.tensor([3, 1]))


# ----- a trained run: export report, fwdlearn bench, the benchmark script ------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished scff-mlp run on the embedded digits (64-48-32), one epoch per layer and for the read-out."""
    from test_cli import TINY_PRESET

    from fwdlearn.presets import load_preset
    from fwdlearn.run import train_run

    folder = tmp_path_factory.mktemp("sparsity-run")
    preset = folder / "tiny.toml"
    preset.write_text(TINY_PRESET.replace("epochs = 2", "epochs = 1")
                      .replace("epochs = 3", "epochs = 1\neach_layer = false"))
    train_run(load_preset(str(preset)), folder / "run", show_progress=False, log=lambda _: None)
    return folder / "run" / "checkpoint.pt"


def test_export_report_holds_sparsity_measured_on_test_samples(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the export report needs the export extras")
    from fwdlearn.export import export_onnx, load_deployable
    from fwdlearn.export.report import sparsity_on_test_data

    deployable = load_deployable(tiny_run)
    report = export_onnx(deployable, tmp_path / "model.onnx", "float")
    assert {"file", "format", "quantisation", "opset", "learner", "dataset", "inputs", "operators", "parameters",
            "model_bytes", "macs_per_inference", "readout_test_accuracy", "verification"} < set(report)
    sparsity = report["sparsity"]
    assert sparsity["measured"] and sparsity["inputs"] == "digits test split, 256 samples"
    assert [row["layer"] for row in sparsity["layers"]] == ["layer 1", "layer 2"]
    first, second = sparsity["layers"]
    assert first["dense_macs"] == 64 * 48 and second["dense_macs"] == 48 * 32
    assert first["input_sparsity"] > 0.2                        # the digits' blank background
    assert 0 < second["input_sparsity"] == first["activation_sparsity"] < 1     # triangle zeros, passed on
    for row in sparsity["layers"]:     # a standardised pixel is zero only where it equals its image's mean
        assert row["effective_macs"] < 0.99 * row["dense_macs"] <= row["effective_macs_as_graph"] <= row["dense_macs"]
    written = json.loads((tmp_path / "model.report.json").read_text())
    assert written["sparsity"]["total"] == pytest.approx(sparsity["total"])

    import fwdlearn.export.verify as verify

    def unreadable(*args):
        raise DataError("no data here")

    monkeypatch.setattr(verify, "_test_split", unreadable)
    assert sparsity_on_test_data(deployable) == {"measured": False,
                                                 "reason": "needs real samples: random (digits not readable here: "
                                                           "no data here)"}


def test_bench_measures_a_checkpoint_on_its_test_split(tiny_run, tmp_path, capsys):
    out = tmp_path / "sparsity.json"
    assert main(["bench", "--checkpoint", str(tiny_run), "--samples", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("tiny (scff-mlp) on digits test split, 50 of 360 samples")
    assert [line.split()[0] for line in printed[1:5]] == ["layer", "layer", "layer", "total"]   # header, 2 rows
    assert printed[2].startswith("layer 1") and printed[3].startswith("layer 2")
    document = json.loads(out.read_text())
    assert document["kind"] == "sparsity" and "NeuroBench" in document["definitions"]["source"]
    (model,) = document["models"]
    assert model["preset"] == "tiny" and model["samples"] == 50 and model["finished"]
    assert document["command"] == f"fwdlearn bench --checkpoint {tiny_run} --samples 50"
    assert main(["bench", "--samples", "5"]) == 2
    assert capsys.readouterr().err.strip() == "fwdlearn: error: --data-dir and --samples apply to --checkpoint only"


def test_benchmark_script_records_each_model_and_the_table(tiny_run, tmp_path):
    spec = importlib.util.spec_from_file_location("sparsity_benchmark", BENCHMARKS / "sparsity.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tiny_run.parent), "--samples", "40", "--results", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "sparsity.json").read_text())
    (model,) = document["models"]
    assert (model["preset"], model["dataset"], model["samples"]) == ("tiny", "digits", 40)
    assert len(model["layers"]) == 2 and model["total"]["dense_macs"] == 64 * 48 + 48 * 32
    readme = (tmp_path / "README.md").read_text()
    assert "| tiny | digits | 40 | layer 1 | folded |" in readme and "| tiny | digits | 40 | **total** |" in readme
    other = dict(model, checkpoint="elsewhere/checkpoint.pt", preset="other")
    document["models"].append(other)
    (tmp_path / "sparsity.json").write_text(json.dumps(document))
    assert script.main([str(tiny_run.parent), "--samples", "20", "--results", str(tmp_path), "--append"]) == 0
    models = json.loads((tmp_path / "sparsity.json").read_text())["models"]
    assert [(m["preset"], m["samples"]) for m in models] == [("other", 40), ("tiny", 20)]   # kept; replaced
    (tmp_path / "sparsity.json").write_text("{not json")
    assert script.main([str(tiny_run.parent), "--samples", "20", "--results", str(tmp_path), "--append"]) == 2
    assert (tmp_path / "sparsity.json").read_text() == "{not json"                         # left as it was
