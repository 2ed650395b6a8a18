"""The synthetic generator's head-motion scale (used to make TCAE test videos with less head motion)."""

import numpy as np
import pytest

from facskit.synth.face_model import POSE_LIMITS_DEG
from facskit.synth.sequence import pose_timeline


def _angles(head_motion: float | None) -> np.ndarray:
    rng = np.random.default_rng(7)
    poses = pose_timeline(rng, 200) if head_motion is None else pose_timeline(rng, 200, head_motion)
    return np.array([(p.yaw, p.pitch, p.roll, p.tx, p.ty, p.scale) for p in poses])


def test_head_motion_scales_motion_within_the_sequence_only() -> None:
    default, one = _angles(None), _angles(1.0)
    assert np.array_equal(default, one)  # default unchanged
    still = _angles(0.0)
    assert np.allclose(still, still[0])  # no motion, the same mean pose ...
    assert np.all(still[:, :3].std(0) < 1e-9)
    half = _angles(0.5)
    # ... and half the motion around that mean where no angle hits its limit
    unclipped = 0
    for column, name in enumerate(("yaw", "pitch", "roll")):
        if np.all(np.abs(default[:, column]) < POSE_LIMITS_DEG[name]):
            unclipped += 1
            moved = default[:, column] - still[:, column]
            assert np.allclose(half[:, column] - still[:, column], 0.5 * moved)
    assert unclipped >= 2
    assert np.allclose(half[:, 3:] - still[:, 3:], 0.5 * (default[:, 3:] - still[:, 3:]))  # tx, ty, scale


def test_head_motion_rejects_negative() -> None:
    with pytest.raises(ValueError, match="head_motion"):
        pose_timeline(np.random.default_rng(0), 10, -1.0)


def test_synth_cli_passes_head_motion_to_the_generator(tmp_path) -> None:
    import pandas as pd

    from facskit.cli import main

    out = tmp_path / "still"
    args = [
        "synth",
        "--out",
        str(out),
        "--format",
        "folder",
        "--subjects",
        "1",
        "--frames",
        "4",
        "--head-motion",
        "0",
    ]
    assert main([*args, "--quiet"]) == 0
    truth = pd.read_parquet(out / "synth_ground_truth.parquet")
    assert len(truth) == 4 and truth[["yaw", "pitch", "roll"]].std().max() < 1e-6
    # A negative motion is refused by the argument parser itself: usage and one error line, exit 2.
    with pytest.raises(SystemExit) as refused:
        main(
            ["synth", "--out", str(tmp_path / "bad"), "--format", "folder", "--head-motion", "-1", "--quiet"]
        )
    assert refused.value.code == 2
