"""A validation score after every training epoch, reported to Optuna so that a pruner can stop a poor trial early.

No rule's linear probe runs during training (Appendix G trains it for tens of epochs on the frozen network),
so ``EpochScore`` reads the network after each epoch with the closed-form ridge read-out
(``eval.ridge_probe``): the probe's layers (the preset's ``probe.layers``, standardised as the probe does) of at
most ``samples`` training samples fitted in one linear solve, scored on the whole validation split. The step
Optuna sees is the number of epochs completed, so trials are compared at equal training time; with per-layer
epochs searched, a step may fall in a different layer for two trials, which the median pruner tolerates.

``pruner(name, trials)``: Optuna's ``MedianPruner`` (a trial stops when its score at a step is below the median of
earlier trials' scores at that step), not before two to five trials have finished (a quarter of the study) and
not in the first two epochs; or none.
"""

from __future__ import annotations

import torch

from ..eval.features import layer_features, probe_inputs
from ..eval.ridge_probe import ridge_readout_accuracy

PRUNERS = ("median", "none")


def pruner(name: str, trials: int):
    import optuna
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, trials // 4)), n_warmup_steps=2)


class EpochScore:
    """Called after each epoch (``train_run(on_epoch=...)``): the ridge read-out's validation accuracy, reported
    to ``trial``; raises ``optuna.TrialPruned`` when the study's pruner says so."""

    def __init__(self, trial, dataset, config, samples: int = 3000, seed: int = 0):
        self.trial, self.dataset, self.config = trial, dataset, config
        train = dataset.train
        chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:samples]
        self.fit_x, self.fit_y = train.x[chosen], train.y[chosen]
        self.fit_lengths = None if train.lengths is None else train.lengths[chosen]
        self.scores: list[float] = []

    def score(self, learner) -> float:
        training = learner.network.training
        network = learner.probe_network(learner.network)
        layers = self.config.probe.layers or list(range(1, learner.num_probe_layers(self.config) + 1))
        scaled = self.config.probe.standardize
        fit = probe_inputs(layer_features(network, self.fit_x, self.fit_lengths), layers, scaled)
        test = self.dataset.test
        scored = probe_inputs(layer_features(network, test.x, test.lengths), layers, scaled)
        learner.network.train(training)               # layer_features left it in eval mode
        return ridge_readout_accuracy(fit, self.fit_y, scored, test.y, self.dataset.num_classes)

    def __call__(self, learner) -> None:
        import optuna
        value = self.score(learner)
        self.scores.append(value)
        step = learner.completed_epochs
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation read-out {value:.2%} after {step} epochs is below the median")
