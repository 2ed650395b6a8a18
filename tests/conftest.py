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


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A checkpoint of a micro Hourglass (seeded, untrained) for analysis wiring tests: its readout still
    clips to [0, 5], so range checks hold, and it is fast enough for whole-video runs."""
    import torch

    from facskit.models.checkpoint import save_checkpoint
    from facskit.models.registry import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "micro.ckpt"
    save_checkpoint(path, create_model("bmvc2018-tiny", width=32, depth=2, input_size=64))
    return str(path)
