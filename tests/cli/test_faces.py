"""``facskit faces``: the CSV it writes and how it treats bad input (one line each, right exit code)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from facskit.cli import main
from facskit.faces import FACE_COLUMNS


def test_writes_one_row_per_face_per_frame(
    tmp_path: Path, media_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "faces.csv"
    code = main(["faces", str(media_dir / "single_face.jpg"), str(media_dir / "single_face.mp4"),
                 "--frame-step", "6", "--out", str(out)])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out)
    assert list(table.columns) == FACE_COLUMNS
    video = table[table.file.str.endswith("single_face.mp4")]
    assert list(video.frame) == list(range(0, 72, 6)) and video.face_detected.all()
    assert video.face_id.nunique() == 1
    assert video.timestamp.diff().dropna().gt(0).all()
    still = table[table.file.str.endswith("single_face.jpg")]
    assert len(still) == 1 and still.face_detected.item() and still.frame.item() == 0
    assert "frames/s" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed, not left behind


def test_frame_without_face_is_a_row(tmp_path: Path, media_dir: Path) -> None:
    out = tmp_path / "faces.csv"
    assert (
        main(["faces", str(media_dir / "no_face.mp4"), "--frame-step", "30", "--out", str(out), "--quiet"])
        == 0
    )
    table = pd.read_csv(out)
    assert list(table.frame) == [0, 30, 60, 90]
    assert not table.face_detected.any() and table.x_0.isna().all() and (table.face_id == -1).all()


def test_bad_inputs_are_reported_and_the_rest_processed(
    tmp_path: Path, media_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    shutil.copy(media_dir / "single_face.jpg", tmp_path / "good.jpg")
    out = tmp_path / "faces.csv"
    code = main(["faces", str(tmp_path / "missing.mp4"), str(fake), str(tmp_path / "good.jpg"),
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "missing.mp4" in err and "fake.jpg" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line]) == 2  # one line per bad input, quiet otherwise
    table = pd.read_csv(out)
    assert list(table.file.map(lambda p: Path(p).name)) == ["good.jpg"]


def test_no_valid_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "faces.csv"
    assert main(["faces", str(tmp_path / "nothing-here"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing-here" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["faces", str(tmp_path), "--out", str(tmp_path / "missing-folder" / "x.csv")]) == 2
