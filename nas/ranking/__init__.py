"""Can the supernet's ranking be trusted? Standalone training of a spread of candidates against the supernet.

A stage above the search and the export, below the pipeline: it reads a run's candidates, trains K of them
from scratch with S seeds as trials of the run's storage (study ``ranking``), and writes ``ranking.json`` into
the run directory, which the report reads.
"""

from nas.ranking.analysis import RANKING_FILE, analyse
from nas.ranking.engine import rank_run
from nas.ranking.stats import Correlation, correlate, seed_ceiling, top_k_overlap, verdict

__all__ = ["RANKING_FILE", "Correlation", "analyse", "correlate", "rank_run", "seed_ceiling", "top_k_overlap", "verdict"]
