"""The ranking study: one Optuna trial per standalone training, in the run's own storage (study ``ranking``).

A trial records its task (``key``: architecture id, seed, epochs), the architecture, the worker, and when done
its validation accuracy as the trial's value (``optuna.load_study(study_name="ranking", ...)`` reads them).
Rules, so that nothing is trained twice nor lost: a task is claimed under the run's ``ranking-ask`` lock only if
no trial of it is COMPLETE or RUNNING; a trial left RUNNING by a dead worker or an interrupted command is told
FAIL when the next ``nas rank`` starts, and its task is claimed again, resuming from its last epoch checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.search.study import make_storage, now_text

if TYPE_CHECKING:
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig
    from nas.ranking.plan import Task

__all__ = [
    "STUDY_NAME", "claim_task", "fail_task", "finished_accuracies", "open_ranking_study", "recover_running", "tell_result",
]

STUDY_NAME = "ranking"


def open_ranking_study(run: RunDir, search: SearchConfig) -> optuna.Study:
    """The run's ranking study (created on first use), in the storage the search uses."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=STUDY_NAME, storage=make_storage(run, search), direction="maximize", load_if_exists=True
    )


def finished_accuracies(study: optuna.Study) -> dict[str, float]:
    """Task key -> validation accuracy of every COMPLETE trial."""
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "key" in t.user_attrs and t.value is not None:
            out[str(t.user_attrs["key"])] = float(t.value)
    return out


def _busy(study: optuna.Study) -> set[str]:
    states = (TrialState.COMPLETE, TrialState.RUNNING)
    return {str(t.user_attrs["key"]) for t in study.get_trials(deepcopy=False, states=states) if "key" in t.user_attrs}


def claim_task(study: optuna.Study, tasks: list[Task], worker: str) -> tuple[optuna.Trial, Task] | None:
    """A trial for the first task nobody has finished or is running, or None. Call under the ask lock."""
    busy = _busy(study)
    for task in tasks:
        if task.key in busy:
            continue
        trial = study.ask()
        trial.set_user_attr("arch", task.arch.arch)
        trial.set_user_attr("arch_id", task.arch.arch_id)
        trial.set_user_attr("seed", task.seed)
        trial.set_user_attr("epochs", task.epochs)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("started_at", now_text())
        trial.set_user_attr("key", task.key)  # last: the mark of a complete claim
        return trial, task
    return None


def recover_running(study: optuna.Study, worker: str | None = None) -> int:
    """Tell FAIL the RUNNING trials (of ``worker``, or all); their tasks become claimable again."""
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker is not None and t.user_attrs.get("worker") != worker:
            continue
        study._storage.set_trial_user_attr(t._trial_id, "error", "worker died or the command was interrupted")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        count += 1
    return count


def tell_result(study: optuna.Study, trial: optuna.Trial, accuracy: float, info: dict[str, Any]) -> None:
    """Record a finished training: its figures as user attributes, its validation accuracy as the value."""
    for key, value in info.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("finished_at", now_text())
    study.tell(trial, accuracy)


def fail_task(study: optuna.Study, trial: optuna.Trial, error: str) -> None:
    """Tell a training that raised FAIL, with the reason (the next ``nas rank`` tries it again)."""
    trial.set_user_attr("error", error[:2000])
    trial.set_user_attr("finished_at", now_text())
    study.tell(trial, state=TrialState.FAIL)
