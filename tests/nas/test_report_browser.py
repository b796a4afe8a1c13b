"""The HTML report in a real browser: headless Chromium renders it (plotly included, no network) to a screenshot.

Slow, and skipped where no Chromium is installed (``apt-get install -y chromium``). The same command by hand::

    chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \\
        --user-data-dir="$(mktemp -d)" --screenshot=report.png --window-size=1280,2400 file://$PWD/runs/default/report.html
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nas.report.report import parse_budgets, write_report

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2400) -> Path:
    """Render ``html`` in headless Chromium into ``png`` (offline: no network is used or needed)."""
    browser = _chromium()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH")
    profile = png.parent / "chromium-profile"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
         "--virtual-time-budget=5000", html.resolve().as_uri()],
        check=True, capture_output=True, timeout=180,
    )
    return png


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from tests.nas.test_report import _RUN_INFO, _records

    paths = write_report(tmp_path, _records(), budgets=parse_budgets(max_latency_ms=2.0), run_info=dict(_RUN_INFO))
    png = screenshot(paths.html, tmp_path / "report.png")
    pixels = imread(png)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    rows_with_ink = np.mean(np.std(pixels[..., :3], axis=1) > 0.02)
    assert rows_with_ink > 0.3  # text, tables and plots drawn, not a blank or error page
