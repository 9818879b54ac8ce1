"""Two random views of a batch, for the back-propagation self-supervised baselines (issue 18).

``ImageViews(recipe, image_shape, mean, std)(x, generator)`` gives two views of ``[N, C, H, W]`` images
(recipes ``simclr``, ``byol``, ``sce``, kornia operations, scaled to 8x8, 28x28 and 32x32);
``SequenceViews(settings)(x, lengths, generator)`` two views of zero-padded ``[N, T, F]`` MFCC
sequences (time crop, SpecAugment time and frequency masks, noise). Every random number comes
from the ``torch.Generator`` passed in.
"""

from .images import RECIPES, ImageViews, ViewSettings, recipe_settings
from .sequences import SequenceSettings, SequenceViews

__all__ = ["RECIPES", "ImageViews", "ViewSettings", "recipe_settings", "SequenceSettings", "SequenceViews"]
