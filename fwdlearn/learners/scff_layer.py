"""Everything that can change one SCFF layer's weights: its loss, optimiser and schedule.

The layer sees a ``PairBatch`` of detached inputs, computes its positive and negative
pre-activations, the goodness of their ReLU (Eq. 1; a map over positions for a conv layer), the
thresholded loss with the penalty (``scff_loss``) and takes one AdamW step. The learning rate decays by ``lr_decay`` per epoch
(exponential schedule, Tables F.2-F.5).
"""

from __future__ import annotations

import torch

from ..config import LayerConfig
from ..nn.paired_conv import PairedConv2d
from ..nn.paired_linear import PairedLinear
from ..objectives import SCFFLossTerms, scff_loss
from .pairs import PairBatch


class SCFFLayerTrainer:
    """One layer with its own optimiser; it never sees another layer's parameters."""

    def __init__(self, layer: PairedLinear | PairedConv2d, config: LayerConfig):
        self.layer = layer
        self.config = config
        self.optimizer = torch.optim.AdamW(layer.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           fused=True)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_decay)

    def preactivations(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative pre-activations; each distinct view is projected once."""
        projections = self.layer.project(batch.views)
        return (self.layer.combine(projections, batch.pos_left, batch.pos_right),
                self.layer.combine(projections, batch.neg_left, batch.neg_right))

    def update(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor, SCFFLossTerms]:
        """One local step. Returns the detached pre-activations (for the next layer) and the loss terms."""
        if batch.views.requires_grad:
            raise RuntimeError("a local layer's input must be detached from the layers before it")
        z_pos, z_neg = self.preactivations(batch)
        terms = scff_loss(self.layer.goodness(z_pos), self.layer.goodness(z_neg),
                          self.config.theta_pos, self.config.theta_neg, self.config.penalty)
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)   # applied: no layer keeps a gradient while the next one learns
        return z_pos.detach(), z_neg.detach(), terms

    def end_epoch(self) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
