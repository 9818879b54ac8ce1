"""The one learner loop, run for every registered rule: resume is exact, stages follow the schedule,
the checkpoint layout is versioned."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import _dataset, tiny_config

from fwdlearn.checkpoint import VERSION, load_checkpoint, save_checkpoint
from fwdlearn.errors import CheckpointError
from fwdlearn.registry import get_rule, rules

RULES = list(rules())


def _set_epochs(config, epochs: int) -> None:
    """Every epoch count a rule's own groups read (layers' or the rule's), generically."""
    layers = getattr(config, "layers", None)
    if layers and hasattr(layers[0], "epochs"):
        for layer in layers:
            layer.epochs = epochs
    else:
        config.epochs = epochs


def _learner_and_data(name: str, epochs: int = 2, n: int = 40):
    rule = get_rule(name)
    config = tiny_config(name)
    _set_epochs(config, epochs)
    dataset = _dataset(config.data.dataset)
    x, lengths, y = rule.learner.train_inputs(dataset)
    data = (x[:n], None if lengths is None else lengths[:n], None if y is None else y[:n])
    return (lambda: rule.learner(config, rule.learner.network_input(dataset))), data, config


def _weights(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.network.state_dict().values()]


@pytest.mark.parametrize("name", RULES)
def test_a_resumed_run_equals_an_uninterrupted_one(name, tmp_path):
    """Stop after the first epoch, save a checkpoint, load it into a fresh learner, finish: bit-identical to
    training straight through (the generator, every group's optimiser and schedule are in the state)."""
    make, (x, lengths, y), config = _learner_and_data(name)
    straight = make()
    straight.train(x, lengths, y, show_progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(learner):
        save_checkpoint(tmp_path / "checkpoint.pt", config, learner.input_dim, learner.state_dict(), learner.finished)
        raise Stop

    first = make()
    with pytest.raises(Stop):
        first.train(x, lengths, y, on_epoch_end=stop_after_first, show_progress=False)
    resumed = make()
    resumed.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt")["state"])
    assert resumed.completed_epochs == 1 and not resumed.finished
    resumed.train(x, lengths, y, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(_weights(straight), _weights(resumed)))
    assert [r["epoch"] for r in resumed.history] == [r["epoch"] for r in straight.history]
    interrupted = make()                 # control: a learner that did not load the state differs
    interrupted.train(x[:20], None if lengths is None else lengths[:20], None if y is None else y[:20],
                      show_progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(_weights(straight), _weights(interrupted)))


@pytest.mark.parametrize("name", RULES)
def test_history_has_one_record_per_group_and_epoch_and_learning_happens(name):
    """Each group's training statistics are recorded every epoch it trains, and its parameters change."""
    make, (x, lengths, y), _ = _learner_and_data(name)
    learner = make()
    before = {g: [p.detach().clone() for p in group.parameters] for g, group in learner.groups.items()}
    learner.train(x, lengths, y, show_progress=False)
    assert learner.finished and learner.completed_epochs == learner.total_epochs
    for g, group in learner.groups.items():
        records = [r for r in learner.history if r["group"] == g]
        assert [r["epoch"] for r in records] == list(range(1, group.epochs + 1))
        assert all(isinstance(v, float) for r in records for k, v in r.items() if k not in ("group", "epoch"))
        assert any(not torch.equal(a, p) for a, p in zip(before[g], group.parameters)), g


def test_sequential_stages_train_one_layer_after_the_other():
    make, (x, lengths, y), config = _learner_and_data("scff-mlp")
    assert config.schedule == "sequential"
    learner = make()
    learner.train(x, lengths, y, show_progress=False)
    assert [(r["group"], r["epoch"]) for r in learner.history] == [("layer1", 1), ("layer1", 2),
                                                                    ("layer2", 1), ("layer2", 2)]


def test_a_checkpoint_of_another_version_is_refused_in_one_line(tmp_path):
    make, _, config = _learner_and_data("scff-mlp")
    learner = make()
    path = save_checkpoint(tmp_path / "checkpoint.pt", config, learner.input_dim, learner.state_dict(), False)
    assert load_checkpoint(path)["version"] == VERSION            # control: this version loads
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"checkpoint version 1 is not supported .*reads version {VERSION}"):
        load_checkpoint(path)


def test_state_of_another_configuration_is_refused():
    make, _, config = _learner_and_data("scff-mlp")
    state = make().state_dict()
    other = dataclasses.replace(config, layers=config.layers[:1])
    rule = get_rule("scff-mlp")
    learner = rule.learner(other, 64)
    with pytest.raises(CheckpointError, match="does not match"):
        learner.load_state_dict(state)
