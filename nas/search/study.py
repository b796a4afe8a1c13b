"""The run's Optuna study: storage, sampler, and the ask / tell / fail / recover steps both engines share.

Every trial is one candidate: the sampler suggests an architecture through the space, a worker evaluates it,
sets every metric as a user attribute and every budget as a constraint (``trial.set_constraint``: feasible
when <= 0), and tells the objective values. The storage is the source of truth (``optuna.load_study`` and
optuna-dashboard read it as is); ``trials.csv`` mirrors it.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.core.budgets import budget_value, resolve_budgets
from nas.core.errors import UsageError
from nas.search.records import CandidateRecord
from nas.search.storage import TrialHeartbeat, heartbeat_enabled, make_storage

if TYPE_CHECKING:
    from nas.core.sections import SearchConfig
    from search_spaces import Architecture, SearchSpace

__all__ = [
    "METRIC_ATTRS",
    "STUDY_NAME",
    "WAIT",
    "ask_candidate",
    "constraint_values",
    "count_candidates",
    "fail_candidate",
    "make_optuna_sampler",
    "make_storage",
    "now_text",
    "open_study",
    "records_from_study",
    "take_worker_ticket",
    "tell_candidate",
]

STUDY_NAME = "search"
_RECORD_ATTRS = ("arch_id", "arch", "worker", "started_at", "finished_at", "duration_s", "feasible", "violations", "error")
METRIC_ATTRS = (
    "accuracy", "params", "mult_adds", "elementwise_ops", "memory_access_bytes", "latency_ms",
    "latency_p10_ms", "latency_p90_ms", "latency_backend", "latency_spread", "energy_mj", "energy_source",
    "latency_quantiles", "latency_ci_low_ms", "latency_ci_high_ms", "val_images", "val_correct",
)  # fmt: skip


def make_optuna_sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=search.population_size, seed=seed)
    if search.sampler == "tpe":
        # constant_liar keeps parallel workers from proposing the same point while one is being evaluated.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, search.trials // 4)), constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(storage: optuna.storages.BaseStorage, search: SearchConfig, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    directions = [optuna.study.StudyDirection.MAXIMIZE] + [optuna.study.StudyDirection.MINIMIZE] * (
        len(search.objectives) - 1
    )
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, directions=directions, sampler=sampler, load_if_exists=True
    )
    stored = study.user_attrs.get("objectives")
    if stored is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(search.objectives))
        study.set_user_attr("objectives", list(search.objectives))
        study.set_user_attr("budgets", dict(search.budgets))
    elif list(stored) != list(search.objectives):
        raise UsageError(
            f"this run's study optimises {stored}, the config now says {list(search.objectives)}; "
            "use a new run directory to change objectives"
        )
    return study


def constraint_values(metrics: dict[str, Any], budgets: dict[str, Any]) -> dict[str, float]:
    """Per budget: measured value minus the bound (feasible when <= 0). An unmeasured value is infeasible.

    A latency budget with a confidence is checked on the latency quantile at that level (nas.core.budgets).
    """
    out = {}
    for metric, bound in resolve_budgets(budgets).items():
        value = budget_value(metrics, metric, bound.confidence)
        out[metric] = value - bound if math.isfinite(value) else 1e30  # finite: every storage can hold it
    return out


def now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def records_from_study(study: optuna.Study) -> list[CandidateRecord]:
    """One record per evaluated candidate (duplicate proposals and skipped ones are not candidates)."""
    records = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if "arch_id" not in attrs or "arch" not in attrs or "duplicate_of" in attrs or "skipped" in attrs:
            continue  # not a candidate, or one whose start another process is writing right now
        data = {k: attrs[k] for k in (*_RECORD_ATTRS, *METRIC_ATTRS) if k in attrs}
        records.append(CandidateRecord.from_dict({**data, "trial": t.number, "status": t.state.name}))
    return records


def count_candidates(study: optuna.Study) -> tuple[int, int]:
    """(complete, running) distinct candidates. A running trial counts once its architecture is claimed."""
    complete = running = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if "duplicate_of" in t.user_attrs or "skipped" in t.user_attrs:
            continue
        if t.state == TrialState.COMPLETE:
            complete += 1
        elif "arch_id" in t.user_attrs:
            running += 1
    return complete, running


class _Wait:
    """What :func:`ask_candidate` returns while other workers are finishing the candidates still missing."""

    def __repr__(self) -> str:
        return "WAIT"


WAIT = _Wait()


def ask_candidate(
    study: optuna.Study, space: SearchSpace, target: int, worker: str, *, max_proposals: int | None = None
) -> tuple[optuna.Trial, Architecture | None] | _Wait | None:
    """Ask the next candidate and claim its architecture. Call it under the study's ask mutex.

    Returns None when ``target`` distinct candidates are complete (or ``max_proposals`` trials were asked),
    :data:`WAIT` when complete and running candidates already make ``target`` (a running one may still fail:
    ask again later), else the trial and its architecture. A proposal whose architecture is complete or
    running elsewhere is told PRUNED with ``duplicate_of`` and returned with ``None`` for the architecture.
    With a heartbeat storage the trial's first heartbeat is recorded before the architecture is claimed, so
    a claimed trial whose worker dies is always found stale.
    """
    complete, running = count_candidates(study)
    if complete >= target:
        return None
    if complete + running >= target:
        return WAIT
    limit = max_proposals if max_proposals is not None else target * 20 + 100
    if len(study.get_trials(deepcopy=False)) >= limit:
        print(f"worker {worker}: stopping after {limit} proposals: they were duplicates or predicted over the latency budget")
        return None
    with warnings.catch_warnings():  # we ask by hand and hold the heartbeat ourselves (nas.search.storage)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)
        trial = study.ask()
    arch = space.suggest(trial)
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if (
            other.number != trial.number
            and other.user_attrs.get("arch_id") == arch.arch_id
            and "duplicate_of" not in other.user_attrs
            and "skipped" not in other.user_attrs
        ):
            trial.set_user_attr("duplicate_of", other.number)
            study.tell(trial, state=TrialState.PRUNED)
            return trial, None
    if heartbeat_enabled(study._storage):
        TrialHeartbeat(study._storage, trial._trial_id).beat_once()
    # "arch_id" last: it is the claim, and readers (the progress bar, other processes) take it as the mark of a
    # complete record start.
    trial.set_user_attr("arch", dict(arch.values))
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("started_at", now_text())
    trial.set_user_attr("arch_id", arch.arch_id)
    return trial, arch


def take_worker_ticket(study: optuna.Study) -> int:
    """A number no other worker of the study ever got (0, 1, 2, ...). Call it under the study's ask mutex.

    Workers seed their samplers from it, so two workers never draw the same proposals, whichever machine
    or run directory they run in, and a resumed search does not replay the proposals of the first.
    """
    key = "nas:worker_tickets"
    ticket = int(study._storage.get_study_system_attrs(study._study_id).get(key, 0))
    study._storage.set_study_system_attr(study._study_id, key, ticket + 1)
    return ticket


def fail_candidate(study: optuna.Study, trial: optuna.Trial, error: str) -> None:
    """Tell a candidate that could not be evaluated FAIL, with the reason."""
    trial.set_user_attr("error", error[:2000])
    trial.set_user_attr("finished_at", now_text())
    study.tell(trial, state=TrialState.FAIL)


def tell_candidate(study: optuna.Study, trial: optuna.Trial, metrics: dict[str, Any], search: SearchConfig) -> None:
    """Record every metric as a user attribute, every budget as a constraint, and tell the objective values."""
    violations = constraint_values(metrics, search.budgets)
    for key in METRIC_ATTRS:
        trial.set_user_attr(key, metrics[key])
    for metric, value in violations.items():
        trial.set_constraint(metric, value)
    trial.set_user_attr("violations", {k: v for k, v in violations.items() if v > 0})
    trial.set_user_attr("feasible", all(v <= 0 for v in violations.values()))
    trial.set_user_attr("finished_at", now_text())
    if trial.datetime_start is not None:
        trial.set_user_attr("duration_s", (dt.datetime.now() - trial.datetime_start).total_seconds())
    values = [float(metrics[m]) for m in search.objectives]
    if not all(math.isfinite(v) for v in values):
        fail_candidate(study, trial, f"non-finite objective values {values}")
        return
    study.tell(trial, values)
