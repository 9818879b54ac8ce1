"""The FSDD validation sweep (benchmarks/fsdd_sweep.py): its split never mixes held-out and fitted
recordings, its unpadded feature file restores the padded tensors, and its trials are stable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fsdd_sweep  # noqa: E402


def test_validation_split_restores_padding_and_holds_out_the_same_recordings():
    g = torch.Generator().manual_seed(0)
    n = fsdd_sweep.N_VALIDATION + 40
    lengths = torch.randint(3, 12, (n,), generator=g)
    padded = torch.randn(n, 11, 39, generator=g) * (torch.arange(11)[None, :, None] < lengths[:, None, None])
    valid = torch.arange(11)[None, :] < lengths[:, None]
    y = torch.arange(n)                      # labels name the recordings
    blob = {"frames": padded[valid], "y": y, "lengths": lengths, "takes": torch.arange(n) % 45 + 5}
    fit, val = fsdd_sweep.validation_split(blob)
    assert len(val) == fsdd_sweep.N_VALIDATION and len(fit) == 40
    assert not set(fit.y.tolist()) & set(val.y.tolist())
    for split in (fit, val):
        steps = split.x.shape[1]
        assert steps == int(split.lengths.max())
        torch.testing.assert_close(split.x, padded[split.y, :steps])
    again, _ = fsdd_sweep.validation_split(blob)
    assert torch.equal(again.y, fit.y)


def test_take_holdout_validates_on_takes_5_to_9_only():
    n = 600
    lengths = torch.full((n,), 4)
    takes = torch.arange(n) % 45 + 5
    blob = {"frames": torch.randn(4 * n, 39), "y": torch.arange(n), "lengths": lengths, "takes": takes}
    fit, val = fsdd_sweep.validation_split(blob, "takes")
    held = set(((takes >= 5) & (takes <= 9)).nonzero()[:, 0].tolist())
    assert set(val.y.tolist()) == held
    assert not set(fit.y.tolist()) & set(val.y.tolist()) and len(fit) + len(val) == n


def test_trials_start_with_the_preset_and_draw_distinct_settings_from_the_space():
    trials = fsdd_sweep.draw_trials(12, seed=0)
    assert trials[0] == {} and len(trials) == 12
    keys = {tuple(sorted(t.items())) for t in trials[1:]}
    assert len(keys) == 11
    for trial in trials[1:]:
        assert set(trial) == set(fsdd_sweep.SPACE)
        assert all(value in fsdd_sweep.SPACE[name] for name, value in trial.items())
    assert fsdd_sweep.draw_trials(12, seed=0) == trials and fsdd_sweep.draw_trials(12, seed=1) != trials


def test_resume_skips_only_jobs_done_on_the_same_holdout_and_features(tmp_path):
    out = tmp_path / "sweep.jsonl"
    out.write_text('{"settings": {}, "seed": 0}\n{"settings": {"lr": 0.0001}, "seed": 1, "holdout": "takes"}\n'
                   '{"settings": {}, "seed": 2, "holdout": "takes", "features": "trim0.pt"}\n')
    assert fsdd_sweep.done_jobs(out, "random") == {("{}", 0)}
    assert fsdd_sweep.done_jobs(out, "takes", "trim0.pt") == {('{"lr": 0.0001}', 1), ("{}", 2)}
    assert fsdd_sweep.done_jobs(out, "takes", "trim20.pt") == {('{"lr": 0.0001}', 1)}   # older records: any
    assert fsdd_sweep.done_jobs(tmp_path / "none.jsonl", "random") == set()


def test_a_job_trains_the_preset_with_its_trial_settings_and_records_what_resume_reads(tmp_path, monkeypatch):
    """One (trial, seed) job end to end on a small blob of sequences: the fsdd-paper preset with the trial's
    settings applied trains, the held-out recordings are probed, and the record it returns is one that
    ``done_jobs`` recognises (so a resumed sweep skips it)."""
    g = torch.Generator().manual_seed(1)
    n = 40
    lengths = torch.randint(3, 8, (n,), generator=g)
    frames = torch.randn(int(lengths.sum()), 39, generator=g)
    blob = {"frames": frames, "y": torch.arange(n) % 10, "lengths": lengths, "takes": torch.arange(n) % 45 + 5}
    for key, value in {"split": fsdd_sweep.validation_split(blob, "takes"), "holdout": "takes",
                       "features": "blob.pt", "device": "cpu"}.items():
        monkeypatch.setitem(fsdd_sweep._STATE, key, value)
    import fwdlearn.presets
    loaded, load_preset = [], fwdlearn.presets.load_preset

    def short_probe(name):                          # the preset as it is, but a 2-epoch probe: a fast test
        loaded.append(name)
        config = load_preset(name)
        config.probe.epochs = 2
        return config

    monkeypatch.setattr(fwdlearn.presets, "load_preset", short_probe)
    trial = {"epochs": 1, "lr": 1e-4, "negatives": 2}
    record = fsdd_sweep.run_job((3, trial, 7))
    assert loaded == ["fsdd-paper"]
    assert record["trial"] == 3 and record["settings"] == trial and record["seed"] == 7
    assert 0 <= record["val_accuracy"] <= 100 and 0 <= record["fit_accuracy"] <= 100
    assert record["train_seconds"] <= record["total_seconds"]
    sink = tmp_path / "sweep.jsonl"
    sink.write_text(json.dumps(record) + "\n")
    assert fsdd_sweep.done_jobs(sink, "takes", "blob.pt") == {(json.dumps(trial, sort_keys=True), 7)}
