"""``Detector`` on the real sample media with a tiny untrained model (wiring, not accuracy): a row for every
frame, AUs in range, the same numbers whatever the batch size or the number of inputs per call."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from facskit import Detector
from facskit.analyze.results import AUResult
from facskit.errors import CheckpointError, UsageError
from facskit.models.registry import create_model

pytestmark = pytest.mark.media
MAX_FRAMES = 4


@pytest.fixture(scope="module")
def detector(checkpoint) -> Detector:
    return Detector(model=checkpoint, batch_size=32, backend="torch", precision="fp32")


@pytest.fixture(scope="module")
def all_media(detector, media_dir) -> AUResult:
    return detector.analyze(media_dir, max_frames=MAX_FRAMES)


def test_every_sample_file_gives_a_row_for_every_frame_and_aus_in_range(all_media, media_dir) -> None:
    result = all_media
    assert isinstance(result, AUResult)
    files = sorted(str(p) for p in media_dir.iterdir())
    assert sorted(result["file"].unique()) == files
    for file, rows in result.groupby("file"):
        expected = 1 if file.endswith(".jpg") else MAX_FRAMES
        assert sorted(rows["frame"].unique()) == list(range(expected)), file
    faces = result[result["face_detected"]]
    values = faces[result.au_columns].to_numpy()
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 5
    assert result.attrs["aus"] == [6, 10, 12, 14, 17]
    assert result.attrs["model_trained"] is True
    assert result.attrs["alignment"] == {"kind": "bmvc", "crop_size": 256}
    no_face = result[result["file"].str.endswith("no_face.mp4")]
    assert len(no_face) == MAX_FRAMES and not no_face["face_detected"].any()
    assert no_face["AU06"].isna().all()
    multi = result[result["file"].str.endswith("multi_face.jpg")]
    assert multi["face_id"].nunique() == len(multi) >= 2


def test_batch_size_and_inputs_per_call_do_not_change_results(detector, all_media, media_dir) -> None:
    files = [media_dir / "multi_face.jpg", media_dir / "single_face.mp4"]  # the folder order
    single = pd.concat(
        [pd.DataFrame(detector.analyze(f, max_frames=MAX_FRAMES, batch_size=1)) for f in files],
        ignore_index=True,
    )
    expected = all_media[all_media["file"].isin([str(f) for f in files])].reset_index(drop=True)
    pd.testing.assert_frame_equal(single, pd.DataFrame(expected), check_exact=False, atol=1e-4)


def test_largest_face_and_array_input(checkpoint, media_dir) -> None:
    import cv2

    image = cv2.imread(str(media_dir / "multi_face.jpg"))[..., ::-1].copy()
    largest = Detector(model=checkpoint, faces="largest", backend="torch", precision="fp32").analyze(image)
    assert len(largest) == 1 and largest["file"].iloc[0] == "<array>"
    assert bool(largest["face_detected"].iloc[0])


def test_model_choices_fail_clearly(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="default"):
        Detector(model=tmp_path / "missing.ckpt")
    with pytest.raises(UsageError, match="faces"):
        Detector(model=create_model("bmvc2018-tiny"), faces="some")  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="untrained"):
        detector = Detector(model="bmvc2018-tiny", backend="torch", precision="fp32")
    assert detector.attrs()["model_trained"] is False


def test_default_model_is_the_shipped_checkpoint_or_a_clear_error(tmp_path, monkeypatch) -> None:
    from facskit.analyze import model_source as detector_module
    from facskit.synth import SYNTH_AUS

    assert detector_module.DEFAULT_WEIGHTS.is_file(), "facskit ships trained default weights"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shipped weights are trained: no "untrained" warning
        shipped = Detector(backend="torch", precision="fp32")
    assert shipped.attrs()["model_trained"] is True
    assert tuple(shipped.attrs()["aus"]) == SYNTH_AUS
    monkeypatch.setattr(detector_module, "DEFAULT_WEIGHTS", tmp_path / "missing.ckpt")
    with warnings.catch_warnings(), pytest.raises(CheckpointError, match="no trained default model"):
        Detector()


def test_chunks_hold_numbers_not_pixels(detector, media_dir) -> None:
    seen = []
    chunks = detector.iter_chunks(
        media_dir / "single_face.mp4",
        max_frames=5,
        chunk_frames=2,
        on_frame=lambda r: seen.append(r.image.shape),
    )
    sizes = []
    for chunk in chunks:
        assert all(r.image is None for r in chunk)
        sizes.append(len(chunk))
    assert sizes == [2, 2, 1] and seen == [(360, 640, 3)] * 5
