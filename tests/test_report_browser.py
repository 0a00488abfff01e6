"""rr report in a real browser: headless Chromium renders it without console errors, the
screenshot shows the page, and the DOM it builds marks a failed puzzle's wrong cells.

Skipped where Debian's ``chromium`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_helpers import parse_report
from test_report import trained_toy_run

from rrcore.cli.main import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium)")


def chromium(page: Path, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page``, offline and with a fresh profile; console messages on stderr."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *arguments,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture
def report_page(toy_registry, tmp_path) -> Path:
    run = trained_toy_run(tmp_path, epochs=1)
    result = CliRunner().invoke(main, ["report", str(run), "--puzzles", "1", "--scan", "16"])
    assert result.exit_code == 0, result.output
    return run / "report.html"


def test_report_renders_without_console_errors_and_shows_the_run(report_page, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    shot = tmp_path / "report.png"
    result = chromium(
        report_page, tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    pixels = image.imread(shot)[..., :3]  # (H, W, 3) floats in [0, 1]
    assert pixels.shape[:2] == (1600, 1280)
    assert (pixels < 0.9).any(axis=-1).mean() > 0.03  # text, curves and grids, not a blank page
    red = (pixels[..., 0] > 0.75) & (pixels[..., 1] < 0.25) & (pixels[..., 2] < 0.25)
    assert red.sum() > 100  # the failed puzzle's frame and wrong cells


def test_browser_dom_marks_the_wrong_cells_of_a_failed_puzzle(report_page, tmp_path):
    result = chromium(report_page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    cards = parse_report(result.stdout).cards
    failed = [card for card in cards if card.status == "failed"]
    assert len(failed) == 1
    last = failed[0].steps()[-1]
    expected = {cell["pos"]: cell["text"] for cell in failed[0].label().cells}
    wrong = {cell["pos"] for cell in last.cells if "wrong" in cell["classes"]}
    assert wrong and wrong == {cell["pos"] for cell in last.cells if cell["text"] != expected[cell["pos"]]}
