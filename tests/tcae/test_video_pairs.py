"""Pairs streamed from raw videos: segment crops (the streamed ``--crop track``), pairing within a key, the
gap, stale buffers, and ``pretrain-tcae`` on a folder of videos in both crop modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facskit.align import MEAN_FACE_256, AlignSpec, alignment_matrix, points_to_crop
from facskit.synth import write_dataset
from facskit.tcae.pairs import PairCurriculum, SegmentCrop, VideoPairStream

TINY_RUN = [
    "model.input_size=32",
    "model.filters=4",
    "model.embedding_size=8",
    "train.batch_size=4",
    "train.device=cpu",
    "train.threads=1",
    "train.max_steps=2",
    "curriculum.min_gap=2",
    "curriculum.start_max_gap=8",
    "curriculum.end_max_gap=8",
]


def _face() -> np.ndarray:
    """68 plausible frame landmarks: the mean face of a 256 crop at half size, in a 640 x 480 frame."""
    return MEAN_FACE_256 * 0.5 + np.array([250.0, 180.0])


def test_segment_crop_holds_one_matrix_until_the_face_drifts() -> None:
    spec = AlignSpec("bmvc", 256)
    crop = SegmentCrop(spec, max_drift=0.15)
    face = _face()
    first_segment, first = crop(1, face)
    assert first_segment == 0
    np.testing.assert_array_equal(first, alignment_matrix(face, spec))  # the first frame's own alignment
    # a head movement smaller than the threshold keeps the matrix: the motion stays in the crop
    moved = face + np.array([6.0, -3.0])  # at half size: 13.4 px of the 256 crop, under 0.15 x 256
    segment, matrix = crop(1, moved)
    assert segment == 0 and np.array_equal(matrix, first)
    drift = np.linalg.norm(points_to_crop(moved, first) - points_to_crop(face, first), axis=1).mean()
    assert 0 < drift < 0.15 * 256
    # another face has its own segments
    assert crop(2, face + 200.0)[0] == 0
    # a walk across the frame starts a new segment aligned on the new frame
    far = face + np.array([150.0, 0.0])
    segment, matrix = crop(1, far)
    assert segment == 1
    np.testing.assert_array_equal(matrix, alignment_matrix(far, spec))
    segment, again = crop(1, far + 1.0)
    assert segment == 1 and np.array_equal(again, matrix)
    with pytest.raises(ValueError, match="max_drift"):
        SegmentCrop(spec, max_drift=0.0)


def _fake_videos(tmp_path: Path, count: int) -> list[Path]:
    """Real files the stream decodes (synthetic DISFA-layout videos, 30 frames each)."""
    write_dataset(tmp_path, "disfa", subjects=count, frames=30, seed=3, quiet=True)
    return sorted(tmp_path.glob("Videos_LeftCamera/*.avi"))


class _StampAligner:
    """Crops whose pixel value is the frame index; the key switches from "a" to "b" at frame 15."""

    def __init__(self) -> None:
        self.frame = -1

    def __call__(self, image: np.ndarray) -> list[tuple[object, np.ndarray]]:
        self.frame += 1
        key = "a" if self.frame < 15 else "b"
        return [(key, np.full((8, 8, 3), self.frame, dtype=np.uint8))]


def test_video_stream_pairs_frames_of_one_key_within_the_gap(tmp_path: Path) -> None:
    videos = _fake_videos(tmp_path, 1)
    curriculum = PairCurriculum(min_gap=2, start_max_gap=5, end_max_gap=5)
    stream = VideoPairStream(videos, _StampAligner, 8, 4, curriculum, epoch=0, pairs_per_frame=2.0)
    sources, targets = [], []
    for position, source, target in stream.batches():
        assert position == 0 and source.shape == target.shape == (4, 3, 8, 8)
        sources += (source[:, 0, 0, 0] * 255).round().int().tolist()
        targets += (target[:, 0, 0, 0] * 255).round().int().tolist()
    pairs = np.array([sources, targets]).T
    assert len(pairs) >= 40  # 2 pairs per frame that has a source in its key's buffer, full batches only
    gaps = pairs[:, 1] - pairs[:, 0]
    assert gaps.min() >= 2 and gaps.max() <= 5 and set(gaps) == {2, 3, 4, 5}
    assert ((pairs < 15).all(axis=1) | (pairs >= 15).all(axis=1)).all()  # never across the key change
    # the first frames of key "b" have no source yet (its buffer starts empty at frame 15)
    assert pairs[pairs[:, 1] >= 15, 1].min() == 17
    # mining: the most different of k draws; crops differ by their frame gap, so with k = 60 draws from at
    # most 4 candidates every pair takes the oldest source its key's buffer offers
    mined = VideoPairStream(videos, _StampAligner, 8, 4, curriculum, epoch=0, mine_factor=60)
    for _, source, target in mined.batches():
        s, t = (source[:, 0, 0, 0] * 255).round().int(), (target[:, 0, 0, 0] * 255).round().int()
        key_start = torch.where(t >= 15, 15, 0)
        assert torch.equal(t - s, torch.clamp(t - key_start, max=5))
    with pytest.raises(ValueError, match="mine_factor"):
        VideoPairStream(videos, _StampAligner, 8, 4, curriculum, epoch=0, mine_factor=0)


@pytest.mark.parametrize("crop", ["track", "aligned"])
def test_pretrain_tcae_from_raw_videos(tmp_path: Path, crop: str, capsys: pytest.CaptureFixture) -> None:
    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import load_tcae, pretrain_tcae

    videos = tmp_path / "videos"
    for video in _fake_videos(tmp_path / "synth", 2):
        videos.mkdir(exist_ok=True)
        video.rename(videos / video.name)
    overrides = [*TINY_RUN, f"data.crop={crop}"] if crop == "aligned" else TINY_RUN  # track: the default
    pretrain_tcae(load_tcae_config("tcae-lite", overrides), videos, tmp_path / "run")
    _, checkpoint = load_tcae(tmp_path / "run")
    assert checkpoint["step"] == 2
    assert f"2 videos, pairs from tracked faces, crop {crop}" in capsys.readouterr().err


def test_data_crop_must_match_the_cache(tmp_path: Path) -> None:
    from facskit.config import ConfigError
    from facskit.data import prepare_dataset, read_disfa
    from facskit.errors import UsageError
    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import pretrain_tcae

    write_dataset(tmp_path / "disfa", "disfa", subjects=1, frames=12, seed=4, quiet=True)
    prepare_dataset(read_disfa(tmp_path / "disfa"), tmp_path / "cache", workers=1, progress=False)
    config = load_tcae_config("tcae-lite", [*TINY_RUN, "data.crop=track"])
    with pytest.raises(UsageError, match="prepared with --crop aligned"):
        pretrain_tcae(config, tmp_path / "cache", tmp_path / "run")
    with pytest.raises(ConfigError, match="max_drift"):
        load_tcae_config("tcae-lite", ["data.max_drift=0"])


def test_default_aligner_track_crops_frames_through_the_first_frames_alignment(tmp_path: Path) -> None:
    import cv2

    from facskit.faces import FaceTracker
    from facskit.io import iter_frames
    from facskit.tcae.pairs import default_aligner

    video = _fake_videos(tmp_path, 1)[0]
    track, aligned = default_aligner(64, crop="track"), default_aligner(64, crop="aligned")
    tracker = FaceTracker(detect_every=5)
    first_matrix = None
    for frame in iter_frames(video):
        faces = [f for f in tracker.update(frame.image) if f.success]
        ((key, crop),), ((face_id, aligned_crop),) = track(frame.image), aligned(frame.image)
        assert key == (face_id, 0)  # the synthetic head moves well under max_drift: one segment
        if first_matrix is None:
            first_matrix = alignment_matrix(faces[0].landmarks, AlignSpec("bmvc", 64))
        np.testing.assert_array_equal(crop, cv2.warpAffine(frame.image, first_matrix, (64, 64)))
        if frame.index == 0:
            np.testing.assert_array_equal(crop, aligned_crop)  # same matrix on the first frame
    assert frame.index == 29 and not np.array_equal(crop, aligned_crop)  # later the head has moved
    with pytest.raises(ValueError, match="unknown crop mode"):
        default_aligner(64, crop="box")
