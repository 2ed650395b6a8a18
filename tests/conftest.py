"""Shared fixtures. `media_dir` is the folder of real sample media (../shared/media next to the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

MEDIA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The shared sample media; tests needing it are skipped where it is absent (e.g. a bare clone)."""
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"sample media folder {MEDIA_DIR} is absent")
    return MEDIA_DIR
