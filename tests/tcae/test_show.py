"""tcae-show: the pairs it draws from a video (aligned or track crops) and the grids it writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from facskit.align import AlignSpec, alignment_matrix
from facskit.faces import FaceTracker
from facskit.io import iter_frames
from facskit.models.tcae import TCAE, TCAESpec
from facskit.synth import write_dataset
from facskit.tcae.regions import REGIONS
from facskit.tcae.show import pair_grid, pairs_from_video, write_grids


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tcae_show")
    write_dataset(root, "disfa", subjects=1, frames=24, seed=5, quiet=True)
    return next(root.glob("Videos_LeftCamera/*.avi"))


def test_track_pairs_crop_the_target_as_the_source(video: Path) -> None:
    aligned = list(pairs_from_video(video, count=2, gap=20, crop_size=64))
    track = list(pairs_from_video(video, count=2, gap=20, crop_size=64, crop="track"))
    assert (
        [p.title for p in aligned]
        == [p.title for p in track]
        == [f"{video.name} frame 0 -> 20", f"{video.name} frame 3 -> 23"]
    )
    for (source_a, target_a, *_), (source_t, target_t, *_) in zip(aligned, track, strict=True):
        assert np.array_equal(source_a, source_t)  # the source frame is aligned either way
        assert not np.array_equal(target_a, target_t)  # the head moved between the two frames
    # the track target is the target frame through the source frame's alignment (same tracker, same faces)
    tracker, found = FaceTracker(detect_every=5), {}
    for frame in iter_frames(video):
        faces = [f for f in tracker.update(frame.image) if f.success]
        if frame.index in (0, 20):
            found[frame.index] = (frame.image, faces[0].landmarks)
        if frame.index >= 20:
            break
    matrix = alignment_matrix(np.asarray(found[0][1]), AlignSpec("bmvc", 64))
    np.testing.assert_array_equal(track[0][1], cv2.warpAffine(found[20][0], matrix, (64, 64)))
    # ... and its landmarks are the target frame's, through that matrix (what the shares are taken on)
    moved = np.asarray(found[20][1]) @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(track[0].landmarks, moved, atol=1e-3)
    with pytest.raises(ValueError, match="crop must be"):
        next(pairs_from_video(video, count=1, gap=5, crop="box"))
    with pytest.raises(ValueError, match="too short"):
        next(pairs_from_video(video, count=1, gap=24))


def test_write_grids_draws_one_row_of_nine_panels_per_pair(video: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TCAE(TCAESpec(input_size=32, filters=4, embedding_size=8, branch_layers=2))
    pairs = list(pairs_from_video(video, count=2, gap=10, crop_size=32, crop="track"))
    paths = write_grids(model, pairs, tmp_path / "grids", stem="clip", cell=40)
    assert [p.name for p in paths] == ["clip-00.png", "clip-01.png", "clip.png", "clip-shares.csv"]
    shares = pd.read_csv(paths[3])
    assert list(shares["pair"]) == [pairs[0].title, pairs[1].title, "mean"]
    for field in ("area", "AU", "gated AU", "pose"):  # each field's shares of the three regions sum to 1
        assert np.allclose(shares[[f"{field}: {r}" for r in REGIONS]].sum(axis=1), 1.0, atol=1e-3)
    # without landmarks there is nothing to take shares on, and no CSV
    bare = write_grids(model, [p[:3] for p in pairs], tmp_path / "bare", stem="clip", cell=40)
    assert [p.name for p in bare] == ["clip-00.png", "clip-01.png", "clip.png"]
    row, grid = cv2.imread(str(paths[0])), cv2.imread(str(paths[2]))
    assert row.shape[1] == grid.shape[1] == 9 * 40  # source .. pose mask
    assert grid.shape[0] == 2 * row.shape[0]


def test_head_pose_decoder_grid_shows_the_head_support() -> None:
    torch.manual_seed(0)
    spec = TCAESpec(
        input_size=32, filters=4, embedding_size=8, branch_layers=2, field_mix="au_gate", pose_decoder="head"
    )
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    row, shares = pair_grid(TCAE(spec), images[0], images[1], cell=40)
    assert shares == {}
    support = row[18:, 8 * 40 : 9 * 40]  # the last panel, below its caption bar
    assert support[20, 20].min() > 200 and support[1, 1].max() < 60  # the head bright, the corner dark
