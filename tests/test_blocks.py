"""Every registered rule's blocks against the declared local-block interface (``fwdlearn.nn.blocks``)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from fwdlearn.data import load_dataset
from fwdlearn.nn.blocks import LocalBlock, PairedBlock
from fwdlearn.registry import rules


def blocks_of(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks a goodness-based rule stacks: ``network.layers`` when its members declare the interface."""
    layers = getattr(network, "layers", None)
    return [b for b in layers if isinstance(b, LocalBlock)] if layers is not None else []


BLOCK_RULES = [n for n, r in rules().items()
               if blocks_of(r.learner.build_network(tiny_config(n), r.learner.network_input(
                   load_dataset(tiny_config(n).data.dataset))))]


def test_scff_and_ff_declare_their_blocks():
    assert {"scff-mlp", "scff-cnn", "ff"} <= set(BLOCK_RULES)


def test_a_module_without_the_interface_is_not_a_local_block():
    assert not isinstance(torch.nn.Linear(2, 2), LocalBlock)


@pytest.mark.parametrize("name", BLOCK_RULES)
def test_each_block_computes_from_its_own_detached_input_only(name):
    """Through the whole stack, each block's goodness reaches its own parameters only; ``goodness`` gives one
    value (or map) per sample, ``passed`` keeps the batch, ``tap`` gives ``[N, features]``."""
    rule = rules()[name]
    config = tiny_config(name)
    dataset = load_dataset(config.data.dataset)
    network = rule.learner.build_network(config, rule.learner.network_input(dataset))
    h = dataset.train.x[:6]
    if hasattr(network, "num_classes"):        # a rule that feeds labelled inputs (FF): its neutral input
        from fwdlearn.objectives.ff import overlay_neutral
        h = overlay_neutral(h, network.num_classes)
    blocks = blocks_of(network)
    for i, block in enumerate(blocks):
        z = block(h.detach())
        g = block.goodness(z)
        assert g.shape[0] == 6 and torch.isfinite(g).all()
        for p in network.parameters():
            p.grad = None
        g.sum().backward()
        own = {id(p) for p in block.parameters()}
        reached = {id(p) for p in network.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert reached and reached <= own, f"{name} block {i}"
        passed = block.passed(z.detach())
        assert passed.shape[0] == 6 and block.tap(passed).dim() == 2
        h = passed
    if isinstance(blocks[0], PairedBlock):     # SCFF: a pair's projections combine into the positive form
        views = dataset.train.x[:4]
        rows = torch.arange(4)
        projections = blocks[0].project(views)
        assert torch.allclose(blocks[0].combine(projections, rows, rows), blocks[0](views), atol=1e-5)
