"""The Tune searcher of engine `ray`: the run's Optuna study, asked and told in the driver.

Ray's stock ``OptunaSearch`` keeps its own study, drops user attributes and cannot constrain on measured
values. This searcher asks the run's study through ``nas.search.study.ask_candidate`` (under the study's ask
mutex, skipping duplicate proposals, retrying trials whose heartbeat stopped, screening proposals with the
latency table like engine optuna) and tells it through ``tell_candidate`` / ``fail_candidate``, so the
study of a Ray search holds the same records, constraints and values as one of engine optuna. On an RDB
storage the driver holds a heartbeat for each trial in flight, so machines sharing the study see it alive.

While a Tune trial is retried after its worker died, its Optuna trial stays RUNNING; it is told only when
Tune gives the trial up (``on_trial_complete``). The searcher's state is the study: it saves nothing for
Tune (a rerun starts a fresh Tune experiment that asks the study for what is missing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.search import Searcher

from nas.search.ray.trainable import ARCH_KEY, TRIAL_KEY
from nas.search.recovery import retry_stale_trials
from nas.search.storage import TrialHeartbeat
from nas.search.study import METRIC_ATTRS, WAIT, ask_candidate, count_candidates, fail_candidate, tell_candidate

if TYPE_CHECKING:
    import optuna

    from nas.core.sections import SearchConfig
    from nas.search.mutex import StudyMutex
    from nas.search.screening import LatencyScreen
    from search_spaces import SearchSpace

__all__ = ["RetryReporter", "StudySearcher"]


class StudySearcher(Searcher):
    """Suggests the candidates of ``study`` until ``target`` distinct ones are complete.

    ``max_errors``: how many Tune trials may fail for good (worker deaths beyond Tune's retries) before
    the searcher stops suggesting; ``on_told`` is called after each candidate is told (progress).
    """

    def __init__(
        self,
        study: optuna.Study,
        mutex: StudyMutex,
        space: SearchSpace,
        search: SearchConfig,
        target: int,
        *,
        worker: str,
        max_errors: int,
        screen: LatencyScreen | None = None,
        on_told: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._mutex = mutex
        self._worker = worker
        self._screen = screen
        self._heartbeats: dict[str, TrialHeartbeat] = {}
        self._study = study
        self._space = space
        self._search = search
        self._target = target
        self._max_errors = max_errors
        self._on_told = on_told
        self._live: dict[str, optuna.Trial] = {}
        self._complete = count_candidates(study)[0]
        self._exhausted = False
        self._retries: dict[str, int] = {}
        self.errors: list[str] = []  # Tune trials given up after their retries

    @property
    def stopped_early(self) -> bool:
        """True when the searcher stopped before ``target`` candidates were complete."""
        return self._complete < self._target

    # Tune documents Searcher.FINISHED (a string) as a return value of suggest; its annotation omits it.
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if self._exhausted or len(self.errors) > self._max_errors or self._complete + len(self._live) >= self._target:
            return None if self._live else Searcher.FINISHED
        while True:
            with self._mutex.hold():
                retry_stale_trials(self._study)
                asked = ask_candidate(self._study, self._space, self._target, f"{self._worker}:{trial_id}")
            if asked is None:  # complete, or the sampler keeps proposing what is done or too slow
                self._exhausted = True
                self._complete = count_candidates(self._study)[0]
                return None if self._live else Searcher.FINISHED
            if asked is WAIT:  # what is missing runs elsewhere (another machine): Tune asks again later
                time.sleep(0.5)
                return None
            assert isinstance(asked, tuple)
            trial, arch = asked
            if arch is None:
                continue  # a duplicate, told PRUNED
            heartbeat = TrialHeartbeat(self._study._storage, trial._trial_id)
            heartbeat.start()
            if self._screen is not None and self._screen.skip(self._study, trial, arch):
                heartbeat.stop()
                continue
            break
        self._heartbeats[trial_id] = heartbeat
        self._live[trial_id] = trial
        return {ARCH_KEY: arch.to_json(), TRIAL_KEY: trial.number}

    def note_retry(self, trial_id: str) -> int | None:
        """Count a retry of a Tune trial (its worker died); the number of its Optuna trial, if it is live."""
        trial = self._live.get(trial_id)
        if trial is None:
            return None
        self._retries[trial_id] = self._retries.get(trial_id, 0) + 1
        return trial.number

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        trial = self._live.pop(trial_id, None)
        if trial is None:
            return
        heartbeat = self._heartbeats.pop(trial_id, None)
        try:
            self._tell(trial_id, trial, result, error)
        finally:
            if heartbeat is not None:
                heartbeat.stop()
        self._complete = count_candidates(self._study)[0]
        if self._on_told is not None:
            self._on_told()

    def stop_heartbeats(self) -> None:
        """Stop beating for the trials still in flight (the driver is leaving: they are recovered)."""
        for heartbeat in self._heartbeats.values():
            heartbeat.stop()
        self._heartbeats.clear()

    def _tell(self, trial_id: str, trial: optuna.Trial, result: dict[str, Any] | None, error: bool) -> None:
        trial.set_user_attr("ray_trial", trial_id)
        trial.set_user_attr("ray_retries", self._retries.pop(trial_id, 0))
        if result and "worker" in result:
            trial.set_user_attr("worker", result["worker"])
            trial.set_user_attr("ray_node", result["node"])
        if error or not result:
            reason = f"Ray trial {trial_id} failed after {self._search.max_failures} retries (worker died or Ray error)"
            self.errors.append(reason)
            fail_candidate(self._study, trial, reason)
        elif "error" in result:
            fail_candidate(self._study, trial, str(result["error"]))
        elif missing := [key for key in METRIC_ATTRS if key not in result]:
            fail_candidate(self._study, trial, f"the trial reported no {missing}")
        else:
            tell_candidate(self._study, trial, result, self._search)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the Optuna storage is the searcher's state."""


class RetryReporter(Callback):
    """Tells the searcher, and the user, when Tune retries a trial whose worker died."""

    def __init__(self, searcher: StudySearcher, max_failures: int, say: Callable[[str], None]) -> None:
        self._searcher = searcher
        self._max_failures = max_failures
        self._say = say

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        number = self._searcher.note_retry(trial.trial_id)
        what = f"candidate {number}" if number is not None else f"Ray trial {trial.trial_id}"
        self._say(f"{what}: its Ray worker failed; retry {trial.num_failures} of {self._max_failures}")
