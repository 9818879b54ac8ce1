"""Back-propagation self-supervised baselines' losses (issue 18), as pure functions on embeddings.

Each file is one method and cites its paper's equation; none holds state. The building blocks the
methods share (projection/prediction heads, momentum target update, memory queue) live in ``fwdlearn.nn``.
"""

from .barlow_twins import barlow_twins_loss
from .byol import byol_loss
from .cosine import negative_cosine
from .moco import infonce_loss
from .sce import sce_loss
from .simclr import nt_xent_loss
from .simsiam import simsiam_loss
from .vicreg import vicreg_loss

__all__ = ["nt_xent_loss", "infonce_loss", "byol_loss", "simsiam_loss", "negative_cosine", "barlow_twins_loss",
           "vicreg_loss", "sce_loss"]
