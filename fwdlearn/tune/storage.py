"""Where a study lives: Optuna's RDB storage (an SQLite file by default, any SQLAlchemy URL otherwise), with
heartbeats so that a trial whose worker was killed is failed and run again.

Optuna fails a RUNNING trial once its last heartbeat is older than the grace period. A worker killed between
creating a trial and its first heartbeat (a window of a few milliseconds) leaves a trial with no heartbeat at
all, which Optuna would keep RUNNING for ever; ``open_storage`` treats such a trial as stale too, once it
started longer ago than the grace period.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

HEARTBEAT_SECONDS = 10


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise ConfigError("fwdlearn tune needs Optuna: pip install 'fwdlearn[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(storage: str | None, out: Path) -> str:
    return storage or f"sqlite:///{(out / 'study.db').resolve()}"


@lru_cache(maxsize=1)
def _storage_class():
    optuna = optuna_module()
    from optuna.storages._rdb import models

    class HeartbeatStorage(optuna.storages.RDBStorage):
        """``RDBStorage`` whose stale trials include those that never beat (see the module's docstring)."""

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            stale = list(super()._get_stale_trial_ids(study_id))
            started_before = datetime.now() - timedelta(seconds=self.grace_period)
            running = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            candidates = {t._trial_id for t in running if t._trial_id not in stale and t.datetime_start is not None
                          and t.datetime_start < started_before}
            if candidates:
                with self.scoped_session() as session:
                    beating = {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id)
                               .filter(models.TrialHeartbeatModel.trial_id.in_(candidates))}
                stale += sorted(candidates - beating)
            return stale

    return HeartbeatStorage


def open_storage(url: str, stale_after: float):
    """The study's storage at ``url``: heartbeats every ``min(10, stale_after / 2)`` s, a trial stale after
    ``stale_after`` s without one, and a stale trial failed and enqueued again with its settings (up to 3 times)."""
    optuna = optuna_module()
    from optuna import storages
    # Optuna 4.9 renamed the callback that re-runs a trial whose worker stopped beating
    renamed = hasattr(storages, "RetryHeartbeatStaleTrialCallback")
    key = "heartbeat_stale_trial_callback" if renamed else "failed_trial_callback"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = (storages.RetryHeartbeatStaleTrialCallback if renamed else storages.RetryFailedTrialCallback)(
                max_retry=3)
            return _storage_class()(url, heartbeat_interval=max(1, min(HEARTBEAT_SECONDS, int(stale_after / 2))),
                                    grace_period=max(1, int(stale_after)), **{key: retry})
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and its drivers raise many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"--storage {url}: cannot open ({type(exc).__name__}: {first})") from None


def fail_stale_trials(study) -> None:
    """Fail (and enqueue again) the trials whose worker died; see ``open_storage``."""
    optuna = optuna_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
