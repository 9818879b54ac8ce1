"""LAC: Local Activity Contrast autoencoders (LAC paper, Algorithm 1, Eqs. 1-8), read against the paper.

For every batch ``x``:
  1. pass 1 on ``x`` gives every hidden layer's reaction ``S_o`` and the reconstruction ``o_1``;
  2. pass 2 on ``sg(o_1)`` gives the reactions ``S_r`` (batch statistics of the reconstructions,
     running statistics untouched);
  3. hidden loss, Eq. 1 summed over layers and units (``objectives.lac``); every layer's input is
     detached, so layer ``i``'s gradient is its own contrast only (Eq. 8), and RMSprop updates the
     parameter group ``hidden``;
  4. output loss ``sum (o_1 - target)^2`` (target: ``x``, or ``x`` flipped left-right); the output
     layer's input is detached, so Adam updates the group ``output`` alone.

Because no gradient crosses a layer, the update never holds more than one layer's graph. Pass 1 runs
without a graph and keeps only the detached ``S_o`` (the targets pass 2 needs) and ``o_1``; the output
layer's loss is back-propagated, and the output layer stepped, at once (pass 2 does not use it). Pass 2
then goes layer by layer: ``S_r`` with a graph of that layer only, its contrast ``sum (sg(S_o) - S_r)^2``
(``S_o - S_r`` written over ``S_o``), its backward into ``.grad`` at once, which releases the graph,
and ``ReLU(S_r)`` handed on detached; RMSprop steps every hidden layer after the last one. Each
parameter gets exactly the gradient of one backward of the summed losses, and each group one step,
as in Algorithm 1 (``tests/test_lac_memory.py`` checks both against that formulation); the gradients
are freed after each step.

Both losses are sums over units *and over the batch*, as in Algorithm 1 (``torch.sum``). The
scale matters with weight decay under RMSprop: the decay term is added to the loss gradient
before RMSprop normalises it, so with a batch mean it would be 128 times stronger relative to the
contrast, and on MNIST it shrinks the weights until every reaction is the batch-norm bias (the
contrast is then 0 and the output a constant image). Logged values are per sample.

Evaluation: the encoder (the first ``encoder_layers`` hidden layers) is read out by the same
linear probe as every rule, and fine-tuned end to end with a linear classifier (section 4.1);
baselines: the untrained autoencoder and the back-propagation autoencoder (``[bp]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..baselines.bp_autoencoder import train_bp_autoencoder
from ..config import BPTTConfig, DataConfig, ProbeConfig, RunConfig, check_backend, check_run_name, check_trained_epochs
from ..learner import Batch, Learner, ParamGroup, TrainedBaseline
from ..errors import DataError, check
from ..eval.finetune import FinetuneConfig, fine_tune
from ..nn.autoencoder import Autoencoder, Encoder, build_autoencoder, reconstruction_error, reconstruction_target
from ..nn.quant import QuantConfig
from ..kernels.lac_contrast import lac_contrast
from ..objectives.lac import layer_contrast
from ..rule import Rule

TARGETS = ("reconstruct", "flip")
GRID_IMAGES = 10
GRID_FILES = 10


@dataclass
class LACConfig(RunConfig):
    """A whole LAC run: autoencoder, its two optimisers, pretraining, baselines, evaluation.

    ``hidden`` lists the hidden layers (MLP: units, Linear-BN-ReLU; conv: channels of the three
    3x3 convolutions, strides 1, 1, 2); the output layer (Linear or 3x3 stride-2 transposed
    convolution, Sigmoid) maps back to the input. ``encoder_layers`` hidden layers form the encoder
    kept for classification. ``target``: ``reconstruct`` the input, or its horizontally ``flip``-ped
    image (the paper's flipped-image task). ``bp``: the back-propagation autoencoder baseline
    (``epochs = 0`` skips it); ``probe``: the linear read-out every rule shares; ``finetune``: the
    encoder and a linear classifier trained end to end (``epochs = 0`` skips it).
    """

    name: str
    hidden: list[int]
    description: str = ""
    learner: str = "lac-mlp"
    seed: int = 0
    batch_size: int = 128
    epochs: int = 10
    encoder_layers: int = 3
    target: str = "reconstruct"
    hidden_lr: float = 1e-3        # RMSprop, every hidden layer
    output_lr: float = 1e-2        # Adam, the output (reconstruction) layer
    weight_decay: float = 1e-3
    data: DataConfig = field(default_factory=lambda: DataConfig(dataset="digits"))
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    bp: BPTTConfig = field(default_factory=lambda: BPTTConfig(epochs=10, lr=1e-3, batch_size=128, grad_clip=0.0))
    quant: QuantConfig = field(default_factory=QuantConfig)   # every layer's weights and input (nn/quant.py)
    backend: str = "fused"         # "fused": closed-form contrast + batch norm (lac-mlp, float); "torch": autograd

    def validate(self, where: str = "config") -> "LACConfig":
        check_run_name(self.name, where)
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
              f"{where}.hidden must list positive layer sizes, got {self.hidden}")
        check(1 <= self.encoder_layers <= len(self.hidden),
              f"{where}.encoder_layers must lie in 1..{len(self.hidden)}, got {self.encoder_layers}")
        check(self.batch_size >= 2, f"{where}.batch_size must be >= 2 (batch norm), got {self.batch_size}")
        check_trained_epochs(self.epochs, where)
        check(self.target in TARGETS, f"{where}.target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name in ("hidden_lr", "output_lr"):
            check(getattr(self, name) > 0, f"{where}.{name} must be > 0, got {getattr(self, name)}")
        check(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        self.data.validate(f"{where}.data")
        check(not self.data.is_sequence, f"{where}.data.dataset: LAC autoencoders take images, "
                                         f"not the sequence data set {self.data.dataset!r}")
        self.probe.validate(f"{where}.probe", 1)    # one read-out layer: the encoder's output
        self.finetune.validate(f"{where}.finetune")
        self.bp.validate(f"{where}.bp")
        check(self.bp.batch_size >= 2, f"{where}.bp.batch_size must be >= 2 (batch norm), got {self.bp.batch_size}")
        self.quant.validate(f"{where}.quant")
        check_backend(self.backend, where)
        return self


def fused_contrast_step(layer, a: torch.Tensor, s_o: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 2 of one fully connected hidden layer in closed form (``kernels/lac_contrast.py``): ``u = W a + b`` (one
    product), batch statistics, ``S_r``, its contrast with ``s_o`` (Eq. 1) and ``dL/du`` in one kernel (written
    over ``s_o``), ``dW = (dL/du)^T a`` (one product); batch norm counts the batch as its own forward would (the
    running averages stay, as under ``frozen_norm_statistics``). Returns the contrast and ``ReLU(S_r)``."""
    linear, norm = layer.transform, layer.norm
    with torch.no_grad():
        u = torch.addmm(linear.bias, a, linear.weight.t())
        out = lac_contrast(u, s_o, norm.weight, norm.bias, norm.eps)
        del u
        if norm.training and norm.track_running_stats:
            norm.num_batches_tracked.add_(1)
        if train:
            linear.weight.grad = torch.mm(out.du.t(), a)
            linear.bias.grad = torch.zeros_like(linear.bias)    # batch norm removes any constant added to u
            norm.weight.grad, norm.bias.grad = out.gamma, out.beta
    return torch.tensor(out.loss, dtype=a.dtype), out.activity


class EncoderFeatures(Encoder):
    """The encoder as the probe and the export see a network: a list with one feature tensor."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [super().forward(x)]


class LACLearner(Learner):
    """Pretrains an autoencoder with LAC; parameter groups ``hidden`` (RMSprop) and ``output`` (Adam)."""

    min_batch = 2   # batch norm
    summed_loss = True   # Eqs. 1 and 8 sum over the batch
    kind = "mlp"
    rule_name = "lac-mlp"

    @classmethod
    def check_config(cls, config, where: str) -> None:
        check(config.learner == cls.rule_name, f"{where}.learner is {config.learner!r}; {cls.__name__} trains "
                                               f"{cls.rule_name}")

    def __init__(self, config, input_dim, device="cpu"):
        self.initial_test_error: float | None = None   # set by ``monitor``
        self.test_x: torch.Tensor | None = None
        super().__init__(config, input_dim, device)

    @staticmethod
    def network_input(dataset) -> tuple[int, ...]:
        return dataset.sample_shape

    @classmethod
    def build_network(cls, config, input_dim) -> Autoencoder:
        """The autoencoder exactly as a fresh learner initialises it (also the untrained baseline)."""
        return build_autoencoder(cls.kind, tuple(input_dim), config.hidden, config.encoder_layers, config.quant,
                                 config.seed)

    @staticmethod
    def describe(config, input_dim) -> str:
        return f"{'-'.join(map(str, config.hidden))} ({config.target})"

    @staticmethod
    def num_probe_layers(config) -> int:
        return 1

    @staticmethod
    def probe_network(network: torch.nn.Module) -> torch.nn.Module:
        return EncoderFeatures(network)

    def make_groups(self) -> list[ParamGroup]:
        c = self.config
        hidden = torch.optim.RMSprop(self.network.hidden_parameters(), lr=c.hidden_lr, weight_decay=c.weight_decay)
        output = torch.optim.Adam(self.network.output.parameters(), lr=c.output_lr, weight_decay=c.weight_decay)
        return [ParamGroup("hidden", hidden, c.epochs), ParamGroup("output", output, c.epochs)]

    def check_data(self, x: torch.Tensor, lengths: torch.Tensor | None) -> None:
        if x.shape[0] < 2:
            raise DataError(f"LAC needs at least 2 training images (batch norm), got {x.shape[0]}")

    def monitor(self, test_x: torch.Tensor) -> "LACLearner":
        """Track the test reconstruction error on ``test_x`` before training and after every epoch."""
        self.test_x = test_x
        if self.initial_test_error is None:
            self.initial_test_error = reconstruction_error(self.network, test_x, self.config.target)
        return self

    def train_batch(self, batch: Batch, active: list[str]) -> dict[str, dict[str, float]]:
        """Algorithm 1 on one batch, keeping one layer's graph at a time (see the module's docstring)."""
        network, x = self.network, batch.x
        train_hidden, train_output = "hidden" in active, "output" in active
        # Pass 1 (Eqs. 2-3): the targets S_o, kept detached (the contrast stops their gradient); no graph.
        first = []
        with torch.no_grad():
            a = network.flat_input(x)
            for layer in network.hidden:
                s_o, a = layer(a)
                first.append(s_o)
            del s_o
        # The output layer on the detached last activity: its loss, backward and step at once (pass 2 does
        # not use the output layer, so its step changes nothing below).
        with torch.set_grad_enabled(train_output):
            reconstruction = network.reconstruct(a, x.shape)
            output_loss = (reconstruction - reconstruction_target(x, self.config.target)).square().sum()
        del a
        if train_output:
            output = self.groups["output"].optimizer
            output.zero_grad(set_to_none=True)
            output_loss.backward()
            output.step()
            output.zero_grad(set_to_none=True)      # gradients freed after the step, as in ``take_step``
        a = network.flat_input(reconstruction.detach())
        del reconstruction
        # Pass 2 (Eqs. 4-5) on sg(o_1), one layer at a time: the reaction S_r with a graph of this layer only
        # (its input is detached), the layer's contrast (Eq. 1; S_o - S_r is written over S_o) and at once its
        # backward (Eq. 8, accumulated into .grad), which releases the layer's graph.
        hidden = self.groups["hidden"].optimizer
        if train_hidden:
            hidden.zero_grad(set_to_none=True)
        hidden_loss = 0
        # The closed form takes batch statistics inside its kernel; data parallel runs autograd, whose batch norms
        # are synchronised across processes (``distributed.data_parallel.sync_batch_norms``).
        closed_form = (self.config.backend == "fused" and self.kind == "mlp" and not self.config.quant.enabled
                       and self.data_parallel is None)
        with network.frozen_norm_statistics(), torch.set_grad_enabled(train_hidden):
            for i, layer in enumerate(network.hidden):
                if closed_form:
                    contrast, a = fused_contrast_step(layer, a, first[i], train_hidden)
                    first[i] = None
                    hidden_loss = hidden_loss + contrast
                    continue
                s_r = layer.reaction(a)
                contrast = layer_contrast(first[i], s_r, overwrite=True)
                first[i] = None
                # The next layer's input A_r = ReLU(S_r), in the storage of S_r: neither the contrast nor batch
                # norm keeps S_r for its backward (autograd would refuse a backward through a changed tensor).
                a = s_r.detach().relu_() if i + 1 < len(first) else None
                del s_r
                if train_hidden:
                    contrast.backward()
                hidden_loss = hidden_loss + contrast.detach()
                del contrast
        if train_hidden:
            hidden.step()
            hidden.zero_grad(set_to_none=True)
        losses = {"hidden": hidden_loss, "output": output_loss}
        n = batch.size
        return {name: {"loss": float(losses[name].detach()) / n} for name in active}

    def end_epoch(self, record: dict[str, dict[str, float]]) -> None:
        if self.test_x is not None and "output" in record:
            record["output"]["test_reconstruction_error"] = reconstruction_error(self.network, self.test_x,
                                                                                 self.config.target)

    def extra_state(self) -> dict:
        return {"initial_test_error": self.initial_test_error}

    def load_extra_state(self, state: dict) -> None:
        self.initial_test_error = state.get("initial_test_error")

    @staticmethod
    def train_inputs(dataset):
        return dataset.train.x, None, None

    def reconstruction_curve(self) -> list[float]:
        """Test reconstruction error before training, then after each epoch."""
        return [self.initial_test_error] + [r["test_reconstruction_error"] for r in self.history
                                            if r["group"] == "output"]

    def epoch_artifacts(self, out_dir: str | Path, dataset, first: bool = False) -> None:
        """Test images above their reconstructions: before training, then about ``GRID_FILES`` times.

        On resuming (``first`` after some epochs) the grid due after the last epoch done is written (again): a
        kill after that epoch's checkpoint but before its grid was renamed into place would otherwise lose it."""
        if self.test_x is None:
            self.monitor(dataset.test.x)
        grid = dataset.test.x[:GRID_IMAGES]
        grids = Path(out_dir) / "reconstructions"
        if first and self.completed_epochs == 0:
            save_reconstruction_grid(self.network, grid, self.config.target, grids / "epoch_000.png",
                                     "initial weights")
            return
        every = -(-self.config.epochs // GRID_FILES)
        epoch = self.completed_epochs
        if epoch % every == 0 or self.finished:
            error = self.reconstruction_curve()[-1]
            save_reconstruction_grid(self.network, grid, self.config.target, grids / f"epoch_{epoch:03d}.png",
                                     f"LAC epoch {epoch}: test MSE {error:.4f}")

    @classmethod
    def baselines(cls, config, dataset, input_dim, show_progress, log) -> dict:
        """The same autoencoder trained end to end by back-propagation (``[bp]``; 0 epochs skips it)."""
        if not config.bp.epochs:
            return {}
        log(f"BP autoencoder baseline: the same autoencoder trained end to end for {config.bp.epochs} epochs")
        network = cls.build_network(config, input_dim)
        seconds, errors = train_bp_autoencoder(network, dataset.train.x, dataset.test.x, config.bp.epochs, config.bp.lr,
                                               config.bp.batch_size, config.target, config.seed, show_progress)
        return {"bp_autoencoder": TrainedBaseline(network, seconds, [{"epoch": i + 1, "test_reconstruction_error": e}
                                                                     for i, e in enumerate(errors)])}

    @classmethod
    def extra_metrics(cls, config, network, dataset, show_progress) -> dict:
        """Fine-tuning (encoder and classifier end to end) and the test reconstruction error."""
        metrics = {"reconstruction_error": round(reconstruction_error(network, dataset.test.x, config.target), 6)}
        if config.finetune.epochs:
            metrics["fine_tuning"] = fine_tune(Encoder(network), dataset, config.finetune, config.seed, show_progress)
        return metrics


class LACConvLearner(LACLearner):
    kind = "conv"
    rule_name = "lac-conv"

    @classmethod
    def check_config(cls, config, where: str) -> None:
        super().check_config(config, where)
        check(len(config.hidden) == 3, f"{where}.hidden: lac-conv has three convolutions, got {len(config.hidden)} "
                                       f"channel counts")


def save_reconstruction_grid(network: Autoencoder, images: torch.Tensor, target: str, path: Path, title: str) -> Path:
    from ..plots import plot_reconstructions

    was_training = network.training
    network.eval()
    with torch.no_grad():
        outputs = network(images)
    network.train(was_training)
    shown = reconstruction_target(images, target) if target == "flip" else images
    return plot_reconstructions(shown, outputs, path, title)


def _bench_update(widths: list[int], x: torch.Tensor):
    """One LAC update: an autoencoder with these hidden layers, two passes, both groups stepped."""
    config = LACConfig(name="bench", hidden=list(widths), learner="lac-mlp", batch_size=x.shape[0],
                       encoder_layers=len(widths)).validate("bench")
    learner = LACLearner(config, (x.shape[1],), device=x.device)
    learner.network.train()
    return learner, Batch(x)


IN_GRAPH = "{}, batch norm (running statistics), ReLU per encoder layer; linear read-out"
RULES = (
    Rule(name="lac-mlp", label="LAC", learner=LACLearner, config=LACConfig,
         summary="Local Activity Contrast autoencoder, fully connected (LAC paper, Table 1)",
         presets={None: "lac-digits", "mnist": "lac-mnist"}, devices=("cpu",), hls4ml=True,
         in_graph=IN_GRAPH.format("Linear"), bench=_bench_update),
    Rule(name="lac-conv", label="LAC", learner=LACConvLearner, config=LACConfig,
         summary="Local Activity Contrast autoencoder, convolutional",
         presets={None: "lac-conv-digits", "mnist": "lac-conv-mnist"}, devices=("cpu",),
         in_graph=IN_GRAPH.format("3x3 convolutions")),
)
