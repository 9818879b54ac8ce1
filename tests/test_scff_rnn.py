"""SCFF on the bidirectional recurrent layer: locality in time, across directions, and the maths."""

from __future__ import annotations

import pytest
import torch
from conftest import GradientArrivals, assert_local_update

from fwdlearn.config import BPTTConfig, DataConfig, LayerConfig, ProbeConfig, QuantConfig, SCFFConfig
from fwdlearn.learner import Batch
from fwdlearn.data.transforms import standardize
from fwdlearn.nn.local_birnn import LocalBiRNN
from fwdlearn.objectives import pair_examples, scff_loss
from fwdlearn.rules.scff_rnn import DIRECTIONS, SCFFRNNLearner

F_IN, HIDDEN = 6, 8


# float, and quantisation-aware (4-bit weights and inputs, Brevitas): the same locality must hold
PRECISIONS = [pytest.param(QuantConfig(), id="float"), pytest.param(QuantConfig(4, 4), id="w4a4")]


def rnn_config(epochs: int = 1, quant: QuantConfig | None = None) -> SCFFConfig:
    if quant is not None and quant.enabled:
        pytest.importorskip("brevitas", reason="quantised layers need the hardware extras")
    layer = LayerConfig(width=HIDDEN, lr=1e-2, theta_pos=0.0, theta_neg=1.0, penalty=7.5e-3, lr_decay=0.7,
                        epochs=epochs, activation="relu")
    return SCFFConfig(name="rnn", learner="scff-rnn", layers=[layer], batch_size=4,
                      data=DataConfig(dataset="sequences"), probe=ProbeConfig(epochs=1, layers=[1]),
                      bptt=BPTTConfig(epochs=0), quant=quant or QuantConfig()).validate()


def sequences(n: int = 4, steps: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded random sequences of different lengths (the longest fills ``steps``)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, steps + 1, (n,), generator=g)
    lengths[0] = steps
    x = torch.randn(n, steps, F_IN, generator=g)
    x = x * (torch.arange(steps)[None, :, None] < lengths[:, None, None])
    return x, lengths


def reference_direction(direction, a: torch.Tensor, b: torch.Tensor, reverse: bool) -> list[torch.Tensor]:
    """Step by step, the paper's way: concatenate the halves, standardise, two input weights W_1 = W_2.

    Returns the pre-activations in the order the direction processes them (backwards if ``reverse``).
    """
    w = direction.input.weight
    tied = torch.cat([w, w], dim=1)                   # W_1 = W_2 (Appendix A)
    frames = list(zip(a, b))
    if reverse:
        frames = frames[::-1]
    h = torch.zeros(direction.hidden_size)
    pre = []
    for a_t, b_t in frames:
        u = standardize(torch.cat([a_t, b_t])[None])[0]
        z = tied @ u + direction.recurrent(standardize(h[None])[0])
        pre.append(z)
        h = torch.relu(z).detach()
    return pre                                        # in processing order


def test_step_goodness_matches_the_step_by_step_definition():
    """Tied-weight projections, pair standardisation, padding of the shorter half, reversal."""
    torch.manual_seed(0)
    learner = SCFFRNNLearner(rnn_config(), F_IN)
    x, lengths = sequences()
    left, right, pair_lengths = pair_examples(lengths, torch.Generator().manual_seed(1))
    for which, direction in enumerate(learner.network.directions):
        drive = learner.network.drive(which, x, lengths, left, right, pair_lengths)
        states = learner.previous_states(which, drive, pair_lengths)
        g, valid = learner.step_goodness(which, drive, pair_lengths, states)
        for e in range(left.shape[0]):
            n = int(pair_lengths[e])
            pre = reference_direction(direction, x[left[e], :n], x[right[e], :n], reverse=which == 1)
            expected = torch.stack([torch.relu(z).square().mean() for z in pre])
            torch.testing.assert_close(g[e, :n], expected, atol=1e-5, rtol=1e-4)
            assert valid[e].sum() == n and not g[e, n:].any()


@pytest.mark.parametrize("quant", PRECISIONS)
def test_no_gradient_flows_through_time(quant):
    """The goodness at step t depends on the input at step t only; BPTT (same network) would differ."""
    learner = SCFFRNNLearner(rnn_config(quant=quant), F_IN)
    x, lengths = sequences(n=3, steps=6)
    lengths[:] = 6
    x = x.clone().requires_grad_(True)
    k = torch.arange(3)
    drive = learner.network.drive(0, x, lengths, k, k, lengths)
    states = learner.previous_states(0, drive, lengths)
    assert not states.requires_grad and states.grad_fn is None
    g, _ = learner.step_goodness(0, drive, lengths, states)
    t = 4
    (grad,) = torch.autograd.grad(g[:, t].sum(), x, retain_graph=True)   # drive is reused below
    assert grad[:, t].abs().sum() > 0
    assert torch.count_nonzero(grad[:, :t]) == 0 and torch.count_nonzero(grad[:, t + 1:]) == 0
    # the same quantity computed with the state attached (BPTT) does reach earlier steps
    final, _ = learner.network.directions[0].run(drive[:, :t + 1], torch.full((3,), t + 1))
    (bptt_grad,) = torch.autograd.grad(final.square().mean(), x)
    assert torch.count_nonzero(bptt_grad[:, :t]) > 0


@pytest.mark.parametrize("quant", PRECISIONS)
def test_state_fed_to_a_step_must_be_detached(quant):
    learner = SCFFRNNLearner(rnn_config(quant=quant), F_IN)
    x, lengths = sequences()
    k = torch.arange(x.shape[0])
    drive = learner.network.drive(0, x, lengths, k, k, lengths)
    attached = learner.network.directions[0].run(drive, lengths, keep_states=True)[1]
    assert attached.requires_grad
    with pytest.raises(RuntimeError, match="detached"):
        learner.step_goodness(0, drive, lengths, attached)
    detached = learner.previous_states(0, drive, lengths)                # control: the learner's own states
    torch.testing.assert_close(detached, attached.detach())
    learner.step_goodness(0, drive, lengths, detached)


@pytest.mark.parametrize("quant", PRECISIONS)
def test_each_direction_learns_from_its_own_loss_only(quant):
    learner = SCFFRNNLearner(rnn_config(quant=quant), F_IN)
    x, lengths = sequences()
    left, right, pair_lengths = pair_examples(lengths, torch.Generator().manual_seed(0))
    forward, backward = learner.network.directions
    to_forward, to_backward = GradientArrivals(forward.parameters()), GradientArrivals(backward.parameters())
    learner.update(0, x, lengths, left, right, pair_lengths, x.shape[0])
    assert to_forward.all() and to_backward.none()
    before = [p.detach().clone() for p in forward.parameters()]
    learner.update(1, x, lengths, left, right, pair_lengths, x.shape[0])
    assert to_backward.all() and all(c == 1 for c in to_forward.counts)
    assert all(torch.equal(a, p) for a, p in zip(before, forward.parameters()))
    for name, direction in zip(DIRECTIONS, learner.network.directions):
        owned = {id(p) for p in learner.groups[name].parameters}
        assert owned == {id(p) for p in direction.parameters()}


@pytest.mark.parametrize("quant", PRECISIONS)
def test_one_batch_trains_each_direction_on_its_own_loss(quant):
    """``train_batch`` of both directions: one backward per direction, each reaching its own parameters only
    (quantiser scales included), every parameter's gradient computed once."""
    learner = SCFFRNNLearner(rnn_config(quant=quant), F_IN)
    x, lengths = sequences()
    trace = assert_local_update(learner, Batch(x, lengths))
    assert [sorted(trace.groups_of(b)) for b in trace.passes] == [["forward"], ["backward"]]
    assert trace.arrivals == [1] * len(trace.params)


def test_inference_reads_final_states_independent_of_padding():
    """Each sequence's features are those of its own length: extra zero padding changes nothing,
    and the forward direction's state is the step-by-step reference at the sequence's last step."""
    network = LocalBiRNN(F_IN, HIDDEN)
    x, lengths = sequences()
    (features,) = network(x, lengths)
    padded = torch.cat([x, torch.zeros(x.shape[0], 5, F_IN)], dim=1)
    torch.testing.assert_close(network(padded, lengths)[0], features)
    for i in range(x.shape[0]):
        n = int(lengths[i])
        pre = reference_direction(network.directions[0], x[i, :n], x[i, :n], reverse=False)
        torch.testing.assert_close(features[i, :HIDDEN], standardize(torch.relu(pre[-1])[None])[0],
                                   atol=1e-5, rtol=1e-4)
        pre_b = reference_direction(network.directions[1], x[i, :n], x[i, :n], reverse=True)
        torch.testing.assert_close(features[i, HIDDEN:], standardize(torch.relu(pre_b[-1])[None])[0],
                                   atol=1e-5, rtol=1e-4)


def test_masked_loss_averages_over_real_steps_only():
    g_pos = torch.tensor([[1.0, 3.0, 9.0]])
    g_neg = torch.tensor([[2.0, 9.0, 9.0]])
    mask_pos = torch.tensor([[True, True, False]])
    mask_neg = torch.tensor([[True, False, False]])
    terms = scff_loss(g_pos, g_neg, 0.0, 1.0, penalty=0.5, mask_pos=mask_pos, mask_neg=mask_neg)
    sp = torch.nn.functional.softplus
    expected = (sp(torch.tensor(-1.0)) + sp(torch.tensor(-3.0))) / 2 + sp(torch.tensor(1.0)) + 0.5 * 10 ** 0.5
    torch.testing.assert_close(terms.loss, expected)
    assert float(terms.goodness_pos) == 2.0 and float(terms.goodness_neg) == 2.0


def test_training_separates_positive_from_negative_goodness():
    config = rnn_config(epochs=6)
    config.batch_size = 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, F_IN, generator=g)
    lengths = torch.full((64,), 10)
    learner = SCFFRNNLearner(config, F_IN)
    learner.train(x, lengths, show_progress=False)
    assert [(r["group"], r["epoch"]) for r in learner.history] == [(d, e) for e in range(1, 7) for d in DIRECTIONS]
    for direction in DIRECTIONS:
        records = [r for r in learner.history if r["group"] == direction]
        first, last = records[0], records[-1]
        assert last["loss"] < first["loss"]
        assert last["goodness_pos"] - last["goodness_neg"] > first["goodness_pos"] - first["goodness_neg"]


def test_wrong_feature_count_is_a_clear_error():
    learner = SCFFRNNLearner(rnn_config(), F_IN)
    x, lengths = sequences()
    with pytest.raises(ValueError, match=f"expected {F_IN} features per step, got 5"):
        learner.train(x[..., :5], lengths, show_progress=False)
    with pytest.raises(ValueError, match="lengths must be int64"):
        learner.network(x, lengths.to(torch.int32))


def test_several_negatives_pair_each_sequence_with_distinct_partners():
    lengths = torch.tensor([5, 3, 7, 4, 6])
    left, right, pair_lengths = pair_examples(lengths, torch.Generator().manual_seed(0), negatives=3)
    n = lengths.shape[0]
    assert left.shape == (4 * n,) and torch.equal(left, torch.arange(n).repeat(4))
    assert torch.equal(right[:n], torch.arange(n))                       # the positives
    blocks = right[n:].view(3, n)
    shifts = {int((b[0] - 0) % n) for b in blocks}
    assert len(shifts) == 3 and 0 not in shifts                          # three distinct, none the sample itself
    for block in blocks:
        assert (block != torch.arange(n)).all()
    torch.testing.assert_close(pair_lengths, torch.maximum(lengths[left], lengths[right]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_like_on_the_cpu():
    """The same seed on the GPU draws the same pairs and batches (they are drawn on the CPU) and
    ends at the same weights within float tolerance; features come back to the CPU."""
    from fwdlearn.eval.features import layer_features
    x, lengths = sequences(n=8, steps=9)
    learners = {}
    for device in ("cpu", "cuda"):
        learners[device] = SCFFRNNLearner(rnn_config(epochs=2), F_IN, device=device)
        learners[device].train(x, lengths, show_progress=False)
    assert all(p.is_cuda for p in learners["cuda"].network.parameters())
    for name, p_cpu in learners["cpu"].network.state_dict().items():
        torch.testing.assert_close(learners["cuda"].network.state_dict()[name].cpu(), p_cpu, atol=1e-4, rtol=1e-3)
    (features,) = layer_features(learners["cuda"].network, x, lengths)
    assert features.device.type == "cpu"
    torch.testing.assert_close(features, layer_features(learners["cpu"].network, x, lengths)[0], atol=1e-3, rtol=1e-3)
