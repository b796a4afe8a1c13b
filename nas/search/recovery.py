"""Trials whose worker is gone: failed, and their architectures put back in the queue so that someone retries them.

Two ways to know that a worker is gone:
- **By heartbeat** (RDB storages, many machines): :func:`retry_stale_trials` fails the running trials whose
  heartbeat stopped for the storage's grace period (Optuna's ``fail_stale_trials``), whichever machine ran
  them, and re-enqueues them. It never touches a trial whose worker is alive, so a machine that starts or
  resumes a search leaves the others' trials alone. It also fails *unclaimed* running trials: under the ask
  mutex nobody is between asking and claiming, so such a trial's asker died in that instant.
- **By ownership** (the journal file, one machine): the run's search lock says no other search runs, so at
  its start every running trial is a leftover (:func:`recover_interrupted` with no worker), and a worker
  process that exits abnormally is known by its name (``host:pid``).

Call both under the study's ask mutex (:class:`nas.search.mutex.StudyMutex`), so that a trial is re-enqueued
exactly once and counts never see it half-recovered.
"""

from __future__ import annotations

import contextlib
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.storage import heartbeat_enabled

__all__ = ["recover_interrupted", "retry_stale_trials"]


def _requeue(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    if trial.params and "arch_id" in trial.user_attrs:  # asked but never claimed: nothing to retry
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retry_reason": reason}, skip_if_exists=False)


def recover_interrupted(study: optuna.Study, worker: str | None = None, *, worker_prefix: str | None = None) -> int:
    """Mark RUNNING trials FAIL and re-enqueue their parameters. Returns how many.

    All of them, or those whose ``worker`` attribute is ``worker``, or starts with ``worker_prefix``.
    """
    storage = study._storage
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name = str(t.user_attrs.get("worker", ""))
        if worker is not None and name != worker:
            continue
        if worker_prefix is not None and not name.startswith(worker_prefix):
            continue
        reason = "worker died or run was interrupted; retried"
        try:
            storage.set_trial_user_attr(t._trial_id, "error", reason)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished in the meantime
        _requeue(study, t, reason)
        count += 1
    return count


def retry_stale_trials(study: optuna.Study) -> int:
    """Fail and re-enqueue the running trials whose worker stopped beating (heartbeat storages only)."""
    storage = study._storage
    if not heartbeat_enabled(storage):
        return 0
    running = [t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if not running:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    count = 0
    for trial_id in running:
        now = storage.get_trial(trial_id)
        if now.state == TrialState.FAIL:
            _requeue(study, now, "its worker's heartbeat stopped")
            count += 1
        elif now.state == TrialState.RUNNING and "arch_id" not in now.user_attrs and "duplicate_of" not in now.user_attrs:
            # Unclaimed: its asker died between study.ask() and the claim (we hold the mutex, nobody else is there).
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return count
