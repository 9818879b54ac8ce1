"""SCFF on the embedded 8x8 digits through the Python API, in about 25 lines.

    python examples/scff_mlp_digits.py

Trains the two layers one after the other with their own local losses, then reads the frozen
network out with a linear probe, beside the same network untrained.
"""

from fwdlearn.data import load_dataset
from fwdlearn.eval.report import evaluate, summary_lines
from fwdlearn.presets import load_preset
from fwdlearn.registry import get_rule
from fwdlearn.rules.scff import SCFFLearner
from fwdlearn.run import untrained_network

config = load_preset("digits")
config.layers[0].epochs, config.layers[1].epochs = 20, 10      # a shorter run than the preset
dataset = load_dataset("digits")

learner = SCFFLearner(config, dataset.num_features)             # parameter groups "layer1", "layer2"
learner.train(dataset.train.x)                                  # layer 1, then layer 2 (frozen layer 1)
for record in learner.history[-3:]:
    print(f"{record['group']} epoch {record['epoch']}: loss {record['loss']:.3f}, "
          f"G+ {record['goodness_pos']:.2f}, G- {record['goodness_neg']:.2f}")

network = learner.network                                       # a plain nn.Module: state_dict, eval(), ...
untrained = {"untrained": untrained_network(config, dataset.num_features)}
rule = get_rule(config.learner)
report = evaluate(rule, network, untrained, dataset, config)
print("\n".join(summary_lines(report, rule.label)))
