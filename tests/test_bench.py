"""``fwdlearn bench``: operation counts by role against closed forms, the energy model against its
table, tensor-memory peaks against known allocations, and the depth behaviour of each rule."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_cli import assert_one_line_error, fwdlearn

from fwdlearn.bench import build_update, measure_update
from fwdlearn.bench.memory import peak_tensor_bytes
from fwdlearn.errors import ConfigError
from fwdlearn.hardware.energy import PICOJOULES, mac_picojoules, modelled_energy
from fwdlearn.hardware.update_ops import count_update_macs
from fwdlearn.registry import rules

LOCAL_BENCH_RULES = [name for name, rule in rules().items() if rule.bench is not None and rule.local]


def _bp_step(network: nn.Module, x: torch.Tensor, labels: torch.Tensor):
    def step():
        network.zero_grad(set_to_none=True)
        F.cross_entropy(network(x).flatten(1), labels).backward()
    return step


def test_dense_back_propagation_macs_match_closed_forms():
    dims, batch = [30, 20, 12, 5], 7
    network = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 12), nn.ReLU(), nn.Linear(12, 5))
    x, labels = torch.randn(batch, 30), torch.randint(0, 5, (batch,))
    macs = count_update_macs(_bp_step(network, x, labels), network.parameters())
    products = [batch * a * b for a, b in zip(dims, dims[1:])]
    assert macs["forward"] == sum(products)
    assert macs["weight_gradient"] == sum(products)
    assert macs["input_gradient"] == sum(products[1:])       # nothing is sent below the first layer
    assert macs["total"] == 3 * sum(products) - products[0]


def test_convolution_macs_match_closed_forms():
    batch = 3
    network = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2),
                            nn.AdaptiveAvgPool2d(1))
    x, labels = torch.randn(batch, 2, 9, 9), torch.randint(0, 6, (batch,))
    macs = count_update_macs(_bp_step(network, x, labels), network.parameters())
    first = batch * 4 * 9 * 9 * (2 * 3 * 3)                   # outputs x (in channels x kernel)
    second = batch * 6 * 4 * 4 * (4 * 3 * 3)                  # 9x9 -> 4x4 at stride 2
    assert macs["forward"] == first + second
    assert macs["weight_gradient"] == first + second
    assert macs["input_gradient"] == second


def test_recurrent_macs_through_time_match_closed_forms():
    """An Elman step unrolled over T steps, trained by BPTT: the state gradient crosses T-1 steps."""
    steps, batch, features, hidden = 5, 4, 3, 6
    w_in, w_rec = nn.Linear(features, hidden, bias=False), nn.Linear(hidden, hidden)
    x = torch.randn(batch, steps, features)

    def step():
        h = torch.zeros(batch, hidden)
        for t in range(steps):
            h = torch.tanh(w_in(x[:, t]) + w_rec(h))
        h.square().sum().backward()

    macs = count_update_macs(step, [*w_in.parameters(), *w_rec.parameters()])
    per_step = batch * (features * hidden + hidden * hidden)
    assert macs["forward"] == steps * per_step
    assert macs["weight_gradient"] == steps * per_step
    assert macs["input_gradient"] == (steps - 1) * batch * hidden * hidden   # h_0 is a constant


def test_bench_rules_are_the_registrys_benchable_rules_and_bp():
    from fwdlearn.bench.updates import RULES, bench_rules, builders

    assert {"scff-mlp", "lac-mlp"} <= set(LOCAL_BENCH_RULES)
    assert list(builders()) == list(bench_rules()) == list(RULES)
    assert list(RULES) == [name for name, rule in rules().items() if rule.bench is not None] + ["bp"]
    for old in ("scff", "lac"):                                 # the names before the registry are gone
        with pytest.raises(ConfigError, match="rule must be one of"):
            build_update(old, [4], batch=4)


@pytest.mark.parametrize("rule", LOCAL_BENCH_RULES)
def test_local_rules_send_no_error_to_another_layer(rule):
    update = build_update(rule, [16, 12, 8], batch=6, input_dim=20)
    macs = count_update_macs(update.step, update.parameters)
    assert macs["forward"] > 0 and macs["weight_gradient"] > 0
    assert macs["input_gradient"] == 0
    bp = build_update("bp", [16, 12, 8], batch=6, input_dim=20)
    assert count_update_macs(bp.step, bp.parameters)["input_gradient"] > 0


def test_modelled_energy_traces_to_the_table():
    macs, peak = 1_000_000, 4096
    energy = modelled_energy(macs, peak)
    fp32 = PICOJOULES["multiply"]["fp32"] + PICOJOULES["add"]["fp32"]
    int8 = PICOJOULES["multiply"]["int8"] + PICOJOULES["add"]["int32"]
    assert energy["arithmetic_joules"]["fp32"] == pytest.approx(macs * fp32 * 1e-12)
    assert energy["arithmetic_joules"]["int8"] == pytest.approx(macs * int8 * 1e-12)
    accesses = 2 * peak / 8
    assert energy["dram_joules"]["low"] == pytest.approx(accesses * PICOJOULES["dram_access_64bit"]["low"] * 1e-12)
    assert energy["dram_joules"]["high"] == pytest.approx(accesses * PICOJOULES["dram_access_64bit"]["high"] * 1e-12)
    assert energy["kind"] == "modelled"
    with pytest.raises(ValueError, match="precision"):
        mac_picojoules("fp8")


def test_cpu_peak_sees_the_tensors_a_call_allocates():
    def allocate():
        a = torch.ones(1_000_000)            # 4 MB
        b = torch.ones(2_000_000)            # 8 MB: 12 MB live
        del a
        c = torch.ones(500_000)              # 10 MB live
        return float(b[0] + c[0])

    peak = peak_tensor_bytes(allocate, torch.device("cpu"))
    assert 12_000_000 <= peak < 12_100_000


def test_local_update_memory_follows_the_widest_layer_and_bp_grows_with_depth():
    """Tensor memory allocated by one update (above what persists): a deterministic count, not a timing."""
    def allocated(rule, depth):
        return measure_update(rule, depth, width=64, batch=256, input_dim=64, repeats=2, warmup=1
                              ).memory["peak_above_resident_bytes"]

    scff = [allocated("scff-mlp", d) for d in (2, 6)]
    bp = [allocated("bp", d) for d in (2, 6)]
    assert scff[1] <= 1.1 * scff[0]
    assert bp[1] >= 1.5 * bp[0]


def test_bench_command_writes_json_a_script_can_read(tmp_path):
    out = tmp_path / "cost.json"
    result = fwdlearn("bench", "--rules", "scff-mlp", "bp", "--depth", "2", "--width", "16", "--batch", "8",
                      "--input-dim", "12", "--repeats", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert [(r["rule"], r["depth"], r["width"]) for r in document["rows"]] == [("scff-mlp", 2, 16), ("bp", 2, 16)]
    row = document["rows"][0]
    assert row["seconds"]["kind"] == "measured" and row["seconds"]["median"] > 0
    assert row["memory"]["kind"] == "measured" and row["memory"]["peak_bytes"] > row["memory"]["resident_bytes"]
    assert row["macs"]["kind"] == "counted" and row["energy_modelled"]["kind"] == "modelled"
    assert row["energy_measured"]["available"] or row["energy_measured"]["reason"]
    assert "scff-mlp" in result.stdout and "bp" in result.stdout


@pytest.mark.parametrize("options, message", [
    (["--rules", "hebb"], "unknown rule(s) hebb"),
    (["--batch", "1"], "--batch must be >= 2"),
    (["--device", "tpu"], "--device"),
])
def test_bench_refuses_bad_options_in_one_line(tmp_path, options, message):
    out = tmp_path / "cost.json"
    result = fwdlearn("bench", "--depth", "2", "--width", "8", "--repeats", "2", *options, "--out", str(out))
    assert_one_line_error(result, message)
    assert not out.exists()


def test_bench_on_cuda_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = fwdlearn("bench", "--device", "cuda", "--depth", "2", "--width", "8")
    assert_one_line_error(result, "no CUDA device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_update_cost_is_measured_on_the_gpu():
    cost = measure_update("scff-mlp", 2, 64, batch=32, input_dim=32, repeats=3, device="cuda")
    assert cost.memory["method"] == "CUDA allocator peak" and cost.memory["peak_above_resident_bytes"] > 0


def test_invalid_update_shapes_are_refused():
    with pytest.raises(ConfigError, match="widths"):
        build_update("bp", [], batch=4)
    with pytest.raises(ConfigError, match="rule"):
        build_update("hebbian", [4], batch=4)
