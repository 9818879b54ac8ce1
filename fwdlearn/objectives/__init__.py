"""Every rule's objective as pure tensor functions, each citing its paper's equations.

``scff``: SCFF's pairs and layer loss; ``lac``: LAC's activity contrast; ``ff``: Forward-Forward.
Nothing here knows about learners, runs, the command line or the config schema.
"""

from .goodness import goodness
from .scff import PairBatch, SCFFLossTerms, carry_pairs, data_pairs, pair_examples, random_shift, repair, scff_loss

__all__ = ["goodness", "scff_loss", "SCFFLossTerms", "PairBatch", "data_pairs", "carry_pairs", "repair",
           "random_shift", "pair_examples"]
