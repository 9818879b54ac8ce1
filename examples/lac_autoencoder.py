"""LAC: an autoencoder trained by two forward passes and local activity contrasts, no back-propagation.

    python examples/lac_autoencoder.py                                   # embedded 8x8 digits
    python examples/lac_autoencoder.py --data-dir ../shared/data         # MNIST, LAC paper Table 1
    python examples/lac_autoencoder.py --target flip                     # learn the mirror image

Pass 1 reads the image, pass 2 reads its reconstruction; every hidden layer pulls its pass-2
reaction towards its pass-1 reaction (Eq. 1), the output layer alone learns the reconstruction.
Then the encoder is read out by a linear classifier (frozen) and fine-tuned.
"""

import argparse

from fwdlearn.config import load_preset
from fwdlearn.data import load_dataset
from fwdlearn.lac import LACLearner
from fwdlearn.lac.downstream import downstream
from fwdlearn.plots import plot_reconstructions

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", help="folder holding mnist/ (omit for the embedded digits)")
parser.add_argument("--target", choices=["reconstruct", "flip"], default="reconstruct")
parser.add_argument("--epochs", type=int, default=None, help="LAC epochs (default: the preset's)")
args = parser.parse_args()

config = load_preset("lac-mnist" if args.data_dir else "lac-digits")
config.target = args.target
if args.epochs is not None:
    config.epochs = args.epochs
dataset = load_dataset(config.data.dataset, args.data_dir)
learner = LACLearner(config, dataset.sample_shape)
learner.train(dataset.train.x, dataset.test.x)
print(f"test reconstruction error (MSE per pixel): {learner.initial_test_error:.4f} before, "
      + ", ".join(f"{r.test_reconstruction_error:.4f}" for r in learner.history))
learner.network.eval()
images = dataset.test.x[:10]
print("reconstructions:", plot_reconstructions(images, learner.network(images).detach(), "lac_reconstructions.png"))
result = downstream(learner.network, dataset, config.downstream, config.seed)
print(f"linear evaluation {100 * result['linear_evaluation']['test_accuracy']:.2f} %, "
      f"fine-tuning {100 * result['fine_tuning']['test_accuracy']:.2f} %")
