"""A still image's result written from arrays (facskit.analyze.still_result) is the file the table path
(parts, pandas) writes for it: the same CSV bytes, the same attrs, the same summary.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facskit.analyze import runner
from facskit.analyze.detector import Detector
from facskit.analyze.outdir import write_summary
from facskit.analyze.result_files import summarize_file
from facskit.analyze.schema import CSV_SIDECAR_SUFFIX, SUMMARY_KEY

ASSETS = Path(__file__).resolve().parents[2] / "facskit" / "assets"
FACE = ASSETS / "sample_face.jpg"


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> list[Path]:
    """A face, a blank picture (a face_detected=False row), a two-face collage and a 3-page TIFF."""
    folder = tmp_path_factory.mktemp("stills")
    face = Image.open(FACE).convert("RGB")
    blank = Image.new("RGB", face.size, (90, 120, 150))
    collage = Image.new("RGB", (face.width * 2, face.height))
    collage.paste(face, (0, 0))
    mirrored = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    collage.paste(mirrored, (face.width, 0))
    # The TIFF first: Pillow reuses a page's last encoder settings, and the PNG's break the TIFF encoder.
    face.save(folder / "pages.tiff", save_all=True, append_images=[blank, mirrored])
    blank.save(folder / "blank.png")
    collage.save(folder / "two, faces.jpg", quality=95)
    return [FACE, folder / "blank.png", folder / "two, faces.jpg", folder / "pages.tiff"]


def analyse(out: Path, inputs: list, checkpoint: str) -> None:
    detector = Detector(model=checkpoint, backend="torch", precision="fp32")
    report = runner.analyze_to_dir(detector, inputs, out, log=lambda _: None)
    assert not report.errors


def sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + CSV_SIDECAR_SUFFIX).read_text())


def test_still_path_writes_what_the_table_path_writes(tmp_path, stills, checkpoint, monkeypatch) -> None:
    pixels = np.asarray(Image.open(FACE).convert("RGB"))
    inputs = [*stills, pixels]
    analyse(tmp_path / "still", inputs, checkpoint)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "takes_still_path", lambda *_: False)
        analyse(tmp_path / "table", inputs, checkpoint)
    results = sorted(p.name for p in (tmp_path / "still").glob("*.csv"))
    assert results == sorted(p.name for p in (tmp_path / "table").glob("*.csv"))
    assert len(results) == len(inputs) + 1  # and summary.csv
    assert not (tmp_path / "still" / ".parts").exists()
    for name in results:
        ours, theirs = tmp_path / "still" / name, tmp_path / "table" / name
        assert ours.read_bytes() == theirs.read_bytes(), name
        if name != "summary.csv":
            attrs = sidecar(ours)
            assert SUMMARY_KEY in attrs and SUMMARY_KEY not in sidecar(theirs)
            attrs.pop(SUMMARY_KEY)
            assert attrs == sidecar(theirs), name
    faces = (tmp_path / "still" / "summary.csv").read_text().splitlines()
    assert len(faces) == 1 + 1 + 2 + 1 + 1  # header, face, collage (2), pages (one face id), array


def test_recorded_summary_is_the_summary_of_the_file(tmp_path, stills, checkpoint) -> None:
    analyse(tmp_path, stills, checkpoint)
    for path in tmp_path.glob("*.csv"):
        if path.name == "summary.csv":
            continue
        recorded = sidecar(path)[SUMMARY_KEY]
        table = summarize_file(path)
        assert recorded["columns"] == list(table.columns)
        assert len(recorded["rows"]) == len(table)
        for row, (_, expected) in zip(recorded["rows"], table.iterrows(), strict=True):
            assert row[:3] == [expected["file"], expected["face_id"], expected["frames"]]
            np.testing.assert_allclose(row[3:], expected.iloc[3:].to_numpy(float), rtol=1e-12)


def test_summary_reads_files_without_a_recorded_summary(tmp_path, stills, checkpoint) -> None:
    """A folder mixing recorded and unrecorded results (a video, an edited sidecar) lists them all, in
    name order, as the table path would."""
    analyse(tmp_path, [stills[0], stills[2]], checkpoint)
    written = (tmp_path / "summary.csv").read_bytes()
    first = sorted(tmp_path.glob("*.csv"))[0]
    meta = first.with_name(first.name + CSV_SIDECAR_SUFFIX)
    entries = json.loads(meta.read_text())
    entries.pop(SUMMARY_KEY)
    meta.write_text(json.dumps(entries, sort_keys=True) + "\n")
    write_summary(tmp_path)
    assert (tmp_path / "summary.csv").read_bytes() == written


def test_smoothing_and_openface_columns_take_the_table_path(checkpoint) -> None:
    from facskit.io import MediaFile, MediaKind

    job = runner.Job("a.jpg", MediaFile(FACE, MediaKind.IMAGE), "a", Path("a.csv"), {})
    plain = Detector(model=checkpoint, backend="torch", precision="fp32")
    smoothed = Detector(model=checkpoint, backend="torch", precision="fp32", smoothing=3)
    assert runner.takes_still_path(plain, job, runner.OutputOptions())
    assert not runner.takes_still_path(smoothed, job, runner.OutputOptions())
    assert not runner.takes_still_path(plain, job, runner.OutputOptions(openface_columns=True))
    assert not runner.takes_still_path(plain, job, runner.OutputOptions(fmt="parquet"))


def test_stills_on_threads_write_what_one_thread_writes(tmp_path, stills, checkpoint, monkeypatch) -> None:
    """Photos are analysed side by side on threads (runner.run_jobs); a video among them runs alone, a broken
    file fails alone, and the files and the report's order are those of one photo at a time."""
    import os

    from helpers import write_video

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    video = tmp_path / "clip.mp4"
    write_video(video, 4)
    inputs = [*stills, broken, video, *stills[:2]]
    inputs[-2:] = [tmp_path / f"again_{p.name}" for p in stills[:2]]
    for copy, original in zip(inputs[-2:], stills[:2], strict=True):
        copy.write_bytes(original.read_bytes())
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    reports = {}
    for workers in (1, 2):
        monkeypatch.setattr(runner, "STILL_WORKERS", workers)
        detector = Detector(model=checkpoint, backend="torch", precision="fp32")
        reports[workers] = runner.analyze_to_dir(
            detector, inputs, tmp_path / str(workers), log=lambda _: None
        )
    one, two = reports[1], reports[2]
    assert [p.name for p in two.written] == [p.name for p in one.written]
    assert [label for label, _ in two.errors] == [label for label, _ in one.errors] == [str(broken)]
    names = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "2").iterdir())
    for name in names:
        if name.endswith((".csv", ".json")) and name != "run.json":
            assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name


def test_face_detector_runs_on_threads() -> None:
    """One FaceDetector shared by threads finds what it finds on one thread (each thread has its own dlib
    HOG detector: dlib's keeps its feature pyramid in the detector object)."""
    from concurrent.futures import ThreadPoolExecutor

    from facskit.faces.detect import FaceDetector

    face = np.asarray(Image.open(FACE).convert("RGB"))
    images = [face, face[:, ::-1].copy(), face[::2, ::2].copy(), np.ascontiguousarray(face[40:, 30:])] * 4
    detector = FaceDetector()
    alone = [detector.detect(image) for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(detector.detect, images))
    assert together == alone and all(alone)


def test_detector_analyze_of_many_inputs_equals_one_call_each(stills, checkpoint) -> None:
    """Detector.analyze finalises all inputs as one table when nothing needs a file's whole series: the
    rows are those of one call per input, concatenated."""
    import pandas as pd

    detector = Detector(model=checkpoint, backend="torch", precision="fp32")
    inputs = [*stills, str(ASSETS / "sample_clip.mp4")]
    together = detector.analyze(inputs, max_frames=4)
    alone = [pd.DataFrame(detector.analyze(source, max_frames=4)) for source in inputs]
    expected = pd.concat(alone, ignore_index=True)
    pd.testing.assert_frame_equal(pd.DataFrame(together), expected)
    assert together.attrs["errors"] == [] and together.attrs["calibration"] is None
