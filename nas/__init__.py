"""Orchestration of the platform, in stages that import downwards only (checked by import-linter).

* :mod:`nas.core` -- what every stage reads: the run configuration, the run directory, the data, errors.
* :mod:`nas.search` -- candidate evaluation, records, locks, latency tables, the optuna engine and, in
  :mod:`nas.search.ray`, the ray engine.
* :mod:`nas.report` and :mod:`nas.export` -- the selection of a winner and the report; the ONNX check.
* :mod:`nas.pipeline` -- the stages in order, each resumable.
* :mod:`nas.cli` -- the ``nas`` command (``python -m nas`` too).
"""

__version__ = "0.1.0"  # kept equal to pyproject.toml's [project] version (a test checks)
