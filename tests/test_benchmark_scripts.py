"""The benchmark scripts on the package as it is: ``make_table`` reads every recorded results file (the
layouts written before the one run path too), ``train_preset`` aggregates the seeds of any rule run by
``fwdlearn.run.train_run``, ``update_cost`` and ``conv_throughput`` run on the registry's names."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from test_cli_lac import tiny_lac

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import make_table  # noqa: E402


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=600)


def test_make_table_reads_every_recorded_results_file(tmp_path):
    recorded = sorted((BENCHMARKS / "results").glob("*.json"))
    assert recorded
    for path in recorded:
        shutil.copy(path, tmp_path)
    text = make_table.write_table(tmp_path).read_text()
    for path in recorded:
        document = json.loads(path.read_text())
        if document.get("kind") == "update-cost":
            for row in make_table._cost_rows(document):
                assert f"| {document['device']} | {row['rule']} | {row['depth']} | {row['width']} |" in text
        elif document.get("kind") == "epoch-vs-gemm":
            for row in document["rows"]:
                assert f"| {row['preset']} | {row['backend']} | {row['epoch_median']:.2f} |" in text
        elif document.get("kind") == "on-device-adaptation":
            for row in document["rows"]:
                assert f"| {row['speaker']} | {row['updates']} |" in text
        elif document.get("kind") == "sparsity":
            for model in document["models"]:
                assert f"| {model['preset']} | {model['dataset']} | {model['samples']} | **total** |" in text
        elif document.get("kind") == "export-check":
            for row in document["rows"]:
                for name in row["exports"]:
                    assert f"| {document['preset']} | {row['quantisation']} | {name} |" in text
        elif document.get("kind") == "hls4ml-agreement":
            for preset, model in document["models"].items():
                assert f"| {preset} | {model['quantisation']} | {model['same_class']} |" in text
        elif document.get("kind") == "validation-screen":
            for run in document["runs"]:
                assert f"| {document['experiment']} | {run['name']} |" in text
        elif document.get("kind") == "on-device-update-time":
            assert f"| {document['onnxruntime_median'] * 1e3:.1f} | {document['pytorch_fused_median'] * 1e3:.1f} |" in text
        else:
            assert f"| {document['experiment']} |" in text, path.name


OLD_LAC = {   # a LAC results file as train_preset.py wrote it before the one run path
    "experiment": "old-lac", "learner": "lac-mlp", "dataset": "mnist", "seeds": [0, 1], "device": "cpu, 2 threads",
    "metrics": {"linear_evaluation": {"test_accuracy": 0.8848, "test_accuracy_std": 0.00615},
                "fine_tuning": {"test_accuracy": 0.9838, "test_accuracy_std": 0.00026}, "test_accuracy": 0.8848},
    "baselines": {"no_pretraining": {"linear_evaluation": {"test_accuracy": 0.59963},
                                     "fine_tuning": {"test_accuracy": 0.984}},
                  "bp_autoencoder": {"linear_evaluation": {"test_accuracy": 0.94027},
                                     "fine_tuning": {"test_accuracy": 0.97057}}},
    "reconstruction_error": {"LAC": [0.2316, 0.0203, 0.0277], "BP autoencoder": [0.2316, 0.0077, 0.0045]},
    "timing": {"lac_seconds_per_epoch": 16.18, "bp_train_seconds": 71.2, "lac_train_seconds": 80.91},
}

NEW_LAC = {   # the same as the one run path and train_preset.py write it now
    "experiment": "new-lac", "learner": "lac-mlp", "dataset": "mnist", "seeds": [0], "device": "cpu, 2 threads",
    "metrics": {"test_accuracy": 0.9, "test_accuracy_std": 0.0, "layers": [1],
                "per_layer": {"layer1": {"test_accuracy": 0.9, "test_accuracy_std": 0.0}},
                "fine_tuning": {"test_accuracy": 0.98, "test_accuracy_std": 0.0}, "reconstruction_error": 0.0277},
    "baselines": {"untrained": {"test_accuracy": 0.6, "reconstruction_error": 0.2316,
                                "fine_tuning": {"test_accuracy": 0.97}},
                  "bp_autoencoder": {"test_accuracy": 0.94, "reconstruction_error": 0.0045,
                                     "fine_tuning": {"test_accuracy": 0.96}, "train_seconds": [71.2]},
                  "raw_inputs": {"test_accuracy": 0.92}},
    "timing": {"seconds_per_epoch": {"hidden": 16.2, "output": 16.2}, "train_seconds": [80.9],
               "probe_seconds": {"combined": 5.0}},
}


def test_make_table_shows_both_lac_layouts_with_both_protocols(tmp_path):
    (tmp_path / "old-lac.json").write_text(json.dumps(OLD_LAC))
    (tmp_path / "new-lac.json").write_text(json.dumps(NEW_LAC))
    lines = make_table.write_table(tmp_path).read_text().splitlines()
    expected = [
        "| old-lac | mnist | 2 | LAC | 88.48 % ± 0.61 | 98.38 % ± 0.03 | 0.2316 → 0.0277 | 81 |",
        "| old-lac | mnist | 2 | no pretraining | 59.96 % | 98.40 % |  |  |",
        "| old-lac | mnist | 2 | BP autoencoder | 94.03 % | 97.06 % | 0.2316 → 0.0045 | 71 |",
        "| new-lac | mnist | 1 | LAC | 90.00 % | 98.00 % | 0.2316 → 0.0277 | 81 |",
        "| new-lac | mnist | 1 | untrained network | 60.00 % | 97.00 % |  |  |",
        "| new-lac | mnist | 1 | BP autoencoder | 94.00 % | 96.00 % | 0.2316 → 0.0045 | 71 |",
        "| new-lac | mnist | 1 | raw inputs | 92.00 % | – |  |  |",
    ]
    for row in expected:
        assert any(line.startswith(row) for line in lines), row
    assert len([line for line in lines if line.startswith("| new-lac |")]) == 4


def test_train_preset_aggregates_the_seeds_of_a_lac_run(tmp_path):
    """Any rule, one run path: two seeds of a tiny LAC preset, aggregated as architecture.md's results format."""
    preset = tmp_path / "tiny-lac.toml"
    preset.write_text(tiny_lac("lac-mlp"))
    results, runs = tmp_path / "results", tmp_path / "runs"
    done = script("train_preset.py", "--preset", str(preset), "--seeds", "0", "1", "--threads", "1",
                  "--results", str(results), "--runs", str(runs))
    assert done.returncode == 0, done.stderr
    document = json.loads((results / "tiny-lac.json").read_text())
    seeds = [json.loads((runs / f"tiny-lac-seed{s}" / "results.json").read_text()) for s in (0, 1)]
    assert document["experiment"] == "tiny-lac" and document["learner"] == "lac-mlp"
    assert document["dataset"] == "digits" and document["seeds"] == [0, 1]
    assert document["command"].startswith("python benchmarks/train_preset.py") and document["device"]
    assert document["date"]

    def spread(values):
        return round(statistics.fmean(values), 5), round(statistics.stdev(values), 5)

    m = document["metrics"]
    assert (m["test_accuracy"], m["test_accuracy_std"]) == spread([r["metrics"]["test_accuracy"] for r in seeds])
    assert (m["fine_tuning"]["test_accuracy"], m["fine_tuning"]["test_accuracy_std"]) == \
        spread([r["metrics"]["fine_tuning"]["test_accuracy"] for r in seeds])
    assert (m["reconstruction_error"], m["reconstruction_error_std"]) == \
        spread([r["metrics"]["reconstruction_error"] for r in seeds])
    assert set(document["baselines"]) == {"untrained", "bp_autoencoder", "raw_inputs"}
    for name, entry in document["baselines"].items():
        assert (entry["test_accuracy"], entry["test_accuracy_std"]) == \
            spread([r["baselines"][name]["test_accuracy"] for r in seeds]), name
    assert document["baselines"]["bp_autoencoder"]["train_seconds"] == \
        [r["timing"]["bp_autoencoder_train_seconds"] for r in seeds]
    assert set(document["timing"]["seconds_per_epoch"]) == {"hidden", "output"}
    assert document["timing"]["train_seconds"] == [r["timing"]["train_seconds"] for r in seeds]
    assert [r["seed"] for r in document["runs"]] == [0, 1]
    figures = sorted(p.name for p in (results / "tiny-lac").iterdir())
    assert {"learning_curves.png", "probe_accuracy.png", "test_curves.png", "reconstructions_epoch_000.png",
            "reconstructions_epoch_002.png"} <= set(figures)
    assert "| tiny-lac | digits | 2 | LAC |" in (results / "README.md").read_text()


def test_update_cost_runs_the_registrys_rules_and_bp(tmp_path):
    done = script("update_cost.py", "--rules", "scff-mlp", "lac-mlp", "bp", "--batch", "8", "--depths", "2",
                  "--depth-width", "8", "--widths", "8", "--width-depth", "2", "--repeats", "2",
                  "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "update-cost-cpu.json").read_text())
    assert [r["rule"] for r in document["depth_sweep"]] == ["scff-mlp", "lac-mlp", "bp"]
    assert [r["rule"] for r in document["width_sweep"]] == ["scff-mlp", "lac-mlp", "bp"]
    for name in ("depth.png", "width.png"):
        assert (tmp_path / "update-cost-cpu" / name).stat().st_size > 1000
    assert "| scff-mlp | 2 | 8 | 8 |" in (tmp_path / "README.md").read_text()


def test_conv_throughput_measures_each_layer_of_a_convolutional_preset(tmp_path):
    out = tmp_path / "ct.json"
    done = script("conv_throughput.py", "--preset", "digits-conv", "--batches", "1", "--warmup", "0",
                  "--width-scale", "0.25", "--batch-size", "8", "--out", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert [(layer["layer"], layer["channels"]) for layer in document["layers"]] == [(1, 8), (2, 16)]
    assert all(layer["images_per_second"] > 0 and layer["memory"]["peak_allocated_bytes"] > 0
               for layer in document["layers"])
    refused = script("conv_throughput.py", "--preset", "digits", "--out", str(tmp_path / "no.json"))
    assert refused.returncode == 2 and "not a convolutional SCFF preset" in refused.stderr
    assert not (tmp_path / "no.json").exists()


def _record(experiment: str, learner: str, accuracy: float, config: dict, baselines: dict | None = None) -> dict:
    return {"experiment": experiment, "learner": learner, "dataset": "mnist", "seeds": [0, 1, 2], "device": "cpu",
            "metrics": {"test_accuracy": accuracy, "test_accuracy_std": 0.001, "layers": [1, 2], "per_layer": {}},
            "baselines": {"untrained": {"test_accuracy": 0.9}, **(baselines or {})},
            "timing": {"seconds_per_epoch": {"network": 12.5}, "train_seconds": [25.0, 27.0, 26.0]},
            "config": config}


def test_the_side_by_side_table_puts_each_method_beside_the_local_rule_of_its_encoder(tmp_path):
    """Each self-supervised record sits in the table of the local rule whose preset is its ``encoder``, with the
    untrained network, supervised BP and the update cost of the same layer sizes; other encoders' records do not."""
    layers = [{"width": 50, "epochs": 4}, {"width": 50, "epochs": 3}]
    local = _record("tiny-mlp", "scff-mlp", 0.95, {"layers": layers})
    simclr = _record("ssl-tiny-simclr", "ssl-mlp", 0.93, {"encoder": "tiny-mlp", "method": "simclr", "epochs": 2,
                                                           "bp": {"epochs": 1}},
                     {"bp": {"test_accuracy": 0.97, "train_seconds": [9.0, 11.0, 10.0]}})
    byol = _record("ssl-tiny-byol", "ssl-mlp", 0.91, {"encoder": "tiny-mlp", "method": "byol", "epochs": 2,
                                                       "bp": {"epochs": 0}})
    elsewhere = _record("ssl-other-vicreg", "ssl-mlp", 0.5, {"encoder": "other", "method": "vicreg", "epochs": 2,
                                                              "bp": {"epochs": 0}})
    cost_row = {"depth": 2, "width": 50, "batch": 100, "seconds": {"median": 0.004}, "memory": {"peak_bytes": 3e6},
                "energy_modelled": {"arithmetic_joules": {"fp32": 2e-3, "int8": 1e-4}}}
    costs = {"kind": "update-cost", "device": "cpu", "input_dim": 784,
             "rows": [{**cost_row, "rule": "scff-mlp"}, {**cost_row, "rule": "ssl-simclr", "seconds": {"median": 0.009}}]}
    text = make_table.side_by_side([local, simclr, byol, elsewhere], [costs])
    lines = text.splitlines()
    assert "### mnist, scff-mlp encoder 50-50 (`tiny-mlp`)" in lines
    assert "| untrained network | 50-50 | 3 | 90.00 % |" in text
    assert "| **SCFF** (local) | 50-50 | 3 | 95.00 % ± 0.10 | 12.5 | 4+3 | 26 | 4 | 3 | 2.00 / 0.100 |" in lines
    assert "| SimCLR (BP) | 50-50 | 3 | 93.00 % ± 0.10 | 12.5 | 2 | 26 | 9 | 3 | 2.00 / 0.100 |" in lines
    assert "| BYOL (BP) | 50-50 | 3 | 91.00 % ± 0.10 | 12.5 | 2 | 26 | | | |" in lines
    assert "| supervised BP (labels) | 50-50 | 3 | 97.00 % |  | 1 | 10 | | | |" in lines
    header = next(line for line in lines if line.startswith("| rule |"))
    assert all(line.count("|") == header.count("|") for line in lines if line.startswith("| "))
    assert text.index("SimCLR") < text.index("BYOL") and "VICReg" not in text


def test_epoch_vs_gemm_replays_exactly_the_products_of_the_epoch(tmp_path):
    """The floor is the epoch's own products: on the embedded digits (1,437 images, batches of 50, the last one
    of 37 kept, the paper's pairs: one view per image) a layer-1 epoch of 64 -> 128 runs one forward and one
    weight-gradient product over every image, 2 * 1437 * 64 * 128 MACs, whatever the backend."""
    result = script("epoch_vs_gemm.py", "--data-dir", str(tmp_path), "--presets", "digits", "--repeats", "1",
                    "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "epoch-vs-gemm-cpu.json").read_text())["rows"]
    assert [r["backend"] for r in rows] == ["fused", "torch"]
    for row in rows:
        assert row["floor_macs"] == 2 * 1437 * 64 * 128
        assert row["products"] == 2 * 29 and row["optimizer_steps"] == 29
        assert row["ratio"] == row["epoch_median"] / row["floor_median"] and row["ratio"] > 1
    table = make_table.epoch_table([json.loads((tmp_path / "epoch-vs-gemm-cpu.json").read_text())])
    assert "| digits | fused |" in table


def test_readme_blocks_are_replaced_between_their_own_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- one: start -->\nold\n<!-- one: end -->\nb\n<!-- two: start -->\nkept\n<!-- two: end -->\n")
    make_table.refresh_readme(readme, "new\n", "one")
    assert readme.read_text() == ("a\n<!-- one: start -->\nnew\n<!-- one: end -->\nb\n<!-- two: start -->\nkept\n"
                                  "<!-- two: end -->\n")


def test_make_table_shows_the_recurrent_export_time_against_its_limit(tmp_path):
    """``recurrent_export_time.py``'s layout (``kind: recurrent-export-time``): one row per exported format."""
    parity = {"runtime": "onnxruntime", "inputs": "fsdd test split, 64 samples", "samples": 64,
              "max_abs_difference": 0.0078125, "tolerance": 0.0078133, "output_step": 0.0078125,
              "differing_fraction": 0.0016, "same_class": "64/64"}
    rows = [{"format": name, "quantisation": label, "seconds": seconds, "cpu_seconds": seconds, "within_limit": True,
             "graph": {"nodes": 6346, "initialisers": 33, "initialiser_values": 550000, "bytes": 1746833,
                       "operators": {"Gemm": 367}},
             "parameters": 550014, "macs_per_inference": 98647000, "parity": parity}
            for name, label, seconds in (("float", "float", 9.5), ("qcdq", "w8, a8", 12.25))]
    document = {"kind": "recurrent-export-time", "experiment": "fsdd-paper Bi-RNN export, 183 frames",
                "preset": "fsdd-paper", "network": "39-500x2 (untrained, seed 0)", "frames": 183, "limit_seconds": 60.0,
                "rows": rows, "within_limit": True, "device": "cpu (x86_64), 2 threads", "cpus": 2,
                "load_average_before": [0.1, 0.2, 0.3], "command": "python benchmarks/recurrent_export_time.py"}
    (tmp_path / "recurrent-export-time.json").write_text(json.dumps(document))
    text = make_table.write_table(tmp_path).read_text()
    assert "| fsdd-paper Bi-RNN export, 183 frames | float (float) | 183 | **9.5** (60) |" in text
    assert "| fsdd-paper Bi-RNN export, 183 frames | qcdq (w8, a8) | 183 | **12.2** (60) |" in text


SHORT = '"layers.0.epochs" = 3, "layers.1.epochs" = 2, "probe.epochs" = 3'


def test_validation_screen_reuses_a_first_layer_exactly_and_skips_recorded_variants(tmp_path):
    both = tmp_path / "both.toml"
    both.write_text(f'[[variant]]\nname = "preset"\nset = {{ {SHORT} }}\n'
                    f'[[variant]]\nname = "layer 2 faster"\nset = {{ {SHORT}, "layers.1.lr" = 1e-2 }}\n'
                    f'[[variant]]\nname = "layer 1 alone"\nlayers = 1\nset = {{ {SHORT} }}\n'
                    f'[[variant]]\nname = "seed 1"\nseed = 1\nset = {{ {SHORT} }}\n')
    alone = tmp_path / "alone.toml"
    alone.write_text(f'[[variant]]\nname = "layer 2 faster"\nset = {{ {SHORT}, "layers.1.lr" = 1e-2 }}\n')
    shared, fresh = tmp_path / "shared.json", tmp_path / "fresh.json"
    for variants, out in ((both, shared), (alone, fresh)):
        done = script("validation_screen.py", "--preset", "digits", "--variants", str(variants), "--out", str(out))
        assert done.returncode == 0, done.stderr
    record = json.loads(shared.read_text())
    assert record["kind"] == "validation-screen" and "validation" in record["validation"]
    runs = {r["name"]: r for r in record["runs"]}
    assert set(runs["preset"]["probe"]) == {"1+2", "1", "2"} and set(runs["layer 1 alone"]["probe"]) == {"1"}
    # the second variant trained its layer 2 on the first variant's layer 1: the same as training it from scratch
    (reference,) = json.loads(fresh.read_text())["runs"]
    assert runs["layer 2 faster"]["last_epoch"] == reference["last_epoch"]
    assert runs["layer 2 faster"]["probe"] == reference["probe"]
    assert runs["layer 2 faster"]["last_epoch"]["layer2"] != runs["preset"]["last_epoch"]["layer2"]
    assert runs["seed 1"]["last_epoch"]["layer1"] != runs["preset"]["last_epoch"]["layer1"]   # not shared
    again = script("validation_screen.py", "--preset", "digits", "--variants", str(both), "--out", str(shared))
    assert again.returncode == 0 and json.loads(shared.read_text()) == record
    assert f"| {record['experiment']} | layer 2 faster |" in make_table.write_table(tmp_path).read_text()


def test_validation_screen_refuses_a_bad_variant_in_one_line_before_training(tmp_path):
    cases = {'[[variant]]\nname = "typo"\nset = { "layers.0.thetaneg" = 8.0 }\n': "no value layers.0.thetaneg",
             '[[variant]]\nname = "bad value"\nset = { "layers.0.lr" = -1.0 }\n': "lr must be > 0",
             '[[variant]]\nname = "deep"\nlayers = 3\n': "layers must lie in 1..2",
             '[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n': "names repeat",
             '[[variant]]\nset = {}\n': "with names"}
    for text, message in cases.items():
        variants, out = tmp_path / "variants.toml", tmp_path / "screen.json"
        variants.write_text(text)
        done = script("validation_screen.py", "--preset", "digits", "--variants", str(variants), "--out", str(out))
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
        assert not out.exists()
