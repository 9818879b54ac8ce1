"""Learners own the schedule (which layer learns when, on what); the maths lives in objectives/."""

from .pairs import PairBatch, carry_pairs, data_pairs, repair
from .scff_conv_network import SCFFConvNetwork
from .scff_layer import SCFFLayerTrainer
from .scff_mlp import EpochRecord, SCFFMLPLearner
from .scff_network import SCFFNetwork
from .scff_rnn import SCFFRNNLearner

LEARNERS = {"scff-mlp": SCFFMLPLearner, "scff-rnn": SCFFRNNLearner, "scff-cnn": SCFFMLPLearner}

__all__ = ["PairBatch", "data_pairs", "carry_pairs", "repair", "SCFFLayerTrainer", "SCFFMLPLearner",
           "SCFFNetwork", "SCFFConvNetwork", "EpochRecord", "SCFFRNNLearner", "LEARNERS"]
