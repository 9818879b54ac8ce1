"""fwdlearn: forward-only, layer-local learning for neuromorphic and low-power hardware.

Every layer owns its objective and its optimiser; only detached activations cross a layer
boundary. See ``fwdlearn.learners.scff_mlp`` for the Self-Contrastive Forward-Forward
learner (Chen et al., SCFF) read against the paper's Algorithms 1 and 2.
"""

from .errors import CheckpointError, ConfigError, DataError, FwdlearnError

__version__ = "0.1.0"
__all__ = ["FwdlearnError", "DataError", "ConfigError", "CheckpointError", "__version__"]
