"""Hostile inputs to ``facskit analyze``, ``report`` and ``plot`` and to ``Detector.analyze`` (issue 25): each
is one line naming the file and the problem, exit 1 or 2, never a traceback, and the other inputs go on.
Every hostile file is made here (no binary fixtures): symlink loops, 245-character names, empty and garbage
ONNX files, a pickled checkpoint, corrupt run.json, sidecars and parts, a file name that is HTML."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import copy_of, killed_after_parts
from PIL import Image

from facskit.analyze import outdir
from facskit.analyze.detector import Detector
from facskit.analyze.report import build_report, script_json
from facskit.analyze.result_files import read_result
from facskit.analyze.schema import CSV_SIDECAR_SUFFIX
from facskit.cli import main
from facskit.errors import UsageError
from facskit.io import read_image

ASSETS = Path(__file__).resolve().parents[2] / "facskit" / "assets"
CLIP = ASSETS / "sample_clip.mp4"
FACE = ASSETS / "sample_face.jpg"
PINNED = ["--backend", "torch", "--precision", "fp32"]


def analyze(out: Path, inputs: list, checkpoint: str, *extra: str) -> int:
    args = ["analyze", *map(str, inputs), "--out", str(out), "--model", checkpoint, *PINNED]
    return main([*args, "--max-frames", "4", "--chunk-frames", "2", *extra])


def one_line_error(err: str, *names: str) -> str:
    """The error lines of a command's stderr: no traceback, each naming what it is about."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error" in line]
    assert lines, err
    for name in names:
        assert any(name in line for line in lines), (name, lines)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ media and names


def test_a_symlink_loop_in_an_input_folder_is_one_problem_line(tmp_path, checkpoint, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").symlink_to(folder / "b.mp4")
    (folder / "b.mp4").symlink_to(folder / "a.mp4")
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    shutil.copy(FACE, folder / "face.jpg")
    out = tmp_path / "out"
    assert analyze(out, [folder], checkpoint) == 1
    one_line_error(capsys.readouterr().err, "a.mp4", "b.mp4", "dangling.jpg")
    assert read_result(out / "face.csv")["face_detected"].all()
    assert analyze(out, [folder / "b.mp4"], checkpoint) == 1  # named explicitly: the same one line
    assert "broken symbolic link" in one_line_error(capsys.readouterr().err, "b.mp4")


def test_a_245_character_file_name_is_analysed_under_a_shorter_name(tmp_path, checkpoint, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    long = folder / ("x" * 241 + ".jpg")
    shutil.copy(FACE, long)
    shutil.copy(FACE, folder / "z.jpg")  # after it in the listing: must not be lost
    out = tmp_path / "out"
    assert analyze(out, [folder], checkpoint) == 0
    names = sorted(p.name for p in out.glob("*.csv"))
    assert "z.csv" in names and len(names) == 3
    shortened = next(n for n in names if n.startswith("xxx"))
    assert len(shortened.encode()) <= outdir.MAX_NAME_BYTES + 4
    assert read_result(out / shortened).attrs["input"]["path"] == str(long.resolve())
    capsys.readouterr()
    assert analyze(out, [folder], checkpoint) == 0
    assert capsys.readouterr().err.count("done already") == 2


def test_a_folder_without_media_among_other_inputs(tmp_path, checkpoint, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert analyze(out, [empty, FACE], checkpoint) == 1
    one_line_error(capsys.readouterr().err, str(empty))
    assert (out / "sample_face.csv").is_file()


# ------------------------------------------------------------------------------ Detector.analyze inputs


@pytest.fixture(scope="module")
def detector(checkpoint) -> Detector:
    return Detector(model=checkpoint, backend="torch", precision="fp32")


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 0, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), None, 5, b"bytes", {"path": "x"}],
    ids=["empty-array", "tiny-array", "none", "int", "bytes", "dict"],
)
def test_detector_refuses_what_it_cannot_analyse_saying_what_it_takes(detector, bad) -> None:
    with pytest.raises(UsageError) as error:
        detector.analyze(bad)
    text = str(error.value)
    assert "\n" not in text
    assert "16 pixels" in text if isinstance(bad, np.ndarray) else "PIL image" in text


def test_detector_takes_a_pil_image_as_the_file_it_came_from(detector) -> None:
    with Image.open(FACE) as image:
        from_pil = detector.analyze(image)
        from_gray = detector.analyze(image.convert("L"))
    from_file = detector.analyze(str(FACE))
    from_array = detector.analyze(read_image(FACE))
    columns = [c for c in from_file.columns if c != "file"]
    pd.testing.assert_frame_equal(pd.DataFrame(from_pil)[columns], pd.DataFrame(from_file)[columns])
    pd.testing.assert_frame_equal(pd.DataFrame(from_pil), pd.DataFrame(from_array))
    assert len(from_gray) >= 1


# ------------------------------------------------------------------------------ models


def test_an_empty_or_garbage_onnx_file_is_one_line(tmp_path, capsys) -> None:
    empty, garbage = tmp_path / "empty.onnx", tmp_path / "garbage.onnx"
    empty.write_bytes(b"")
    garbage.write_bytes(b"\x08\x07garbage" * 10)
    for model in (empty, garbage):
        assert main(["analyze", str(FACE), "--out", str(tmp_path / "out"), "--model", str(model)]) == 1
        one_line_error(capsys.readouterr().err, str(model))


def test_a_pickled_checkpoint_names_a_command_that_exists(tmp_path, capsys) -> None:
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"model": argparse.Namespace(width=1)}, pickled)
    assert main(["analyze", str(FACE), "--out", str(tmp_path / "out"), "--model", str(pickled)]) == 1
    err = one_line_error(capsys.readouterr().err, str(pickled))
    assert "import-weights" in err and "allow_pickle=True" not in err


# ------------------------------------------------------------------------------ corrupt outputs


def test_a_corrupt_run_file_is_named(tmp_path, checkpoint, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text('{"model_hash": ')
    assert analyze(out, [FACE], checkpoint) == 1
    one_line_error(capsys.readouterr().err, str(out / "run.json"))


def test_a_corrupt_sidecar_is_redone_by_analyze_and_named_by_report(tmp_path, checkpoint, capsys) -> None:
    out = tmp_path / "out"
    assert analyze(out, [FACE], checkpoint) == 0
    sidecar = out / ("sample_face.csv" + CSV_SIDECAR_SUFFIX)
    good = sidecar.read_bytes()
    sidecar.write_text("{not json")
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 1
    one_line_error(capsys.readouterr().err, str(sidecar))
    assert main(["plot", str(out / "sample_face.csv"), "--out", str(tmp_path / "plots")]) == 1
    one_line_error(capsys.readouterr().err, str(sidecar))
    assert analyze(out, [FACE], checkpoint) == 0
    assert "analysed again" in capsys.readouterr().err
    assert json.loads(sidecar.read_bytes())["input"] == json.loads(good)["input"]


def test_a_corrupt_part_is_redone(tmp_path, checkpoint, capsys) -> None:
    out, expected = tmp_path / "out", tmp_path / "expected"
    assert analyze(expected, [CLIP], checkpoint, "--max-frames", "6") == 0
    with killed_after_parts(2):
        assert analyze(out, [CLIP], checkpoint, "--max-frames", "6") == 130
    part = out / ".parts" / "sample_clip" / "part-000000002.parquet"
    part.write_bytes(part.read_bytes()[:40])
    capsys.readouterr()
    assert analyze(out, [CLIP], checkpoint, "--max-frames", "6") == 0
    assert "part-000000002.parquet is unreadable" in capsys.readouterr().err
    pd.testing.assert_frame_equal(
        pd.DataFrame(read_result(out / "sample_clip.csv")),
        pd.DataFrame(read_result(expected / "sample_clip.csv")),
    )


def test_report_and_plot_name_a_result_that_is_not_a_table(tmp_path, capsys) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "broken.parquet").write_bytes(b"PAR1 not really")
    assert main(["report", str(folder), "--out", str(tmp_path / "r.html")]) == 1
    one_line_error(capsys.readouterr().err, "broken.parquet")
    assert main(["plot", str(folder / "broken.parquet"), "--out", str(tmp_path / "p")]) == 1
    one_line_error(capsys.readouterr().err, "broken.parquet")


# ------------------------------------------------------------------------------ the HTML report


def test_script_json_cannot_end_its_script_element() -> None:
    data = {"file": "<!--<script>.jpg", "other": "</script><b>&amp;\u2028\u2029 ]]>"}
    text = script_json(data)
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == data


def test_a_file_named_like_html_does_not_swallow_the_report(tmp_path, checkpoint) -> None:
    hostile = copy_of(FACE, tmp_path / "in" / "<!--<script>.jpg")
    out = tmp_path / "out"
    assert analyze(out, [hostile], checkpoint) == 0
    page = build_report(out)
    data = re.search(r"<script type='application/json' id='series-data'>(.*?)</script>", page, re.S)
    assert data is not None and "<" not in data.group(1)
    assert json.loads(data.group(1))["series"][0]["file"] == hostile.name
    assert page.count("<script") == 2 and page.count("</script>") == 2
    for section in ("Summary", "Time series", "Distributions and co-occurrence", "Key frames", "Model card"):
        assert f"<h2>{section}</h2>" in page
    assert "&lt;!--&lt;script&gt;.jpg" in page  # escaped wherever it is shown as text
