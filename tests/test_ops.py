"""MAC counts from real layer shapes (hardware/ops.py) against closed forms."""

from __future__ import annotations

import torch
import torch.nn as nn

from fwdlearn.hardware.ops import count_macs, count_parameters
from fwdlearn.nn.local_birnn import LocalBiRNN
from fwdlearn.nn.scff_network import SCFFNetwork


def test_dense_layers():
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    macs = count_macs(model, torch.rand(3, 784))
    assert macs == {"Linear": 3 * (784 * 300 + 300 * 10), "total": 3 * (784 * 300 + 300 * 10)}


def test_convolution_and_transposed_convolution():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)             # 3x32x32 -> 8x16x16
    assert count_macs(conv, torch.rand(2, 3, 32, 32))["total"] == 2 * 8 * 16 * 16 * 3 * 3 * 3
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)         # 2 input channels per group
    assert count_macs(grouped, torch.rand(1, 8, 10, 10))["total"] == 8 * 10 * 10 * 2 * 3 * 3
    deconv = nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1)   # every input through the kernel
    assert count_macs(deconv, torch.rand(1, 8, 7, 7))["total"] == 8 * 7 * 7 * 1 * 3 * 3


def test_recurrent_layer_counts_every_step_of_both_directions():
    n, steps, features, hidden = 2, 6, 39, 16
    net = LocalBiRNN(features, hidden)
    macs = count_macs(net, torch.randn(n, steps, features), torch.full((n,), steps))
    per_direction = n * steps * features * hidden + steps * n * hidden * hidden
    assert macs["total"] == 2 * per_direction


def test_scff_network_and_parameters():
    net = SCFFNetwork(64, [20, 12], algorithms=[1, 1], activations=["triangle", "triangle"])
    assert count_macs(net, torch.rand(4, 1, 8, 8))["total"] == 4 * (64 * 20 + 20 * 12)
    assert count_parameters(net) == 64 * 20 + 20 + 20 * 12 + 12
