"""Back-propagation baselines on the same networks as the local learners."""

from .bp_autoencoder import train_bp_autoencoder
from .bptt import train_bptt
from .supervised import train_supervised

__all__ = ["train_bptt", "train_bp_autoencoder", "train_supervised"]
