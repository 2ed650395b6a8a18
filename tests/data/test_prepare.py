"""synth -> prepare -> read back: labels round-trip, every frame accounted for, kill + rerun = clean run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from facskit.align import align_face, alignment_matrix, points_to_crop
from facskit.aus import BP4D_AUS, DISFA_AUS, au_column
from facskit.data import PreparedCache, prepare_dataset, read_bp4d, read_disfa
from facskit.data import prepare as prepare_module
from facskit.data.cache import INDEX_FILE, PART_DIR, SHARD_DIR
from facskit.errors import DatasetError
from facskit.io import iter_frames
from facskit.synth import GROUND_TRUTH_FILE, label_intensity, write_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def disfa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("disfa")
    write_dataset(root, "disfa", subjects=3, frames=10, seed=3, quiet=True)
    return root


@pytest.fixture(scope="module")
def bp4d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bp4d")
    write_dataset(root, "bp4d", subjects=2, frames=8, sequences=1, seed=4, quiet=True)
    # One frame without a face and one that cannot be decoded, to be recorded, not dropped.
    sequence = sorted(p for p in root.glob("*/T1") if p.is_dir())[-1]
    cv2.imwrite(str(sequence / "0003.jpg"), np.full((256, 256, 3), 128, np.uint8))
    (sequence / "0005.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


def truth(root: Path, keys: tuple[str, ...] = ("subject", "sequence", "frame")) -> pd.DataFrame:
    return pd.read_parquet(root / GROUND_TRUTH_FILE).set_index(list(keys))


def cache_items(path: Path) -> tuple[pd.DataFrame, list[bytes]]:
    cache = PreparedCache(path)
    return cache.frames, [cache.image(i).tobytes() for i in range(len(cache))]


def test_disfa_round_trip_with_dataset_landmarks(disfa: Path, tmp_path: Path) -> None:
    index = read_disfa(disfa)
    assert index.problems == [] and len(index) == 30
    summary = prepare_dataset(index, tmp_path / "cache", workers=1, progress=False)
    assert summary.prepared == 30 and summary.skipped == {} and summary.failed_sequences == []
    cache = PreparedCache(tmp_path / "cache")
    assert len(cache) == 30 and cache.aus == DISFA_AUS
    assert (cache.index["landmark_source"] == "dataset").all()
    gt = truth(
        disfa, ("subject", "frame")
    )  # the generator numbers DISFA's one sequence "1", the reader "left"
    keep = [i for i in range(68) if i not in (60, 64)]
    for i in range(len(cache)):
        item = cache[i]
        row = gt.loc[(item["subject"], item["frame"])]
        expected = label_intensity(np.array([row[au_column(c)] for c in DISFA_AUS]))
        np.testing.assert_array_equal(item["intensities"], expected.astype(np.float32))
        points = np.stack([[row[f"x_{j}"] for j in range(68)], [row[f"y_{j}"] for j in range(68)]], 1)
        expected_points = points_to_crop(points, alignment_matrix(points))
        error = np.linalg.norm(item["landmarks"] - expected_points, axis=1)
        assert error[keep].max() < 1.0, (item["subject"], item["frame"], error.max())
        assert error[[60, 64]].max() < 3.0  # estimated inner mouth corners (66-point DISFA landmarks)
    # The crop is the right video frame: it equals the aligned decoded frame with the true landmarks.
    first = cache.index[cache.index["subject"] == "SN002"].iloc[4]
    frame = next(f for f in iter_frames(first["source"]) if f.index == first["source_frame"])
    row = gt.loc[("SN002", int(first["frame"]))]
    points = np.stack([[row[f"x_{j}"] for j in range(68)], [row[f"y_{j}"] for j in range(68)]], 1)
    position = int(np.flatnonzero(cache.index.index == first.name)[0])
    np.testing.assert_array_equal(cache.image(position), align_face(frame.image, points).crop)


def test_bp4d_round_trip_with_detection_and_skips(bp4d: Path, tmp_path: Path) -> None:
    index = read_bp4d(bp4d)
    assert [p for p in index.problems] == []
    summary = prepare_dataset(index, tmp_path / "cache", workers=2, progress=False)
    assert summary.frames == len(index) == 16
    assert summary.skipped == {"no_face": 1, "unreadable": 1}
    assert any("0005.jpg: unreadable frame" in str(p) for p in summary.problems)
    cache = PreparedCache(tmp_path / "cache")
    frames = cache.frames
    assert len(cache) == 14 and len(frames) == 16
    # Every frame is a row: the labels of all 16 equal the reader's (9 = unknown -> NaN), skipped or not.
    columns = [au_column(c) for c in BP4D_AUS]
    pd.testing.assert_frame_equal(
        frames[["subject", "sequence", "frame", *columns]].reset_index(drop=True),
        index.frames[["subject", "sequence", "frame", *columns]].reset_index(drop=True),
    )
    gt = truth(bp4d)
    for row in frames.itertuples(index=False):
        expected = gt.loc[(row.subject, row.sequence, row.frame)]
        for code in BP4D_AUS:
            value = getattr(row, au_column(code))
            if expected["label_unknown"]:
                assert np.isnan(value)
            else:
                assert value == label_intensity(np.array([expected[au_column(code)]]))[0]
    skipped = frames[frames["skip_reason"] != ""]
    assert sorted(skipped["frame"]) == [3, 5] and (skipped["offset"] == -1).all()
    assert skipped[[f"lx_{i}" for i in range(68)]].isna().all().all()
    assert (cache.index["landmark_source"] == "detected").all() and cache.index["face_detected"].all()
    # dlib on the synthetic faces: landmarks close to the truth after the same alignment.
    errors = []
    for i in range(len(cache)):
        item = cache[i]
        row = gt.loc[(item["subject"], item["sequence"], item["frame"])]
        points = np.stack([[row[f"x_{j}"] for j in range(68)], [row[f"y_{j}"] for j in range(68)]], 1)
        errors.append(
            np.linalg.norm(item["landmarks"] - points_to_crop(points, alignment_matrix(points)), axis=1)
        )
    assert np.median(errors) < 6.0
    assert cache.index[["yaw", "pitch", "roll"]].notna().all().all()


def run_cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "facskit", "prepare", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the kill reaches the workers too
    )


def test_killed_prepare_resumes_to_the_same_cache(disfa: Path, tmp_path: Path) -> None:
    options = ["--landmarks", "detect", "--shard-size", "4", "--detect-every", "1", "--quiet"]
    killed = tmp_path / "killed"
    process = run_cli("disfa", str(disfa), "--out", str(killed), "--workers", "1", *options)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if list((killed / PART_DIR).glob("*.parquet")):
            break
        time.sleep(0.01)
    assert process.poll() is None, "prepare finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    parts = list((killed / PART_DIR).glob("*.parquet"))
    assert 1 <= len(parts) < 3 and not (killed / INDEX_FILE).exists()

    rerun = run_cli("disfa", str(disfa), "--out", str(killed), "--workers", "2", *options)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "already done before this run" in out and f"{len(parts)} already done" in out.replace("(", "")

    clean = tmp_path / "clean"
    index = read_disfa(disfa)
    prepare_dataset(index, clean, workers=1, landmarks="detect", shard_size=4, detect_every=1, progress=False)
    killed_frames, killed_images = cache_items(killed)
    clean_frames, clean_images = cache_items(clean)
    pd.testing.assert_frame_equal(killed_frames, clean_frames)
    assert killed_images == clean_images
    assert sorted(p.name for p in (killed / SHARD_DIR).iterdir()) == sorted(
        p.name for p in (clean / SHARD_DIR).iterdir()
    )


def test_failed_sequence_is_reported_and_redone(disfa: Path, tmp_path: Path, monkeypatch) -> None:
    index = read_disfa(disfa)
    original = prepare_module._prepare_sequence

    def failing(task):
        if task.rows["subject"].iloc[0] == "SN002":
            raise RuntimeError("injected failure")
        return original(task)

    monkeypatch.setattr(prepare_module, "_prepare_sequence", failing)
    summary = prepare_dataset(index, tmp_path / "cache", workers=1, progress=False, shard_size=3)
    assert len(summary.failed_sequences) == 1 and "injected failure" in summary.text()
    partial = pd.read_parquet(tmp_path / "cache" / INDEX_FILE)
    assert sorted(partial["subject"].unique()) == ["SN001", "SN003"]
    monkeypatch.setattr(prepare_module, "_prepare_sequence", original)
    again = prepare_dataset(index, tmp_path / "cache", workers=1, progress=False, shard_size=3)
    assert again.resumed_sequences == 2 and again.prepared == 30 and again.failed_sequences == []
    reference = tmp_path / "reference"
    prepare_dataset(index, reference, workers=2, progress=False, shard_size=3)
    resumed_frames, resumed_images = cache_items(tmp_path / "cache")
    reference_frames, reference_images = cache_items(reference)
    pd.testing.assert_frame_equal(resumed_frames, reference_frames)
    assert resumed_images == reference_images


def test_other_settings_and_concurrent_runs_are_refused(disfa: Path, tmp_path: Path) -> None:
    index = read_disfa(disfa)
    index.frames = index.frames[index.frames["subject"] == "SN001"]
    prepare_dataset(index, tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(DatasetError, match="other settings.*landmarks"):
        prepare_dataset(index, tmp_path / "cache", workers=1, progress=False, landmarks="detect")
    holder = prepare_module._hold_lock(tmp_path / "cache" / prepare_module.LOCK_FILE, exclusive=False)
    try:
        with pytest.raises(DatasetError, match="being written by another"):
            prepare_dataset(index, tmp_path / "cache", workers=1, progress=False)
    finally:
        holder.close()
    shutil.rmtree(tmp_path / "cache" / SHARD_DIR)
    (tmp_path / "cache" / SHARD_DIR).mkdir()


def test_track_crops_frame_each_sequence_with_one_matrix(disfa: Path, bp4d: Path, tmp_path: Path) -> None:
    from facskit.align import track_matrix

    summary = prepare_dataset(read_disfa(disfa), tmp_path / "track", workers=1, progress=False, crop="track")
    assert summary.prepared == 30 and summary.skipped == {}
    cache = PreparedCache(tmp_path / "track")
    assert cache.meta["align"] == {"kind": "bmvc", "size": 256, "crop": "track"}
    gt = truth(disfa, ("subject", "frame"))
    subject = "SN002"
    rows = gt.loc[subject].sort_index()
    points = np.stack(
        [rows[[f"x_{j}" for j in range(68)]].to_numpy(), rows[[f"y_{j}" for j in range(68)]].to_numpy()], -1
    )  # (frames, 68, 2) frame pixels
    matrix = track_matrix(points)
    ours = cache.index[cache.index["subject"] == subject]
    # every frame of the sequence through the one matrix: the crop, and landmarks that follow the head
    first = ours.iloc[4]
    frame = next(f for f in iter_frames(first["source"]) if f.index == first["source_frame"])
    position = int(np.flatnonzero(cache.index.index == first.name)[0])
    truth_points = points[int(np.flatnonzero(rows.index == first["frame"])[0])]
    np.testing.assert_array_equal(
        cache.image(position), align_face(frame.image, truth_points, matrix=matrix).crop
    )
    keep = [i for i in range(68) if i not in (60, 64)]
    for i, row in enumerate(ours.itertuples()):
        crop_points = np.stack(
            [[getattr(row, f"lx_{j}") for j in keep], [getattr(row, f"ly_{j}") for j in keep]], 1
        )
        assert np.abs(crop_points - points_to_crop(points[i][keep], matrix)).max() < 1.0
    # unlike per-frame alignment, the eye corners are not pinned to the template: the head moves in the crop
    corners = ours[["lx_36", "ly_36", "lx_45", "ly_45"]].to_numpy()
    assert corners.std(axis=0).max() > 0.2
    # a cache's crop mode is one of its settings
    with pytest.raises(DatasetError, match="crop"):
        prepare_dataset(read_disfa(disfa), tmp_path / "track", workers=1, progress=False)
    with pytest.raises(ValueError, match="crop must be"):
        prepare_dataset(read_disfa(disfa), tmp_path / "other", workers=1, progress=False, crop="box")
    # a damaged landmark file: that frame is detected instead, as with per-frame alignment
    damaged = tmp_path / "damaged"
    shutil.copytree(disfa, damaged)
    index = read_disfa(damaged)
    bad = index.frames["landmarks_source"].iloc[3]
    Path(bad).write_bytes(b"not a mat file")
    summary = prepare_dataset(index, tmp_path / "track-damaged", workers=1, progress=False, crop="track")
    assert summary.prepared == 30 and summary.skipped == {}
    assert sum("unreadable landmark files (1)" in str(p) for p in summary.problems) == 1
    sources = PreparedCache(tmp_path / "track-damaged").index["landmark_source"]
    assert sources.tolist().count("detected") == 1 and sources.iloc[3] == "detected"
    # (per-frame alignment too: scipy's MatReadError used to fail the whole sequence)
    summary = prepare_dataset(index, tmp_path / "aligned-damaged", workers=1, progress=False)
    assert summary.prepared == 30 and summary.failed_sequences == []
    # detected landmarks (a first decoding pass): the same frames skipped, each problem reported once
    summary = prepare_dataset(read_bp4d(bp4d), tmp_path / "bp4d", workers=1, progress=False, crop="track")
    assert summary.skipped == {"no_face": 1, "unreadable": 1}
    assert sum("0005.jpg: unreadable frame" in str(p) for p in summary.problems) == 1
    assert (PreparedCache(tmp_path / "bp4d").index["landmark_source"] == "detected").all()
