"""With a latency budget, the search's latency table skips proposals predicted far over it, unevaluated."""

from __future__ import annotations

import shutil
from pathlib import Path

from optuna.trial import TrialState

from nas.core.config import load_config, merge_config, write_config
from nas.core.run_dir import RunDir
from nas.search.engine import run_search
from nas.search.study import make_storage, open_study, records_from_study


def test_candidates_predicted_over_a_latency_budget_are_skipped(trained_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock"))
    run = RunDir(root)
    # A budget no architecture of the space can meet: every proposal is predicted over it and skipped, so the
    # search stops on its proposal cap without evaluating anything.
    cfg = merge_config(load_config(run.config_path), {"search": {"budgets": {"latency_ms": 1e-4}, "sampler": "random"}})
    write_config(cfg, run.config_path)
    summary = run_search(run, trials=1, progress=False)
    assert summary.complete == 0
    assert (root / "latency_table.json").is_file()
    study = open_study(make_storage(run, cfg.search), cfg.search)
    skipped = [t for t in study.get_trials() if "skipped" in t.user_attrs]
    assert skipped and all(t.state == TrialState.PRUNED and t.user_attrs["predicted_latency_ms"] > 0 for t in skipped)
    assert records_from_study(study) == []
