"""The result table: one schema, dtypes and attrs that survive CSV and Parquet, OpenFace naming, summaries,
thresholds, smoothing and calibration. Built from synthetic frames: no model, no media."""

from __future__ import annotations

import errno
import json

import numpy as np
import pandas as pd
import pytest

from facskit.analyze.openface import from_openface_columns, to_openface_columns
from facskit.analyze.pipeline import FaceResult, FrameResult, chunked, rows_from_frames
from facskit.analyze.postprocess import Calibration, Smoothing, finalize
from facskit.analyze.result_files import read_result, write_result
from facskit.analyze.results import AUResult, as_result
from facskit.analyze.schema import result_columns, result_dtypes, thresholds_for
from facskit.errors import FacskitError, MediaError, UsageError
from facskit.faces import FACE_COLUMNS

AUS = (6, 12, 17)


def _face(face_id: int, values: list[float]) -> FaceResult:
    rng = np.random.default_rng(face_id)
    return FaceResult(
        face_id=face_id,
        box=(10.0 + face_id, 20.0, 100.0, 110.0),
        score=0.5,
        pose=(1.0, -2.0, 3.0),
        landmarks=rng.uniform(0, 200, size=(68, 2)).astype(np.float32),
        matrix=np.eye(2, 3),
        intensities=np.array(values, dtype=np.float32),
    )


def _frames() -> list[FrameResult]:
    image = np.zeros((4, 4, 3), np.uint8)
    frames = []
    for index in range(12):
        faces = [] if index in (3, 4) else [_face(0, [index / 3, 2.5, 0.1]), _face(1, [0.5, 0.0, 4.9])]
        frames.append(FrameResult("clip.mp4", index, index / 25, image, faces))
    return frames


def _result(**options) -> AUResult:
    raw = rows_from_frames(_frames(), AUS)
    added = finalize(raw, AUS, thresholds_for(AUS, options.pop("threshold", 2.0)), **options)
    attrs = {"aus": list(AUS), "model": "test", "alignment": {"kind": "bmvc", "crop_size": 256}, **added}
    return as_result(raw, attrs)


def test_schema_is_face_columns_then_intensities_then_occurrences() -> None:
    columns = result_columns(AUS)
    assert columns[: len(FACE_COLUMNS)] == FACE_COLUMNS
    assert columns[len(FACE_COLUMNS) :] == ["AU06", "AU12", "AU17", "AU06_c", "AU12_c", "AU17_c"]
    assert set(result_dtypes(AUS)) == set(columns)


def test_a_frame_without_a_face_is_a_row_never_a_gap() -> None:
    result = _result()
    assert isinstance(result, AUResult)
    assert sorted(result["frame"].unique()) == list(range(12))
    empty = result[~result["face_detected"]]
    assert list(empty["frame"]) == [3, 4]
    assert (empty["face_id"] == -1).all()
    assert empty["AU06"].isna().all() and empty["AU06_c"].isna().all()
    assert len(result) == 10 * 2 + 2


def test_dtypes_follow_the_schema_and_subsetting_keeps_the_class_and_attrs() -> None:
    result = _result()
    assert {c: str(t) for c, t in result.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in result_dtypes(AUS).items()
    }
    subset = result[result["face_id"] == 1]
    assert isinstance(subset, AUResult)
    assert subset.attrs["model"] == "test"
    assert result.aus == AUS
    assert result.au_columns == ["AU06", "AU12", "AU17"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_values_dtypes_and_attrs(tmp_path, suffix: str) -> None:
    result = _result(smoothing=Smoothing(3), calibration=Calibration(10))
    path = write_result(result, tmp_path / f"clip{suffix}")
    back = read_result(path)
    assert isinstance(back, AUResult)
    pd.testing.assert_frame_equal(pd.DataFrame(back), pd.DataFrame(result), check_exact=False, rtol=1e-6)
    assert back.attrs == result.attrs
    assert back.attrs["smoothing"] == {"window": 3, "method": "median"}
    assert back.attrs["calibration"]["baselines"]["clip.mp4"]["1"]["AU17"] > 0
    if suffix == ".csv":
        assert json.loads((tmp_path / "clip.csv.meta.json").read_text())["model"] == "test"


def test_openface_columns_round_trip(tmp_path) -> None:
    result = _result()
    openface = to_openface_columns(result)
    for name in ("frame", "face_id", "timestamp", "confidence", "success", "AU06_r", "AU06_c"):
        assert name in openface.columns
    assert not any(c.startswith(" ") for c in openface.columns)
    assert openface["frame"].min() == 1
    assert set(openface["success"]) == {0, 1}
    assert set(openface["AU17_c"]) <= {0, 1}
    openface.attrs = dict(result.attrs)
    path = write_result(openface, tmp_path / "of.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["file", "frame", "timestamp", "face_id", "success"]
    back = read_result(path)
    pd.testing.assert_frame_equal(pd.DataFrame(back), pd.DataFrame(result), check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(
        from_openface_columns(openface)[result.columns], pd.DataFrame(result), check_dtype=False
    )


def test_summary_per_face() -> None:
    summary = _result().summary()
    assert list(summary["face_id"]) == [0, 1]
    assert list(summary["frames"]) == [10, 10]
    face1 = summary.iloc[1]
    assert face1["AU17_mean"] == pytest.approx(4.9, abs=1e-5)
    assert face1["AU17_active"] == 100.0 and face1["AU12_active"] == 0.0
    face0 = summary.iloc[0]
    assert face0["AU12_active"] == 100.0
    assert face0["AU06_max"] == pytest.approx(11 / 3, abs=1e-5)


def test_threshold_per_au() -> None:
    result = _result(threshold={"AU12": 3.0, 17: 5.0})
    assert result.attrs["thresholds"] == {"AU06": 2.0, "AU12": 3.0, "AU17": 5.0}
    assert not result["AU12_c"].dropna().any()
    assert not result["AU17_c"].dropna().any()
    with pytest.raises(UsageError, match="does not predict"):
        thresholds_for(AUS, {"AU01": 1.0})


def test_smoothing_is_a_centred_median_per_face_skipping_missing_frames() -> None:
    raw = rows_from_frames(_frames(), AUS)
    finalize(raw, AUS, thresholds_for(AUS, 2.0), smoothing=Smoothing(3))
    face0 = raw[raw["face_id"] == 0].sort_values("frame")
    # AU06 = frame / 3: a ramp, which a median keeps; frames 3 and 4 have no face and are skipped, so
    # frame 5's neighbours are frames 2 and 6 (a zero-filled gap would pull it down to 2/3).
    values = dict(zip(face0["frame"], face0["AU06"], strict=True))
    assert values[1] == pytest.approx(1 / 3, abs=1e-6)
    assert values[5] == pytest.approx(5 / 3, abs=1e-6)
    assert values[0] == pytest.approx(1 / 6, abs=1e-6)  # the edge: median of frames 0 and 1
    assert (face0["AU12"] == 2.5).all()


def test_calibration_subtracts_each_faces_baseline_and_clips_at_zero() -> None:
    result = _result(calibration=Calibration(0))
    face1 = result[result["face_id"] == 1]
    assert (face1[["AU06", "AU12", "AU17"]] == 0).all().all()
    face0 = result[result["face_id"] == 0]
    assert face0["AU06"].min() == 0.0
    baselines = result.attrs["calibration"]["baselines"]["clip.mp4"]
    assert baselines["1"] == {"AU06": 0.5, "AU12": 0.0, "AU17": pytest.approx(4.9, abs=1e-5)}
    assert "AU06_baseline" in result.summary().columns


def test_chunks_keep_the_frames_decoded_before_a_break() -> None:
    def broken():
        yield from _frames()[:5]
        raise MediaError("clip.mp4: truncated")

    seen = []
    with pytest.raises(MediaError):
        for chunk in chunked(broken(), 2):
            seen += [r.index for r in chunk]
    assert seen == [0, 1, 2, 3, 4]


def test_write_failure_leaves_no_file(tmp_path, monkeypatch) -> None:
    def full(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("file,frame\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(FacskitError, match="No space left"):
        write_result(_result(), tmp_path / "clip.csv")
    assert list(tmp_path.iterdir()) == []
