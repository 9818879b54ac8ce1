"""The rule registry: everything that lists rules is derived from it, and each rule's declaration is usable."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from fwdlearn.cli import build_parser, main
from fwdlearn.errors import ConfigError
from fwdlearn.presets import load_preset, preset_names
from fwdlearn.registry import default_preset, get_rule, rules

RULES = list(rules())


def test_rules_are_found_in_their_files():
    """The shipped rules are discovered (none listed by hand), each from the module that defines its learner."""
    found = rules()
    assert {"scff-mlp", "scff-cnn", "scff-rnn", "lac-mlp", "lac-conv", "ff"} <= set(found)
    for name, rule in found.items():
        assert rule.name == name
        assert rule.learner.__module__.startswith("fwdlearn.rules.")


@pytest.mark.parametrize("name", RULES)
def test_every_default_preset_exists_and_is_for_its_rule(name):
    rule = get_rule(name)
    assert None in rule.presets
    for dataset, preset in rule.presets.items():
        assert preset in preset_names()
        config = load_preset(preset)
        assert config.learner == name and isinstance(config, rule.config)
        if dataset is not None:
            assert config.data.dataset == dataset
    assert default_preset(name, None) == rule.presets[None]
    assert default_preset(name, "no-such-dataset") == rule.presets[None]


def test_every_shipped_preset_names_a_registered_rule():
    assert {load_preset(p).learner for p in preset_names()} <= set(RULES)


@pytest.mark.parametrize("name", RULES)
def test_every_rule_states_what_its_exported_graph_contains(name):
    rule = get_rule(name)
    assert len(rule.in_graph) > 20 and rule.summary and rule.label
    assert rule.devices and "cpu" in rule.devices


def test_cli_choices_and_help_come_from_the_registry(capsys):
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "learner")
    assert list(train.choices) == RULES
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = "".join(capsys.readouterr().out.split())   # argparse wraps lines (and at hyphens)
    for name, rule in rules().items():
        assert "".join(f"{name}: {rule.summary}".split()) in text


def test_an_unknown_learner_is_refused_in_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nlearner = "no-such-rule"\nlayers = []\n')
    with pytest.raises(ConfigError, match=r"learner must be one of .*scff-mlp.*got 'no-such-rule'"):
        load_preset(str(path))


@pytest.mark.parametrize("name", [n for n, r in rules().items() if not r.quantisable])
def test_a_rule_without_quantised_layers_refuses_quantisation(name):
    from fwdlearn.presets import check_for_rule

    config = tiny_config(name)
    check_for_rule(config)                 # control: the float config passes
    config.quant.weight_bits = 4
    with pytest.raises(ConfigError, match=f"{name} has no quantised layers"):
        check_for_rule(config)


@pytest.mark.parametrize("name", [n for n, r in rules().items() if "cuda" not in r.devices])
def test_a_cpu_only_rule_refuses_cuda_in_one_line(name):
    from fwdlearn.run import check_train_device

    with pytest.raises(ConfigError):
        check_train_device(get_rule(name), "cuda")
