"""The linear probe: learns what is linearly decodable, nothing more; its compiled epochs equal PyTorch's Adam."""

from __future__ import annotations

import torch

from fwdlearn.config import ProbeConfig
from fwdlearn.eval.linear_probe import train_linear_probe
from fwdlearn.kernels import ProbeEpochRunner, probe_gradients


def _blobs(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, d, generator=g), y


def test_probe_separates_separable_classes():
    x, y = _blobs(600, 20, 4, seed=0)
    x_test, y_test = _blobs(300, 20, 4, seed=1)
    result = train_linear_probe(x, y, x_test, y_test, ProbeConfig(epochs=20, lr=1e-2, dropout=0.1), 4,
                                show_progress=False)
    assert result.test_accuracy > 0.97 and result.num_features == 20


def test_probe_cannot_generalise_random_labels():
    x, _ = _blobs(600, 20, 4, seed=0)
    x_test, _ = _blobs(2000, 20, 4, seed=1)
    noise = torch.Generator().manual_seed(5)
    y, y_test = torch.randint(0, 4, (600,), generator=noise), torch.randint(0, 4, (2000,), generator=noise)
    result = train_linear_probe(x, y, x_test, y_test, ProbeConfig(epochs=20, lr=1e-2), 4, show_progress=False)
    assert 0.15 < result.test_accuracy < 0.35      # chance is 0.25


def test_probe_is_reproducible_for_a_seed():
    x, y = _blobs(300, 12, 3, seed=0)
    first = train_linear_probe(x, y, x, y, ProbeConfig(epochs=2), 3, seed=4, show_progress=False)
    second = train_linear_probe(x, y, x, y, ProbeConfig(epochs=2), 3, seed=4, show_progress=False)
    assert first.train_accuracy == second.train_accuracy


def test_compiled_epoch_equals_gradients_plus_torch_adam():
    torch.manual_seed(0)
    x, y = torch.randn(300, 33), torch.randint(0, 5, (300,))
    weight, bias = torch.randn(5, 33) * 0.1, torch.zeros(5)
    order, seeds = torch.randperm(300), torch.randint(0, 2**32, (10,))
    runner = ProbeEpochRunner(weight, bias)
    runner.run_epoch(x, y, order, 32, 1e-2, 0.2, seeds)

    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    adam = torch.optim.Adam([w, b], lr=1e-2)
    for k in range(10):
        w.grad, b.grad, _ = probe_gradients(x, order[32 * k:32 * (k + 1)], y, w, b, 0.2, int(seeds[k]))
        adam.step()
    torch.testing.assert_close(torch.from_numpy(runner.weight), w.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(runner.bias), b.detach(), rtol=1e-5, atol=1e-6)


def test_each_layer_false_probes_the_combined_read_out_only():
    """``probe.each_layer = false`` (benchmarks: same probe, less time) drops the per-layer probes and keeps the
    combined one; the default probes each layer too."""
    from conftest import tiny_config
    from fwdlearn.data import load_dataset
    from fwdlearn.eval.report import evaluate
    from fwdlearn.registry import get_rule
    from fwdlearn.run import untrained_network

    config = tiny_config("scff-mlp")
    config.probe.epochs = 1
    dataset = load_dataset("digits")
    network = untrained_network(config, dataset.num_features)
    rule = get_rule("scff-mlp")
    both = evaluate(rule, network, {}, dataset, config, show_progress=False, raw_inputs=False)["metrics"]
    config.probe.each_layer = False
    combined = evaluate(rule, network, {}, dataset, config, show_progress=False, raw_inputs=False)["metrics"]
    assert list(both["per_layer"]) == ["layer1", "layer2"] and combined["per_layer"] == {}
    assert combined["test_accuracy"] == both["test_accuracy"] and combined["layers"] == [1, 2]
