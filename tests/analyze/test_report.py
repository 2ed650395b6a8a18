"""``facskit plot`` and ``facskit report``: figures in PNG and SVG, and one self-contained HTML page that
loads in headless Chromium without a script error and draws its plots."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from facskit.analyze.report import ERROR_MARKER
from facskit.cli import main
from facskit.models.checkpoint import save_checkpoint
from facskit.models.registry import create_model

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, media_dir) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("report")
    checkpoint = save_checkpoint(
        root / "micro.ckpt", create_model("bmvc2018-tiny", width=32, depth=2, input_size=64)
    )
    out = root / "analysis"
    inputs = [str(media_dir / "multi_face.jpg"), str(media_dir / "single_face.mp4")]
    args = ["analyze", *inputs, "--out", str(out), "--model", str(checkpoint), "--max-frames", "10"]
    assert main([*args, "--save-heatmaps", "--quiet"]) == 0
    return out


def test_plot_writes_png_and_svg(analysis, tmp_path) -> None:
    assert main(["plot", str(analysis / "single_face.csv"), "--out", str(tmp_path)]) == 0
    for name in ("timeseries", "distribution", "cooccurrence"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (tmp_path / f"{name}.svg").read_text()[:2000]


@pytest.fixture(scope="module")
def report(analysis) -> Path:
    path = analysis / "report.html"
    assert main(["report", str(analysis), "--out", str(path)]) == 0
    return path


def test_report_is_self_contained(report) -> None:
    text = report.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text), "the page must not fetch anything"
    assert text.count("data:image/png;base64,") >= 4  # distribution, co-occurrence, time series, key frames
    for needle in ("Summary", "Key frames", "AU heatmaps of the network", "Model card", "series-data"):
        assert needle in text


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.skip("no headless Chromium (apt-get install -y chromium) to load the report")


def _run_chromium(*args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with tempfile.TemporaryDirectory() as profile:
        command = [_chromium(), *flags, f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_report_loads_in_chromium_without_errors_and_draws(report, tmp_path) -> None:
    url = report.resolve().as_uri()
    dom = _run_chromium("--dump-dom", url).stdout
    assert "series-select" in dom, "Chromium did not render the page"
    assert ERROR_MARKER not in dom
    rendered = re.search(r'id="chart"[^>]*data-rendered="([^"]*)"', dom) or re.search(
        r'data-rendered="([^"]*)"[^>]*id="chart"', dom
    )
    assert rendered and rendered.group(1).isdigit() and int(rendered.group(1)) > 0
    assert dom.count("<path") >= 1
    shot = tmp_path / "report.png"
    _run_chromium(f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.is_file() and shot.stat().st_size > 20_000
