"""LAC: an autoencoder trained by two forward passes and local activity contrasts, no back-propagation.

    python examples/lac_autoencoder.py                                   # embedded 8x8 digits
    python examples/lac_autoencoder.py --data-dir ../shared/data         # MNIST, LAC paper Table 1
    python examples/lac_autoencoder.py --target flip                     # learn the mirror image

Pass 1 reads the image, pass 2 reads its reconstruction; every hidden layer pulls its pass-2
reaction towards its pass-1 reaction (Eq. 1), the output layer alone learns the reconstruction.
Then the encoder is read out by the linear probe every rule shares (frozen) and fine-tuned.
"""

import argparse

from fwdlearn.data import load_dataset
from fwdlearn.eval.report import evaluate
from fwdlearn.plots import plot_reconstructions
from fwdlearn.presets import load_preset
from fwdlearn.registry import get_rule

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", help="folder holding mnist/ (omit for the embedded digits)")
parser.add_argument("--target", choices=["reconstruct", "flip"], default="reconstruct")
parser.add_argument("--epochs", type=int, default=None, help="LAC epochs (default: the preset's)")
parser.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning epochs (default: the preset's)")
args = parser.parse_args()

config = load_preset("lac-mnist" if args.data_dir else "lac-digits")
config.target = args.target
if args.epochs is not None:
    config.epochs = args.epochs
if args.finetune_epochs is not None:
    config.finetune.epochs = args.finetune_epochs
dataset = load_dataset(config.data.dataset, args.data_dir)
rule = get_rule(config.learner)
learner = rule.learner(config, dataset.sample_shape)           # parameter groups "hidden" and "output"
learner.monitor(dataset.test.x)                                # test reconstruction error after every epoch
learner.train(dataset.train.x)
before, *after = learner.reconstruction_curve()
print(f"test reconstruction error (MSE per pixel): {before:.4f} before, " + ", ".join(f"{e:.4f}" for e in after))
learner.network.eval()
images = dataset.test.x[:10]
print("reconstructions:", plot_reconstructions(images, learner.network(images).detach(), "lac_reconstructions.png"))

metrics = evaluate(rule, learner.network, {}, dataset, config, raw_inputs=False)["metrics"]   # probe, fine-tuning
tuned = metrics.get("fine_tuning")                              # absent with --finetune-epochs 0
print(f"linear probe {100 * metrics['test_accuracy']:.2f} %"
      + (f", fine-tuning {100 * tuned['test_accuracy']:.2f} %" if tuned else ""))
