"""``facskit analyze`` end to end on sample media with a tiny untrained model: one result per input plus
summary.csv, OpenFace columns, skip and resume, and the bad cases (truncated video, missing input, output
folder not writable, disk full, Ctrl-C)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from facskit.analyze import runner, still_result
from facskit.analyze.result_files import read_result
from facskit.cli import main
from facskit.io import iter_frames

pytestmark = pytest.mark.media
FRAMES = 8
CHUNK = 3


@pytest.fixture(scope="module")
def inputs(media_dir) -> list[str]:
    return [str(media_dir / "single_face.jpg"), str(media_dir / "single_face.mp4")]


def _analyze(out: Path, inputs: list[str], checkpoint: str, *extra: str) -> int:
    args = ["analyze", *inputs, "--out", str(out), "--model", checkpoint, "--max-frames", str(FRAMES)]
    return main([*args, "--chunk-frames", str(CHUNK), "--quiet", *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, inputs, checkpoint) -> Path:
    out = tmp_path_factory.mktemp("analysis")
    assert _analyze(out, inputs, checkpoint, "--save-heatmaps") == 0
    return out


def test_one_result_per_input_plus_summary(finished, inputs) -> None:
    names = sorted(p.name for p in finished.iterdir())
    # single_face.jpg and single_face.mp4 share a stem, so the extension joins the name.
    for name in ("single_face_jpg.csv", "single_face_mp4.csv", "summary.csv", "run.json"):
        assert name in names
    assert ".parts" not in names and not [n for n in names if n.endswith(".tmp")]
    video = read_result(finished / "single_face_mp4.csv")
    assert list(video["frame"].unique()) == list(range(FRAMES))
    assert video["face_detected"].all()
    assert video.attrs["model_source"].endswith("micro.ckpt")
    summary = pd.read_csv(finished / "summary.csv")
    assert sorted(summary["file"]) == sorted(inputs)
    assert {"frames", "AU12_mean", "AU12_max", "AU12_active"} <= set(summary.columns)
    maps = np.load(sorted((finished / "single_face_mp4.heatmaps").glob("*.npz"))[0])
    assert maps["heatmaps"].dtype == np.float16 and maps["heatmaps"].shape[1:] == (5, 16, 16)


def test_rerun_skips_finished_inputs(finished, inputs, checkpoint, capsys) -> None:
    before = {p: p.stat().st_mtime_ns for p in finished.glob("*.csv") if p.name != "summary.csv"}
    assert (
        main(["analyze", *inputs, "--out", str(finished), "--model", checkpoint, "--max-frames", str(FRAMES)])
        == 0
    )
    assert "skipped" in capsys.readouterr().err
    assert before == {p: p.stat().st_mtime_ns for p in before}


def test_other_options_in_the_same_folder_are_refused(finished, inputs, checkpoint, capsys) -> None:
    assert _analyze(finished, inputs, checkpoint, "--smooth", "5") == 2
    assert "other options" in capsys.readouterr().err


def test_interrupted_video_resumes_from_its_last_chunk(
    tmp_path, finished, inputs, checkpoint, monkeypatch
) -> None:
    write_part = runner.write_part
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the video's first chunk (an image writes no parts), then Ctrl-C
            raise KeyboardInterrupt
        return write_part(*args, **kwargs)

    monkeypatch.setattr(runner, "write_part", interrupted)
    assert _analyze(tmp_path, inputs, checkpoint, "--save-heatmaps") == 130
    assert (tmp_path / "single_face_jpg.csv").is_file()
    assert not (tmp_path / "single_face_mp4.csv").exists()
    assert len(list((tmp_path / ".parts" / "single_face_mp4").glob("part-*.parquet"))) == 1
    monkeypatch.setattr(runner, "write_part", write_part)
    assert _analyze(tmp_path, inputs, checkpoint, "--save-heatmaps") == 0
    resumed = read_result(tmp_path / "single_face_mp4.csv")
    expected = read_result(finished / "single_face_mp4.csv")
    pd.testing.assert_frame_equal(pd.DataFrame(resumed), pd.DataFrame(expected))
    assert not (tmp_path / ".parts").exists()


def test_openface_columns_and_parquet(tmp_path, inputs, checkpoint) -> None:
    assert _analyze(tmp_path, inputs[1:], checkpoint, "--openface-columns", "--format", "parquet") == 0
    table = pd.read_parquet(tmp_path / "single_face.parquet")
    for name in ("frame", "face_id", "timestamp", "confidence", "success", "AU06_r", "AU06_c"):
        assert name in table.columns
    assert table["frame"].tolist() == list(range(1, FRAMES + 1))
    assert read_result(tmp_path / "single_face.parquet").attrs["aus"] == [6, 10, 12, 14, 17]


def _truncated_video(path: Path, media_dir: Path) -> Path:
    """An AVI cut at 70%: its first frames decode, then the decoder reports the truncation."""
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
    for frame, _ in zip(iter_frames(media_dir / "single_face.mp4"), range(20), strict=False):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame.image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    return path


def test_bad_inputs_are_reported_and_the_rest_kept(tmp_path, media_dir, checkpoint, capsys) -> None:
    broken = _truncated_video(tmp_path / "broken.avi", media_dir)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    out = tmp_path / "out"
    args = [str(broken), str(garbage), str(media_dir / "single_face.jpg")]
    assert main(["analyze", *args, "--out", str(out), "--model", checkpoint, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "garbage.mp4" in err and "broken.avi" in err and "Traceback" not in err
    partial = read_result(out / "broken.csv")
    assert 0 < partial["frame"].nunique() < 20
    assert "truncated" in partial.attrs["errors"][0]["error"]
    assert not (out / "garbage.csv").exists()
    assert (out / "single_face.csv").is_file()
    assert main(["analyze", str(tmp_path / "missing.mp4"), "--out", str(out), "--model", checkpoint]) == 2


def test_output_folder_not_writable(tmp_path, inputs, checkpoint, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _analyze(blocker / "out", inputs, checkpoint) == 1
    assert "not writable" in capsys.readouterr().err


@pytest.mark.parametrize("which", [0, 1], ids=["image", "video"])
def test_disk_full_leaves_no_half_written_result(
    tmp_path, inputs, checkpoint, monkeypatch, capsys, which
) -> None:
    def full(path, *args, **kwargs):
        Path(path).write_text("file,frame\n")  # a partial write, then the device is full
        raise OSError(errno.ENOSPC, "No space left on device")

    # Both writers: pandas' for videos, the array writer for stills (facskit.analyze.still_result).
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, *a, **k: full(path))
    monkeypatch.setattr(still_result, "write_csv", full)
    assert _analyze(tmp_path, inputs[which : which + 1], checkpoint) == 1
    assert "No space left on device" in capsys.readouterr().err
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix in (".csv", ".tmp")]
    assert leftovers == []


def test_overlay_video(tmp_path, inputs, checkpoint) -> None:
    assert _analyze(tmp_path, inputs[1:], checkpoint, "--overlay-video", "--overlay-aus", "12") == 0
    video = tmp_path / "single_face.overlay.mp4"
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES
    assert frames[0].shape[1] > 640  # the frame plus the bar-chart panel
    shutil.rmtree(tmp_path)
