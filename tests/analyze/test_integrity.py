"""``facskit analyze`` never skips, duplicates or mixes results (issue 25): a finished result is recognised by
the input and options that made it, not by its name; one run writes a folder at a time; a resume never
mixes backends; reserved and colliding names, summary.csv over the whole folder, outputs never taken as
inputs, multi-page TIFFs, and what killed runs leave behind. Then a property: any interleaving of kills,
reruns and concurrent runs on one ``--out`` ends with one row per (frame, face), equal to one uninterrupted
run.

Everything runs on the clip bundled with facskit (no ../shared media needed) and a micro model, a few
frames at a time; hostile files are made here, in tmp_path.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from helpers import copy_of, killed_after_parts
from PIL import Image

from facskit.analyze import assemble as assembly
from facskit.analyze import outdir
from facskit.analyze.result_files import read_attrs, read_result
from facskit.analyze.schema import CSV_SIDECAR_SUFFIX
from facskit.cli import main
from facskit.io import iter_frames, probe

ASSETS = Path(__file__).resolve().parents[2] / "facskit" / "assets"
CLIP = ASSETS / "sample_clip.mp4"
FACE = ASSETS / "sample_face.jpg"
FRAMES = 6
CHUNK = 2
# torch fp32 pinned: auto would time the backends first (seconds) and the tests are about files, not speed.
PINNED = ("--backend", "torch", "--precision", "fp32")


def analyze(out: Path, inputs: list[Path | str], checkpoint: str, *extra: str, frames: int = FRAMES) -> int:
    args = ["analyze", *map(str, inputs), "--out", str(out), "--model", checkpoint]
    options = ["--max-frames", str(frames), "--chunk-frames", str(CHUNK), *extra]
    if "--backend" not in extra:
        options += PINNED
    return main([*args, *options])


def rows_of(path: Path) -> pd.DataFrame:
    return pd.DataFrame(read_result(path))


def assert_one_row_per_face_and_frame(result: pd.DataFrame) -> None:
    assert not result.duplicated(["frame", "face_id"]).any()
    assert result["frame"].is_monotonic_increasing


def other_clip(path: Path, frames: int = FRAMES + 2) -> Path:
    """A different video of the same length class: the bundled clip mirrored, re-encoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=24)
    stream.width, stream.height, stream.pix_fmt = 480, 270, "yuv420p"
    for frame, _ in zip(iter_frames(CLIP), range(frames), strict=False):
        image = np.ascontiguousarray(frame.image[:, ::-1])
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    return copy_of(CLIP, tmp_path / "d1" / "clip.mp4")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, checkpoint) -> tuple[Path, pd.DataFrame]:
    """One uninterrupted run on a fixed copy of the clip: (the copy, its result)."""
    root = tmp_path_factory.mktemp("reference")
    source = copy_of(CLIP, root / "in" / "clip.mp4")
    assert analyze(root / "out", [source], checkpoint) == 0
    return source, rows_of(root / "out" / "clip.csv")


# ------------------------------------------------------------------------------ 1. identity, not name


def test_a_different_input_with_the_same_name_is_not_skipped(tmp_path, clip, checkpoint, capsys) -> None:
    out = tmp_path / "out"
    second = other_clip(tmp_path / "d2" / "clip.mp4")
    assert analyze(out, [clip], checkpoint) == 0
    assert analyze(out, [second], checkpoint) == 0
    err = capsys.readouterr().err
    assert "done already" not in err
    results = sorted(p.name for p in out.glob("clip*.csv"))
    assert len(results) == 2 and "clip.csv" in results  # the second gets clip-<hash of its path>.csv
    by_input = {read_attrs(out / name)["input"]["path"]: name for name in results}
    assert set(by_input) == {str(clip.resolve()), str(second.resolve())}
    first, other = (
        rows_of(out / by_input[str(clip.resolve())]),
        rows_of(out / by_input[str(second.resolve())]),
    )
    assert not np.allclose(first["x_30"], other["x_30"], equal_nan=True)  # mirrored: other landmarks
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["file"]) == {str(clip), str(second)}
    # Reruns of either (or both) find their own results: nothing redone, names stable.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("clip*.csv")}
    assert analyze(out, [second, clip], checkpoint) == 0
    assert capsys.readouterr().err.count("done already") == 2
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("clip*.csv")}


def test_an_input_changed_since_its_result_is_analysed_again(tmp_path, clip, checkpoint, capsys) -> None:
    out = tmp_path / "out"
    assert analyze(out, [clip], checkpoint) == 0
    before = rows_of(out / "clip.csv")
    other_clip(clip)  # the same path, new content
    assert analyze(out, [clip], checkpoint) == 0
    assert "earlier version of the input" in capsys.readouterr().err
    after = rows_of(out / "clip.csv")
    assert sorted(p.name for p in out.glob("*.csv")) == ["clip.csv", "summary.csv"]
    assert not np.allclose(before["x_30"], after["x_30"], equal_nan=True)
    assert read_attrs(out / "clip.csv")["input"]["size"] == clip.stat().st_size


# ------------------------------------------------------------------------------ 2. one run at a time


def test_a_run_into_a_folder_another_run_holds_is_refused(tmp_path, clip, checkpoint, capsys) -> None:
    out = tmp_path / "out"
    with outdir.output_lock(out):
        assert analyze(out, [clip], checkpoint) == 1
    err = capsys.readouterr().err
    assert "being written by another facskit analyze" in err and f"pid {os.getpid()}" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1 and "Traceback" not in err
    assert not list(out.glob("*.csv")) and not (out / outdir.LOCK_FILE).exists()
    assert analyze(out, [clip], checkpoint) == 0
    assert not (out / outdir.LOCK_FILE).exists()


def test_the_lock_of_a_killed_run_does_not_block(tmp_path, clip, checkpoint) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(out / outdir.LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid())\n"
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert analyze(out, [clip], checkpoint) == 1  # held: refused
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
    assert (out / outdir.LOCK_FILE).exists()  # left by the killed holder, unlocked by the OS
    assert analyze(out, [clip], checkpoint) == 0


def test_overlapping_parts_are_dropped_before_they_can_duplicate_rows(
    tmp_path, reference, checkpoint
) -> None:
    """Parts of two chunkings of one input (what two unlocked runs used to leave) never both reach the
    result: the overlapping one is redone."""
    source, expected = reference
    out = tmp_path / "out"
    with killed_after_parts(2):
        assert analyze(out, [source], checkpoint) == 130
    parts = sorted((out / ".parts" / "clip").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-000000000.parquet", "part-000000002.parquet"]
    overlapping = parts[1].with_name("part-000000001.parquet")  # frames 1-2 again, as a 3-frame chunking
    shutil.copy(parts[1], overlapping)
    assert analyze(out, [source], checkpoint, "--chunk-frames", "3") == 0
    result = rows_of(out / "clip.csv")
    assert_one_row_per_face_and_frame(result)
    pd.testing.assert_frame_equal(result, expected)


# ------------------------------------------------------------------------------ 3. backends never mixed


def test_a_resume_never_mixes_backends(tmp_path, reference, checkpoint, capsys) -> None:
    source, expected = reference
    out = tmp_path / "out"
    with killed_after_parts(1):
        assert analyze(out, [source], checkpoint) == 130  # torch fp32, one part written
    capsys.readouterr()
    # Other explicit ones are refused, naming the difference.
    assert analyze(out, [source], checkpoint, "--backend", "torch", "--precision", "bf16") == 2
    err = capsys.readouterr().err
    assert 'precision: "fp32" there, "bf16" now' in err and "Traceback" not in err
    # Left at auto, the folder's backend and precision are taken: the file is fp32 throughout.
    assert analyze(out, [source], checkpoint, "--backend", "auto") == 0
    assert "resuming at frame 2" in capsys.readouterr().err
    attrs = read_attrs(out / "clip.csv")
    assert (attrs["backend"], attrs["precision"]) == ("torch", "fp32")
    assert attrs["run_options"]["precision"] == "fp32"
    pd.testing.assert_frame_equal(rows_of(out / "clip.csv"), expected)


def test_parts_of_another_backend_restart_the_file(tmp_path, reference, checkpoint, capsys) -> None:
    """A folder whose run.json does not say (an older facskit, or removed): the parts themselves record
    their backend, and parts of another one are discarded, never continued."""
    source, _ = reference
    out = tmp_path / "out"
    with killed_after_parts(1):
        assert analyze(out, [source], checkpoint, "--backend", "torch", "--precision", "bf16") == 130
    (out / outdir.RUN_FILE).unlink()
    capsys.readouterr()
    assert analyze(out, [source], checkpoint) == 0
    assert "made with other options (precision" in capsys.readouterr().err
    reference_bf16 = tmp_path / "bf16"
    assert analyze(reference_bf16, [source], checkpoint, "--backend", "torch", "--precision", "bf16") == 0
    fp32 = tmp_path / "fp32"
    assert analyze(fp32, [source], checkpoint) == 0
    pd.testing.assert_frame_equal(rows_of(out / "clip.csv"), rows_of(fp32 / "clip.csv"))
    assert read_attrs(out / "clip.csv")["precision"] == "fp32"


# ------------------------------------------------------------------------------ 4-6. names and folders


def test_an_input_named_summary_keeps_its_result(tmp_path, checkpoint) -> None:
    image = copy_of(FACE, tmp_path / "in" / "summary.jpg")
    out = tmp_path / "out"
    assert analyze(out, [image], checkpoint) == 0
    assert read_result(out / "summary_jpg.csv")["face_detected"].all()
    assert list(pd.read_csv(out / "summary.csv")["file"]) == [str(image)]
    assert analyze(out, [image], checkpoint) == 0  # the rerun reads its folder without a complaint


def test_summary_describes_every_result_in_the_folder(tmp_path, clip, checkpoint) -> None:
    image = tmp_path / "d1" / "face.jpg"
    shutil.copy(FACE, image)
    out = tmp_path / "out"
    assert analyze(out, [clip, image], checkpoint) == 0
    full = pd.read_csv(out / "summary.csv")
    assert analyze(out, [image], checkpoint) == 0  # a subset into the same folder
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), full)
    assert set(full["file"]) == {str(clip), str(image)}


def test_overlay_videos_are_never_inputs(tmp_path, clip, checkpoint, capsys) -> None:
    folder = clip.parent
    assert analyze(folder, [folder], checkpoint, "--overlay-video") == 0
    assert (folder / "clip.overlay.mp4").is_file()
    capsys.readouterr()
    assert analyze(folder, [folder], checkpoint, "--overlay-video") == 0
    assert "not analysed as an input" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == [
        "clip.csv",
        "clip.csv.meta.json",
        "clip.mp4",
        "clip.overlay.mp4",
        "run.json",
        "summary.csv",
    ]


# ------------------------------------------------------------------------------ 7. multi-page TIFF


def multipage_tiff(path: Path) -> Path:
    """Three pages: the face, the face mirrored, and a grey page without a face."""
    face = Image.open(FACE).convert("RGB")
    pages = [face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("RGB", face.size, (128, 128, 128))]
    face.save(path, save_all=True, append_images=pages)
    return path


def test_every_page_of_a_multipage_tiff_is_a_frame(tmp_path, checkpoint) -> None:
    stack = multipage_tiff(tmp_path / "stack.tif")
    assert probe(stack).frame_count == 3
    assert [f.index for f in iter_frames(stack)] == [0, 1, 2]
    out = tmp_path / "out"
    assert analyze(out, [stack], checkpoint) == 0
    result = rows_of(out / "stack.csv")
    assert sorted(result["frame"].unique()) == [0, 1, 2]
    detected = result.groupby("frame")["face_detected"].any()
    assert detected.tolist() == [True, True, False]
    assert_one_row_per_face_and_frame(result)


# ------------------------------------------------------------------------------ 9. leftovers


def test_a_rerun_removes_what_a_killed_run_left(tmp_path, clip, checkpoint) -> None:
    out = tmp_path / "out"
    assert analyze(out, [clip], checkpoint) == 0
    (out / ".parts" / "gone").mkdir(parents=True)  # a failed input's empty folder
    (out / ".clip.csv.abcd1234.tmp").write_bytes(b"")  # SIGKILL between mkstemp and os.replace
    (out / ".parts" / "clip").mkdir()
    (out / ".parts" / "clip" / ".part-000000004.parquet.x1y2z3w4.tmp").write_bytes(b"")
    (out / ".clip.overlay.mp4.4242.tmp.mp4").write_bytes(b"")
    (out / ".write-test-abcdefgh").write_bytes(b"")
    assert analyze(out, [clip], checkpoint) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.csv",
        "clip.csv.meta.json",
        "run.json",
        "summary.csv",
    ]


def test_a_failed_input_leaves_no_empty_parts_folder(tmp_path, checkpoint, capsys) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    out = tmp_path / "out"
    assert analyze(out, [garbage, FACE], checkpoint) == 1
    assert "garbage.mp4" in capsys.readouterr().err
    assert not (out / ".parts").exists()


def test_a_result_without_its_metadata_is_repaired(tmp_path, reference, checkpoint, capsys) -> None:
    """Killed after the CSV and before its sidecar: the parts are still there, the rerun redoes the result
    from them instead of calling a CSV without metadata done."""
    source, expected = reference
    out = tmp_path / "out"
    assemble = assembly.assemble

    def killed_before_cleanup(*args, **kwargs):
        assemble(*args, **kwargs)
        raise KeyboardInterrupt

    assembly.assemble = killed_before_cleanup
    try:
        assert analyze(out, [source], checkpoint) == 130
    finally:
        assembly.assemble = assemble
    (out / ("clip.csv" + CSV_SIDECAR_SUFFIX)).unlink()
    assert (out / ".parts" / "clip").is_dir()
    capsys.readouterr()
    assert analyze(out, [source], checkpoint) == 0
    assert "no complete metadata" in capsys.readouterr().err
    assert not (out / ".parts").exists()
    pd.testing.assert_frame_equal(rows_of(out / "clip.csv"), expected)


def test_a_truncated_result_is_redone_and_refused_by_report_and_plot(
    tmp_path, clip, checkpoint, capsys
) -> None:
    out = tmp_path / "out"
    assert analyze(out, [clip], checkpoint) == 0
    result = out / "clip.csv"
    complete = result.read_bytes()
    result.write_bytes(complete[: len(complete) * 2 // 3])
    capsys.readouterr()
    for command in (
        ["report", str(out), "--out", str(tmp_path / "r.html")],
        ["plot", str(result), "--out", str(tmp_path / "f")],
    ):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "cut short" in err and str(result) in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()
    assert analyze(out, [clip], checkpoint) == 0
    assert result.read_bytes() == complete


# ------------------------------------------------------------------------------ property: kill / rerun / race


def leave_a_part_half_written(part_args: tuple, number: int) -> None:
    """What a SIGKILL mid-write leaves besides the parts before: the part's temporary file."""
    Path(part_args[0], f".part-{number:09d}.parquet.killed00.tmp").write_bytes(b"")


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != outdir.LOCK_FILE
    }


def random_schedule(seed: int) -> list[tuple[str, int, int]]:
    """1-4 events: ("kill", after k parts, chunk frames), ("concurrent", 0, 0) - a second run while one holds
    the folder - or ("rerun", 0, chunk frames), a full run with any chunking."""
    rng = random.Random(seed)
    events = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["kill", "kill", "concurrent", "rerun"])
        if kind == "kill":
            events.append((kind, rng.randint(1, 3), rng.choice([1, 2, 4])))
        elif kind == "concurrent":
            events.append((kind, 0, 0))
        else:
            events.append((kind, 0, rng.choice([1, 3, 5])))
    return events


SCHEDULES = [
    [("kill", 1, 2), ("concurrent", 0, 0), ("kill", 2, 1)],  # the cases written out, then random ones
    [("concurrent", 0, 0), ("kill", 3, 1), ("rerun", 0, 5), ("kill", 1, 4)],
    *(random_schedule(seed) for seed in range(4)),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda events: "-".join(e[0] for e in events))
def test_any_interleaving_of_kills_reruns_and_concurrent_runs_ends_in_one_clean_result(
    schedule, reference, checkpoint
) -> None:
    source, expected = reference
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        for event, k, chunk in schedule:
            if event == "kill":
                with killed_after_parts(k, on_kill=leave_a_part_half_written):
                    assert analyze(out, [source], checkpoint, "--chunk-frames", str(chunk)) in (0, 130)
            elif event == "concurrent":
                before = snapshot(out) if out.exists() else {}
                with outdir.output_lock(out):
                    assert analyze(out, [source], checkpoint) == 1
                assert snapshot(out) == before
            else:
                assert analyze(out, [source], checkpoint, "--chunk-frames", str(chunk)) == 0
        assert analyze(out, [source], checkpoint) == 0
        result = rows_of(out / "clip.csv")
        assert_one_row_per_face_and_frame(result)
        pd.testing.assert_frame_equal(result, expected)
        assert sorted(p.name for p in out.iterdir()) == [
            "clip.csv",
            "clip.csv.meta.json",
            "run.json",
            "summary.csv",
        ]


def _cli(out: Path, source: Path, checkpoint: str, frames: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "facskit",
        "analyze",
        str(source),
        "--out",
        str(out),
        "--model",
        checkpoint,
        "--max-frames",
        str(frames),
        "--chunk-frames",
        "2",
        *PINNED,
        "--serial",
    ]


@pytest.mark.slow
def test_real_processes_sigkill_and_a_concurrent_run(tmp_path, checkpoint) -> None:
    """Separate processes: one SIGKILLed right after a part lands, then two started together; the folder
    ends with one clean result equal to an uninterrupted run, and no process printed a traceback."""
    frames = 40
    source = copy_of(CLIP, tmp_path / "in" / "clip.mp4")
    expected_dir = tmp_path / "expected"
    assert analyze(expected_dir, [source], checkpoint, "--serial", frames=frames) == 0
    out = tmp_path / "out"
    victim = subprocess.Popen(_cli(out, source, checkpoint, frames), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if len(list((out / ".parts" / "clip").glob("part-*.parquet"))) >= 2:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    victim.wait(30)
    racers = [subprocess.Popen(_cli(out, source, checkpoint, frames), stderr=subprocess.PIPE, text=True)]
    racers.append(subprocess.Popen(_cli(out, source, checkpoint, frames), stderr=subprocess.PIPE, text=True))
    outcomes = [(p.wait(180), p.stderr.read()) for p in racers]
    for code, err in outcomes:
        assert "Traceback" not in err
        assert code == 0 or (code == 1 and "being written by another facskit analyze" in err)
    assert 0 in [code for code, _ in outcomes]
    result = rows_of(out / "clip.csv")
    assert_one_row_per_face_and_frame(result)
    assert result["frame"].nunique() == frames
    pd.testing.assert_frame_equal(result, rows_of(expected_dir / "clip.csv"))
    assert sorted(p.name for p in out.iterdir()) == [
        "clip.csv",
        "clip.csv.meta.json",
        "run.json",
        "summary.csv",
    ]
    summary = json.loads((out / outdir.RUN_FILE).read_text())
    assert (summary["backend"], summary["precision"]) == ("torch", "fp32")
