"""The layout of a run directory, and loading what a previous step left in it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.core.errors import UsageError

if TYPE_CHECKING:
    from nas.core.config import RunConfig

__all__ = ["GENERATED", "RunDir"]

# What the steps of a run write into its directory (globs), and nothing else: what `nas run --reference` clears.
GENERATED: tuple[str, ...] = (
    "config.yaml", "config.yaml.tmp", "run.json", ".run.json.*", "trials.csv", "trials.csv.tmp", "report.md",
    "report.html", "pareto_*.png", "latency_table.json", "study.journal*", ".*.lock", "supernet", "export", "ray",
)


@dataclass(frozen=True)
class RunDir:
    """``results/<run>/``: config.yaml, supernet/, study.journal, trials.csv, run.json, report.*, export/."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def supernet_dir(self) -> Path:
        return self.root / "supernet"

    @property
    def checkpoint(self) -> Path:
        from supernet import CHECKPOINT_NAME

        return self.supernet_dir / CHECKPOINT_NAME

    @property
    def journal(self) -> Path:
        return self.root / "study.journal"

    @property
    def trials_csv(self) -> Path:
        return self.root / "trials.csv"

    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def lock_path(self, name: str) -> Path:
        return self.root / f".{name}.lock"

    def load_config(self) -> RunConfig:
        from nas.core.config import load_config

        if not self.config_path.is_file():
            raise UsageError(
                f"{self.root} is not a run directory (no config.yaml); create one with "
                "'nas run --out DIR' or 'nas train-supernet --config FILE --out DIR'"
            )
        try:
            return load_config(self.config_path)
        except ValueError as err:
            raise UsageError(str(err)) from None

    def require_supernet(self) -> Path:
        if not self.checkpoint.is_file():
            raise UsageError(
                f"no trained supernet in {self.root} (missing {self.checkpoint.relative_to(self.root)}); "
                f"run 'nas train-supernet --config {self.config_path} --out {self.root}' first"
            )
        return self.checkpoint

    def read_info(self) -> dict[str, Any]:
        """run.json as a mapping ({} before the first step); a damaged file is bad input naming the way out."""
        if not self.info_path.is_file():
            return {}
        try:
            data = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise UsageError(
                f"{self.info_path} is damaged ({type(err).__name__}); move it away: the next 'nas run' on this "
                "directory rebuilds it (trained weights and candidates are kept)"
            ) from None
        if not isinstance(data, dict):
            raise UsageError(f"{self.info_path} is damaged (a JSON {type(data).__name__}, not an object); move it away")
        return data

    def clear_generated(self) -> list[Path]:
        """Delete what the steps of a run wrote here (:data:`GENERATED`), to start from scratch; returns it."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for pattern in GENERATED:
            for path in self.root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def update_info(self, **sections: Any) -> dict[str, Any]:
        """Merge ``sections`` into run.json (one level deep), written atomically."""
        info = self.read_info()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(info.get(key), dict):
                info[key] = {**info[key], **value}
            else:
                info[key] = value
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".run.json.")
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle, indent=2, default=str)
        os.replace(tmp, self.info_path)
        return info
