"""SCFF on spoken digits: a bidirectional RNN trained without back-propagation through time.

    python examples/fsdd_birnn.py --data-dir ../shared/data          # the Free Spoken Digit Dataset
    python examples/fsdd_birnn.py                                    # embedded synthetic sequences

Reads the WAVs, trims their silent edges, turns them into 39 MFCCs per 12.5 ms frame (cached on disk),
trains both directions with their own per-step SCFF loss (Eq. 4, Table F.4), then reads the final
states out with a linear probe beside the same network with random weights.
"""

import argparse

from fwdlearn.data import load_dataset
from fwdlearn.eval.report import evaluate, summary_lines
from fwdlearn.presets import load_preset
from fwdlearn.registry import get_rule
from fwdlearn.rules.scff_rnn import SCFFRNNLearner
from fwdlearn.run import untrained_network

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", help="folder holding fsdd/recordings (omit for the synthetic task)")
parser.add_argument("--epochs", type=int, default=None, help="SCFF epochs (default: the preset's)")
args = parser.parse_args()

config = load_preset("fsdd-paper" if args.data_dir else "sequences")
if args.epochs is not None:
    config.layers[0].epochs = args.epochs
dataset = load_dataset(config.data.dataset, args.data_dir)
print(f"{dataset.name}: {len(dataset.train)} training / {len(dataset.test)} test sequences, "
      f"{dataset.num_features} features per step, up to {dataset.train.x.shape[1]} steps")

learner = SCFFRNNLearner(config, dataset.num_features)         # parameter groups "forward", "backward"
learner.train(dataset.train.x, dataset.train.lengths)          # hidden state detached between steps
for record in learner.history:                                 # one record per direction per epoch
    print(f"{record['group']:8s} epoch {record['epoch']}: loss {record['loss']:.4f}, "
          f"G+ {record['goodness_pos']:.3f}, G- {record['goodness_neg']:.3f}, {record['seconds']:.1f} s")

untrained = {"untrained": untrained_network(config, dataset.num_features)}
rule = get_rule(config.learner)
report = evaluate(rule, learner.network, untrained, dataset, config)
print("\n".join(summary_lines(report, rule.label)))
