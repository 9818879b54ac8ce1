"""LAC: Local Activity Contrast autoencoders (methods.md section 2) and their down-stream protocols."""

from .config import DownstreamConfig, LACConfig
from .learner import LACLearner
from .network import ConvAutoencoder, MLPAutoencoder, build_autoencoder

__all__ = ["LACConfig", "DownstreamConfig", "LACLearner", "MLPAutoencoder", "ConvAutoencoder", "build_autoencoder"]
