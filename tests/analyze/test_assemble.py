"""The end of an input of ``facskit analyze`` is streamed: the result written part by part equals the one the
whole-table path wrote (concatenate the parts, finalise, write), for plain, smoothed and calibrated runs, CSV
and Parquet, and holds about one part at a time; summary.csv is aggregated block by block."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facskit.analyze import assemble as assemble_module
from facskit.analyze.openface import to_openface_columns
from facskit.analyze.pipeline import FaceResult, FrameResult, rows_from_frames
from facskit.analyze.postprocess import Calibration, Smoothing, finalize
from facskit.analyze.result_files import read_result, summarize_file, write_result, write_result_parts
from facskit.analyze.results import as_result
from facskit.analyze.schema import CSV_SIDECAR_SUFFIX, thresholds_for
from facskit.analyze.summary import summarize
from facskit.cli import main

FRAMES, STEP, CHUNK = 120, 3, 16  # 40 analysed frames (24 with a face, then none) in 3 parts of <= 16
PARTS = 3


def _whole_table(parts, target, fmt, detector, errors, openface_columns=False, provenance=None) -> int:
    """The former runner: every part in one table, finalised, written at once."""
    raw = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    result = detector.finalize(raw)
    result.attrs["errors"] = errors
    result.attrs.update(provenance or {})
    table = to_openface_columns(result) if openface_columns else result
    if openface_columns:
        table.attrs = dict(result.attrs)
    write_result(table, target, fmt)
    return len(result)


@pytest.mark.media
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--format", "parquet"],
        ["--openface-columns"],
        ["--smooth", "5"],
        ["--calibrate", "--format", "parquet"],
        ["--smooth", "5", "--calibrate", "--openface-columns"],
    ],
    ids=["plain", "parquet", "openface", "smooth", "calibrate-parquet", "smooth-calibrate-openface"],
)
def test_streamed_result_equals_the_whole_table_result(tmp_path, media_dir, checkpoint, monkeypatch, extra):
    streamed = assemble_module.assemble
    seen = {}

    def both(parts, target, fmt, detector, errors, openface_columns=False, provenance=None):
        seen["parts"] = len(parts)
        reference = target.parent.parent / f"reference.{fmt}"  # outside the folder summary.csv covers
        seen["reference"] = reference
        seen["rows"] = _whole_table(parts, reference, fmt, detector, errors, openface_columns, provenance)
        rows = streamed(parts, target, fmt, detector, errors, openface_columns, provenance)
        assert rows == seen["rows"]
        return rows

    monkeypatch.setattr(assemble_module, "assemble", both)
    video = str(media_dir / "face_noface.mov")
    out = tmp_path / "out"
    args = ["analyze", video, "--out", str(out), "--model", checkpoint, "--max-frames", str(FRAMES)]
    assert main([*args, "--chunk-frames", str(CHUNK), "--quiet", "--frame-step", str(STEP), *extra]) == 0
    assert seen["parts"] == PARTS
    fmt = "parquet" if "parquet" in extra else "csv"
    result, reference = out / f"face_noface.{fmt}", seen["reference"]
    if fmt == "csv":
        assert result.read_bytes() == reference.read_bytes()
        sidecar = Path(str(result) + CSV_SIDECAR_SUFFIX)
        assert sidecar.read_bytes() == Path(str(reference) + CSV_SIDECAR_SUFFIX).read_bytes()
    else:
        mine, theirs = pq.read_table(result), pq.read_table(reference)
        assert mine.equals(theirs, check_metadata=True)  # values, types and schema metadata (attrs)
        assert pq.ParquetFile(result).num_row_groups == seen["parts"]
    back = read_result(result)
    assert back["face_detected"].any() and (~back["face_detected"]).any()
    if "--smooth" in extra:
        assert back.attrs["smoothing"] == {"window": 5, "method": "median"}
    if "--calibrate" in extra:
        assert back.attrs["calibration"]["baselines"]
    # summary.csv comes from summarize_file: summarize's numbers, means to the last bits.
    expected = summarize(read_result(reference))
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(expected) > 0
    pd.testing.assert_frame_equal(summary, expected, check_dtype=False, rtol=1e-12)


@pytest.mark.media
@pytest.mark.parametrize("extra", [[], ["--smooth", "5", "--calibrate"]], ids=["plain", "smooth-calibrate"])
def test_assembly_holds_one_part_at_a_time(tmp_path, media_dir, checkpoint, monkeypatch, extra):
    read = assemble_module.read_part
    alive: list[weakref.ref] = []
    reads: list[tuple[str, int, int]] = []  # (part, columns, full parts still alive when it was read)

    def spy(path, columns=None):
        gc.collect()
        live = sum(1 for ref in alive if ref() is not None)
        frame = read(path, columns)
        reads.append((Path(path).name, len(frame.columns), live))
        if columns is None:
            alive.append(weakref.ref(frame))
        return frame

    concat, assemble = pd.concat, assemble_module.assemble
    concatenated: list[int] = []  # widest frame of each pd.concat call during an assembly

    def concat_spy(frames, *args, **kwargs):
        frames = list(frames)
        concatenated.append(max((len(f.columns) for f in frames), default=0))
        return concat(frames, *args, **kwargs)

    def assemble_spy(*args, **kwargs):
        monkeypatch.setattr(pd, "concat", concat_spy)
        try:
            return assemble(*args, **kwargs)
        finally:
            monkeypatch.setattr(pd, "concat", concat)

    monkeypatch.setattr(assemble_module, "read_part", spy)
    monkeypatch.setattr(assemble_module, "assemble", assemble_spy)
    video = str(media_dir / "face_noface.mov")
    args = ["analyze", video, "--out", str(tmp_path), "--model", checkpoint, "--max-frames", str(FRAMES)]
    assert main([*args, "--chunk-frames", str(CHUNK), "--quiet", "--frame-step", str(STEP), *extra]) == 0
    full = [r for r in reads if r[1] > 20]
    assert len(full) == PARTS  # each part read whole exactly once
    # A part's raw rows are gone before the next is read (what is held then is the one finished part the
    # writer has just written).
    assert [live for _, _, live in full] == [0] * PARTS
    aus = len(read_result(tmp_path / "face_noface.csv").aus)
    if extra:
        # The first pass: only the keys and the intensities of each part, then concatenated.
        small = [r for r in reads if r[1] <= 20]
        assert len(small) == PARTS and {c for _, c, _ in small} == {4 + aus}
        assert concatenated == [4 + aus]
    else:
        assert concatenated == []  # never the full rows of several parts


# ------------------------------------------------------------------------------ no media, no model


def _frames(n: int = 30) -> list[FrameResult]:
    image = np.zeros((4, 4, 3), np.uint8)
    rng = np.random.default_rng(0)
    frames = []
    for index in range(n):
        faces = []
        for face_id in (0, 1) if index % 7 else ():
            faces.append(
                FaceResult(
                    face_id=face_id,
                    box=(1.0, 2.0, 30.0, 40.0),
                    score=0.9,
                    pose=(0.0, 1.0, 2.0),
                    landmarks=rng.uniform(0, 100, size=(68, 2)).astype(np.float32),
                    matrix=np.eye(2, 3),
                    intensities=rng.uniform(0, 5, size=3).astype(np.float32),
                )
            )
        frames.append(FrameResult("clip.mp4", index, index / 25, image, faces))
    return frames


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_result_parts_equals_write_result(tmp_path, suffix) -> None:
    aus = (6, 12, 17)
    raw = rows_from_frames(_frames(), aus)
    added = finalize(raw, aus, thresholds_for(aus, 2.0), Smoothing(3), Calibration(10))
    result = as_result(raw, {"aus": list(aus), "model": "test", **added})
    whole = write_result(result, tmp_path / f"whole{suffix}")
    blocks = [pd.DataFrame(result.iloc[i : i + 7]) for i in range(0, len(result), 7)]
    parts = write_result_parts(iter(blocks), result.attrs, tmp_path / f"parts{suffix}")
    if suffix == ".csv":
        assert parts.read_bytes() == whole.read_bytes()
    else:
        assert pq.read_table(parts).equals(pq.read_table(whole), check_metadata=True)
        assert pq.ParquetFile(parts).num_row_groups == len(blocks)
    pd.testing.assert_frame_equal(pd.DataFrame(read_result(parts)), pd.DataFrame(result))
    expected = summarize(read_result(whole))
    for block_rows in (5, 1000):
        got = summarize_file(parts, block_rows=block_rows)
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
        assert got["frames"].tolist() == expected["frames"].tolist()
    openface = to_openface_columns(result)
    openface.attrs = dict(result.attrs)
    path = write_result(openface, tmp_path / f"openface{suffix}")
    pd.testing.assert_frame_equal(
        summarize_file(path, block_rows=4), summarize(read_result(path)), rtol=1e-12
    )
    shutil.rmtree(tmp_path)
