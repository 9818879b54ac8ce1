"""Back-propagation baselines: the same networks as the local learners, trained end to end."""

from .bptt import train_bptt

__all__ = ["train_bptt"]
