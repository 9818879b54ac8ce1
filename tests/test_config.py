"""Run configurations: shipped presets, field-by-field validation of TOML files, dict round trips.

The ``mnist-paper`` expectations are typed in from the SCFF paper (Chen et al., Table F.5),
not read from the preset file. Invalid configurations are written as TOML into ``tmp_path``
by a small emitter below, starting from a configuration the test first checks is valid.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from fwdlearn.config import SCFFConfig
from fwdlearn.errors import ConfigError, FwdlearnError
from fwdlearn.presets import config_from_dict, load_preset, preset_names
from fwdlearn.registry import rules

PRESETS_DIR = Path(__file__).resolve().parents[1] / "fwdlearn" / "presets"
HAVE_DIGITS_PRESET = (PRESETS_DIR / "digits.toml").is_file()
needs_digits_preset = pytest.mark.skipif(not HAVE_DIGITS_PRESET, reason="digits preset not yet written")


# --------------------------------------------------------------------------------------------
# a minimal TOML emitter (the standard library only reads TOML)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not (isinstance(v, float) and math.isnan(v)) else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def to_toml(d: dict) -> str:
    """Top-level scalars, then ``[table]``s, then ``[[array-of-tables]]`` (non-empty lists of dicts, whose
    own tables are written as ``[array.table]``)."""
    lines, tables, arrays = [], [], []
    for key, value in d.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{key}]]"] + [f"{k} = {_toml_value(v)}" for k, v in item.items()
                                           if not isinstance(v, dict)]
            for sub, table in ((k, v) for k, v in item.items() if isinstance(v, dict)):   # e.g. [layers.conv]
                lines += [f"[{key}.{sub}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def base_config() -> dict:
    """A small valid configuration with two layers."""
    return {
        "name": "unit",
        "learner": "scff-mlp",
        "seed": 3,
        "batch_size": 10,
        "schedule": "sequential",
        "data": {"dataset": "digits", "translate": 1},
        "probe": {"epochs": 2, "batch_size": 8, "lr": 0.01, "dropout": 0.1, "halve_at": [0.5], "layers": [1, 2]},
        "layers": [
            {"width": 8, "lr": 0.01, "theta_pos": 4.0, "theta_neg": 6.0, "penalty": 1e-4, "epochs": 2},
            {"width": 6, "lr": 0.02, "theta_pos": 1.0, "theta_neg": 1.0, "lr_decay": 0.5, "algorithm": 2,
             "activation": "relu"},
        ],
    }


def write_config(tmp_path: Path, d: dict, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(to_toml(d))
    return path


def assert_config_error(excinfo, path: Path | str, field: str | None = None) -> str:
    """One-line ``ConfigError`` naming the file and, outside of the file name, the field path."""
    assert isinstance(excinfo.value, ConfigError) and isinstance(excinfo.value, FwdlearnError)
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    if field is not None:
        assert field in message.replace(str(path), "<file>"), f"{field!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------------------------
# shipped presets


def test_mnist_paper_matches_table_f5():
    """``mnist-paper`` carries the SCFF paper's MNIST MLP hyper-parameters (Table F.5)."""
    cfg = load_preset("mnist-paper")
    assert isinstance(cfg, SCFFConfig)
    assert cfg.data.dataset == "mnist"
    assert [layer.width for layer in cfg.layers] == [2000, 2000]
    l1, l2 = cfg.layers
    assert l1.lr == pytest.approx(3e-3)
    assert (l1.theta_pos, l1.theta_neg) == (4, 6)
    assert l1.penalty == pytest.approx(1e-4)
    assert l1.weight_decay == pytest.approx(1e-5)
    assert l1.lr_decay == pytest.approx(0.9)
    assert l1.epochs == 20
    assert l2.lr == pytest.approx(2e-3)
    assert (l2.theta_pos, l2.theta_neg) == (1, 1)
    assert l2.penalty == 0
    assert l2.weight_decay == pytest.approx(1e-5)
    assert l2.lr_decay == pytest.approx(0.6)
    assert l2.epochs == 20


def test_preset_names_lists_shipped_presets():
    """``preset_names`` lists every ``*.toml`` in the presets folder."""
    on_disk = sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
    assert "mnist-paper" in on_disk
    assert preset_names() == on_disk


@needs_digits_preset
def test_digits_preset_loads():
    """The ``digits`` preset loads, validates and uses the embedded digits data set."""
    cfg = load_preset("digits")
    assert cfg.data.dataset == "digits"
    assert len(cfg.layers) >= 1
    assert all(layer.width >= 1 and layer.lr > 0 for layer in cfg.layers)


def test_load_preset_by_path():
    """A preset can also be loaded by its file path, giving the same configuration as by name."""
    assert load_preset(str(PRESETS_DIR / "mnist-paper.toml")) == load_preset("mnist-paper")


# --------------------------------------------------------------------------------------------
# invalid values


def test_base_config_is_valid(tmp_path):
    """The starting point of the invalid-value tests is itself valid, and loads as written."""
    cfg = load_preset(str(write_config(tmp_path, base_config())))
    assert cfg.name == "unit" and cfg.batch_size == 10 and cfg.seed == 3
    assert [layer.width for layer in cfg.layers] == [8, 6]
    assert cfg.layers[1].algorithm == 2 and cfg.layers[1].activation == "relu"
    assert cfg.layers[1].lr_decay == 0.5
    assert cfg.probe.layers == [1, 2] and cfg.data.translate == 1


def _set(*keys_and_value):
    """A mutation that sets ``d[k1][k2]... = value``."""
    *keys, value = keys_and_value

    def mutate(d):
        target = d
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return mutate


def _delete(*keys):
    def mutate(d):
        target = d
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return mutate


INVALID = [
    ("negative-lr", _set("layers", 0, "lr", -0.1), "layers[0].lr"),
    ("zero-lr", _set("layers", 1, "lr", 0.0), "layers[1].lr"),
    ("nan-lr", _set("layers", 0, "lr", float("nan")), "layers[0].lr"),
    ("lr-decay-0", _set("layers", 0, "lr_decay", 0.0), "layers[0].lr_decay"),
    ("lr-decay-above-1", _set("layers", 1, "lr_decay", 1.5), "layers[1].lr_decay"),
    ("algorithm-3", _set("layers", 1, "algorithm", 3), "layers[1].algorithm"),
    ("activation-tanh", _set("layers", 0, "activation", "tanh"), "layers[0].activation"),
    ("width-0", _set("layers", 0, "width", 0), "layers[0].width"),
    ("negative-penalty", _set("layers", 0, "penalty", -1.0), "layers[0].penalty"),
    ("negative-weight-decay", _set("layers", 1, "weight_decay", -1e-5), "layers[1].weight_decay"),
    ("negative-epochs", _set("layers", 0, "epochs", -1), "layers[0].epochs"),
    ("batch-size-1", _set("batch_size", 1), "batch_size"),
    ("unknown-schedule", _set("schedule", "parallel"), "schedule"),
    ("unknown-backend", _set("backend", "cuda"), "backend"),
    ("unknown-learner", _set("learner", "backprop"), "learner"),
    ("missing-learner", _delete("learner"), "learner"),
    ("unknown-top-key", _set("learning_rate", 0.1), "learning_rate"),
    ("unknown-layer-key", _set("layers", 0, "colour", "red"), "layers[0]"),
    ("unknown-probe-key", _set("probe", "momentum", 0.9), "probe"),
    ("missing-width", _delete("layers", 1, "width"), "layers[1]"),
    ("missing-name", _delete("name"), "name"),
    ("string-for-number", _set("layers", 0, "lr", "0.01"), "layers[0].lr"),
    ("string-for-int", _set("seed", "3"), "seed"),
    ("bool-for-int", _set("layers", 0, "epochs", True), "layers[0].epochs"),
    ("bool-for-top-int", _set("batch_size", True), "batch_size"),
    ("bool-for-float", _set("layers", 0, "theta_pos", True), "layers[0].theta_pos"),
    ("float-for-int", _set("layers", 0, "width", 8.5), "layers[0].width"),
    ("number-for-string", _set("layers", 0, "activation", 1), "layers[0].activation"),
    ("probe-layer-5-of-2", _set("probe", "layers", [1, 5]), "probe.layers"),
    ("probe-layer-0", _set("probe", "layers", [0]), "probe.layers"),
    ("dropout-1", _set("probe", "dropout", 1.0), "probe.dropout"),
    ("negative-dropout", _set("probe", "dropout", -0.1), "probe.dropout"),
    ("probe-batch-0", _set("probe", "batch_size", 0), "probe.batch_size"),
    ("halve-at-outside", _set("probe", "halve_at", [0.5, 1.5]), "probe.halve_at"),
    ("unknown-dataset", _set("data", "dataset", "cifar"), "data.dataset"),
    ("negative-translate", _set("data", "translate", -1), "data.translate"),
    ("no-layers", _set("layers", []), "layers"),
    ("data-not-a-table", _set("data", "digits"), "data"),
]


@pytest.mark.parametrize("mutate, field", [pytest.param(m, f, id=i) for i, m, f in INVALID])
def test_invalid_value_is_one_line_config_error(tmp_path, mutate, field):
    """Each invalid value raises a one-line ConfigError naming the file and the offending field."""
    d = base_config()
    mutate(d)
    path = write_config(tmp_path, d)
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    assert_config_error(excinfo, path, field)


def test_unknown_and_missing_key_are_named(tmp_path):
    """Unknown and missing keys are named by their own name, not only by their table."""
    d = base_config()
    d["layers"][0]["colour"] = "red"
    path = write_config(tmp_path, d, "a.toml")
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    assert_config_error(excinfo, path, "colour")

    d = base_config()
    del d["layers"][1]["width"]
    path = write_config(tmp_path, d, "b.toml")
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    assert_config_error(excinfo, path, "width")


def test_probe_layers_error_names_bad_layer(tmp_path):
    """Asking the probe for layer 5 of a 2-layer network names 5 and the valid range."""
    d = base_config()
    d["probe"]["layers"] = [1, 5]
    path = write_config(tmp_path, d)
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    message = assert_config_error(excinfo, path, "probe.layers")
    assert "5" in message.replace(str(path), "") and "2" in message.replace(str(path), "")


def test_integers_accepted_for_floats(tmp_path):
    """TOML integers are fine where a float is expected (``theta_pos = 4``) and become floats."""
    d = base_config()
    d["layers"][0]["theta_pos"] = 4
    d["layers"][0]["lr"] = 1
    cfg = load_preset(str(write_config(tmp_path, d)))
    assert cfg.layers[0].theta_pos == 4.0 and isinstance(cfg.layers[0].theta_pos, float)
    assert isinstance(cfg.layers[0].lr, float)


def test_invalid_toml_syntax(tmp_path):
    """A file that is not TOML is a one-line ConfigError naming it."""
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[[layers]\nwidth = = 3\n')
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    assert_config_error(excinfo, path)


def test_unknown_preset_name():
    """An unknown preset name is named, and the shipped presets are listed."""
    with pytest.raises(ConfigError) as excinfo:
        load_preset("no-such-preset")
    message = assert_config_error(excinfo, "no-such-preset")
    assert "mnist-paper" in message


def test_nonexistent_toml_path(tmp_path):
    """A ``.toml`` path that does not exist is a ConfigError naming it (not FileNotFoundError)."""
    path = tmp_path / "missing" / "run.toml"
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    assert_config_error(excinfo, path)


# --------------------------------------------------------------------------------------------
# round trips


def _round_trip_cases():
    cases = ["mnist-paper"] + (["digits"] if HAVE_DIGITS_PRESET else [])
    return cases


@pytest.mark.parametrize("name", _round_trip_cases())
def test_preset_round_trips_through_dict_and_json(name):
    """``config_from_dict(cfg.to_dict())`` rebuilds an equal config, also after a JSON round trip."""
    cfg = load_preset(name)
    d = cfg.to_dict()
    assert config_from_dict(d) == cfg
    assert config_from_dict(json.loads(json.dumps(d))) == cfg


def test_custom_config_round_trips(tmp_path):
    """A config with non-default values everywhere round-trips, and a changed value does not compare equal."""
    cfg = load_preset(str(write_config(tmp_path, base_config())))
    d = cfg.to_dict()
    back = config_from_dict(copy.deepcopy(d))
    assert back == cfg
    assert back.layers[1].activation == "relu" and back.probe.halve_at == [0.5]
    d["layers"][0]["lr"] = 0.5
    assert config_from_dict(d) != cfg


def test_config_from_dict_validates():
    """``config_from_dict`` validates too: an invalid value raises a ConfigError naming the field."""
    d = load_preset("mnist-paper").to_dict()
    d["layers"][1]["lr_decay"] = 2.0
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(d, where="checkpoint")
    assert_config_error(excinfo, "checkpoint", "layers[1].lr_decay")


# --------------------------------------------------------------------------------------------
# the checks each rule adds (presets.check_for_rule -> Learner.check_config), on loading a file


CONV = {"kernel": 3, "padding": 1, "pool": "max", "pool_size": 2, "pool_stride": 2}


def _rnn(d):
    d.update(learner="scff-rnn", data={"dataset": "sequences"}, probe={"epochs": 2, "layers": [1]})
    d["layers"] = d["layers"][:1]


def _cnn(d):
    d["learner"] = "scff-cnn"
    for layer in d["layers"]:
        layer["conv"] = dict(CONV)


def _lac(d, learner="lac-mlp"):
    d.clear()
    d.update(name="unit-lac", learner=learner, batch_size=16, epochs=1, encoder_layers=1,
             hidden=[8, 4, 8] if learner == "lac-conv" else [16, 8], data={"dataset": "digits"},
             probe={"epochs": 2}, finetune={"epochs": 0}, bp={"epochs": 0})


def _then(*mutations):
    def mutate(d):
        for m in mutations:
            m(d)
    return mutate


RULE_BASES = [("scff-mlp", lambda d: None), ("scff-rnn", _rnn), ("scff-cnn", _cnn), ("lac-mlp", _lac),
              ("lac-conv", lambda d: _lac(d, "lac-conv"))]


@pytest.mark.parametrize("learner, make", RULE_BASES, ids=[name for name, _ in RULE_BASES])
def test_each_rules_base_config_is_valid(tmp_path, learner, make):
    """The starting points of the rule-specific tests below load, each into its rule's config class."""
    d = base_config()
    make(d)
    cfg = load_preset(str(write_config(tmp_path, d)))
    assert cfg.learner == learner and isinstance(cfg, rules()[learner].config)


RULE_INVALID = [
    ("rnn-two-layers", _then(_rnn, lambda d: d["layers"].append(dict(d["layers"][0]))), "layers",
     "trains one bidirectional layer"),
    ("rnn-on-images", _then(_rnn, _set("data", "dataset", "digits")), "data.dataset", "does not suit"),
    ("rnn-with-bp", _then(_rnn, _set("bp", {"epochs": 2})), "bp", "scff-mlp only"),
    ("rnn-with-conv", _then(_rnn, lambda d: d["layers"][0].update(conv=dict(CONV))), "layers[0].conv",
     "scff-cnn only"),
    ("mlp-with-conv", lambda d: d["layers"][1].update(conv=dict(CONV)), "layers[1].conv", "scff-cnn only"),
    ("mlp-with-bptt", _set("bptt", {"epochs": 1}), "bptt", "scff-rnn only"),
    ("mlp-on-sequences", _set("data", {"dataset": "sequences"}), "data.dataset", "use scff-rnn"),
    ("cnn-layer-without-conv", _then(_cnn, lambda d: d["layers"][1].pop("conv")), "layers[1].conv.kernel",
     "scff-cnn"),
    ("cnn-with-bp", _then(_cnn, _set("bp", {"epochs": 1})), "bp", "no end-to-end baseline"),
    ("lac-conv-two-convolutions", _then(lambda d: _lac(d, "lac-conv"), _set("hidden", [8, 8])), "hidden",
     "three convolutions"),
    ("lac-probe-layer-2", _then(_lac, _set("probe", {"epochs": 2, "layers": [2]})), "probe.layers", "1"),
    ("lac-on-sequences", _then(_lac, _set("data", {"dataset": "sequences"})), "data.dataset", "take images"),
    ("lac-has-no-layers", _then(_lac, _set("layers", [{"width": 8}])), "layers", "unknown key"),
    ("lac-old-downstream-table", _then(_lac, _set("downstream", {"linear_epochs": 3})), "downstream",
     "unknown key"),
]


@pytest.mark.parametrize("mutate, field, words", [pytest.param(m, f, w, id=i) for i, m, f, w in RULE_INVALID])
def test_rule_specific_value_is_one_line_config_error(tmp_path, mutate, field, words):
    """What one rule cannot do is refused when its preset loads, in one line naming the file, the field and why."""
    d = base_config()
    mutate(d)
    path = write_config(tmp_path, d)
    with pytest.raises(ConfigError) as excinfo:
        load_preset(str(path))
    assert words in assert_config_error(excinfo, path, field)


def test_config_from_dict_runs_the_rules_own_checks():
    """A checkpoint's config is checked by its rule too, not only by the checks every rule shares."""
    d = load_preset("sequences").to_dict()
    d["layers"].append(copy.deepcopy(d["layers"][0]))
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(d, where="checkpoint")
    assert "one bidirectional layer" in assert_config_error(excinfo, "checkpoint", "layers")


def test_every_shipped_preset_loads_into_its_rules_config():
    """Each shipped preset names a registered rule and loads into that rule's config; each rule's default
    presets are shipped and are presets of that rule."""
    for name in preset_names():
        cfg = load_preset(name)
        assert isinstance(cfg, rules()[cfg.learner].config), name
        assert cfg.name == name
    for rule_name, rule in rules().items():
        assert None in rule.presets
        for preset in rule.presets.values():
            assert preset in preset_names() and load_preset(preset).learner == rule_name, (rule_name, preset)
