"""``fwdlearn bench``: operation counts by role against closed forms, the energy model against its
table, tensor-memory peaks against known allocations, and the depth behaviour of each rule."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_cli import assert_one_line_error, fwdlearn

from fwdlearn.baselines.self_supervised import METHODS
from fwdlearn.bench import build_update, measure_update
from fwdlearn.bench.memory import peak_tensor_bytes
from fwdlearn.errors import ConfigError
from fwdlearn.hardware.energy import mac_picojoules, modelled_energy
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
    assert list(RULES) == [name for rule in rules().values() for name in rule.benches] + ["bp"]
    assert {f"ssl-{method}" for method in METHODS} <= set(RULES)     # every self-supervised method (issue 18)
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


# Views whose online branch the loss back-propagates: both, except MoCo v2 and SCE (query view 1 against the key
# of view 2: He et al. 2020, Algorithm 1; SCE: "we do not symmetrize the loss by default", Denize et al. 2023).
BACKPROPAGATED_VIEWS = {"simclr": 2, "moco": 1, "byol": 2, "simsiam": 2, "barlow_twins": 2, "vicreg": 2, "sce": 1}


@pytest.mark.parametrize("method", list(BACKPROPAGATED_VIEWS))
def test_self_supervised_updates_carry_the_error_through_every_encoder_layer(method):
    """The opposite of locality: counting only the encoder's weights as parameters, the products that carry an
    error down through them are exactly ``grad_out W`` of layers 3 and 2, for each back-propagated view."""
    widths, batch, input_dim = [16, 12, 8], 6, 20
    update = build_update(f"ssl-{method}", widths, batch=batch, input_dim=input_dim)
    shapes = {(16, 20), (12, 16), (8, 12), (16,), (12,), (8,)}
    encoder = [p for p in update.parameters if tuple(p.shape) in shapes]
    assert len(encoder) == 6 and len(update.parameters) > 6          # the heads are trained (and counted) too
    macs = count_update_macs(update.step, encoder)
    assert macs["input_gradient"] == BACKPROPAGATED_VIEWS[method] * batch * (16 * 12 + 12 * 8)


# Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V), written out here, not read from
# hardware/energy.py: fp32 multiply 3.7 pJ + fp32 add 0.9 pJ; int8 multiply 0.2 pJ + int32 add 0.1 pJ;
# DRAM 1.3-2.6 nJ per 64-bit access.
FP32_MAC_PJ = 4.6
INT8_MAC_PJ = 0.3
DRAM_PJ = {"low": 1300.0, "high": 2600.0}


def test_modelled_energy_matches_the_horowitz_figures():
    """A million MACs and 4096 bytes written once and read back once (1024 64-bit accesses), by hand:
    4.6 uJ at fp32, 0.3 uJ at int8, 1.3312 uJ / 2.6624 uJ of DRAM traffic."""
    energy = modelled_energy(1_000_000, 4096)
    assert energy["kind"] == "modelled" and "Horowitz" in energy["source"]
    assert mac_picojoules("fp32") == pytest.approx(FP32_MAC_PJ)
    assert mac_picojoules("int8") == pytest.approx(INT8_MAC_PJ)
    assert energy["arithmetic_joules"]["fp32"] == pytest.approx(4.6e-6)
    assert energy["arithmetic_joules"]["int8"] == pytest.approx(3.0e-7)
    assert energy["dram_joules"]["low"] == pytest.approx(1.3312e-6)
    assert energy["dram_joules"]["high"] == pytest.approx(2.6624e-6)
    with pytest.raises(ValueError, match="precision"):
        mac_picojoules("fp8")


def test_bench_energy_of_a_hand_counted_update():
    """``bp`` on 12 inputs, two hidden layers of 16, the 10-class head, batch 8, counted by hand:
    forward 8*(12*16 + 16*16 + 16*10) = 4864 MACs, weight gradients 4864, input gradients 8*(16*16 + 16*10)
    = 3328 (none below the first layer): 13056 MACs, so 13056 * 4.6 pJ = 60.0576 nJ at fp32 and
    13056 * 0.3 pJ = 3.9168 nJ at int8; DRAM: the measured peak, written and read once, 64 bits at a time."""
    cost = measure_update("bp", 2, 16, batch=8, input_dim=12, repeats=2, warmup=1)
    assert (cost.macs["forward"], cost.macs["weight_gradient"], cost.macs["input_gradient"]) == (4864, 4864, 3328)
    assert cost.macs["total"] == 13056
    assert cost.energy_modelled["arithmetic_joules"]["fp32"] == pytest.approx(60.0576e-9)
    assert cost.energy_modelled["arithmetic_joules"]["int8"] == pytest.approx(3.9168e-9)
    accesses = 2 * cost.memory["peak_bytes"] / 8
    assert cost.memory["peak_bytes"] > 0
    for level, picojoules in DRAM_PJ.items():
        assert cost.energy_modelled["dram_joules"][level] == pytest.approx(accesses * picojoules * 1e-12)


def test_cpu_peak_sees_the_tensors_a_call_allocates():
    def allocate():
        a = torch.ones(1_000_000)            # 4 MB
        b = torch.ones(2_000_000)            # 8 MB: 12 MB live
        del a
        c = torch.ones(500_000)              # 10 MB live
        return float(b[0] + c[0])

    peak = peak_tensor_bytes(allocate, torch.device("cpu"))
    assert 12_000_000 <= peak < 12_100_000


def test_update_memory_with_depth_is_what_the_readme_says():
    """Tensor memory allocated by one update (above what persists): a deterministic count, not a timing.
    An SCFF or FF update holds nothing of the other layers, so it follows the widest layer; LAC's first-pass
    reactions wait for the second pass, so its update grows with depth (less since one layer's graph is held at a
    time), as back-propagation's does (README, first paragraph)."""
    def growth(rule):
        shallow, deep = (measure_update(rule, depth, width=64, batch=256, input_dim=64, repeats=2, warmup=1
                                        ).memory["peak_above_resident_bytes"] for depth in (2, 6))
        return deep / shallow

    assert growth("scff-mlp") <= 1.1 and growth("ff") <= 1.1
    assert growth("lac-mlp") >= 1.2 and growth("bp") >= 1.5


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
    measured = row["energy_measured"]
    assert measured["kind"] == "measured" and isinstance(measured["available"], bool)
    if measured["available"]:       # a counter was read: its name and a per-update figure, no excuse
        assert measured["reason"] == "" and measured["counter"] and measured["joules_per_update"] >= 0
    else:                           # none: the reason, and no number pretending to be measured
        assert measured["reason"].strip() and "joules_per_update" not in measured and "counter" not in measured
    assert "scff-mlp" in result.stdout and "bp" in result.stdout


def test_rapl_meter_reads_package_counters_or_says_why_not(tmp_path, monkeypatch):
    """The CPU meter sums the package counters (microjoules) and ignores their sub-zones; with no counter, or
    an unreadable one, it returns no meter and a reason naming the folder or the problem."""
    from fwdlearn.bench import energy_meters

    monkeypatch.setattr(energy_meters, "RAPL_ROOT", tmp_path)
    meter, reason = energy_meters.energy_meter(torch.device("cpu"))
    assert meter is None and reason == f"no RAPL counter under {tmp_path}"
    for zone, microjoules in (("intel-rapl:0", "2500000"), ("intel-rapl:1", "1500000"), ("intel-rapl:0:0", "999")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "energy_uj").write_text(microjoules + "\n")
    meter, reason = energy_meters.energy_meter(torch.device("cpu"))
    assert reason == "" and meter.read() == pytest.approx(4.0) and "2 package(s)" in meter.name
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("not a number")
    meter, reason = energy_meters.energy_meter(torch.device("cpu"))
    assert meter is None and reason.startswith("RAPL counter not readable")


def test_measured_energy_is_the_counters_difference_per_update(monkeypatch):
    """With a counter, the row holds its name and (after - before) / repeats; without one, only the reason."""
    import fwdlearn.bench.measure as measure
    from fwdlearn.bench.energy_meters import EnergyMeter

    readings = iter([100.0, 106.0])
    counter = EnergyMeter("test counter", lambda: next(readings))
    monkeypatch.setattr(measure, "energy_meter", lambda device: (counter, ""))
    cost = measure_update("scff-mlp", 1, 8, batch=4, input_dim=6, repeats=3, warmup=0)
    assert cost.energy_measured == {"kind": "measured", "available": True, "reason": "", "counter": "test counter",
                                    "joules_per_update": pytest.approx(2.0)}
    monkeypatch.setattr(measure, "energy_meter", lambda device: (None, "no counter here"))
    cost = measure_update("scff-mlp", 1, 8, batch=4, input_dim=6, repeats=3, warmup=0)
    assert cost.energy_measured == {"kind": "measured", "available": False, "reason": "no counter here"}


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
