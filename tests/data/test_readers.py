"""Dataset readers on tiny copies of the real layouts: labels round-trip, bad input is named and counted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import disfa_value, make_disfa, write_video
from scipy.io import savemat

from facskit.aus import BP4D_AUS, DISFA_AUS, au_column
from facskit.data import read_bp4d, read_disfa, read_folder
from facskit.data.disfa import complete_66_to_68, read_disfa_landmarks
from facskit.data.index import read_intensity_file
from facskit.errors import DatasetError


def test_disfa_labels_round_trip(tmp_path: Path) -> None:
    make_disfa(tmp_path)
    index = read_disfa(tmp_path)
    assert index.problems == []
    assert index.aus == DISFA_AUS
    frames = index.frames
    assert len(frames) == 20 and index.subjects == ["SN001", "SN002"]
    assert frames["frame"].tolist() == list(range(1, 11)) * 2
    assert (frames["source_frame"] == frames["frame"] - 1).all()
    for row in frames.itertuples(index=False):
        s = int(row.subject[2:])
        for code in DISFA_AUS:
            assert getattr(row, au_column(code)) == disfa_value(s, code, row.frame)
    assert frames[au_column(1)].dtype == np.float32


def test_disfa_bad_input_is_reported_and_the_rest_indexed(tmp_path: Path) -> None:
    make_disfa(tmp_path, subjects=(1, 2))
    labels = tmp_path / "ActionUnit_Labels"
    au1 = labels / "SN001" / "SN001_au1.txt"
    au1.write_text("1,3\nthis is junk\n2,4\n2,5\n3,7\n11,2\n4,1\n")
    (labels / "SN001" / "SN001_au9.txt").unlink()
    au2 = labels / "SN002" / "SN002_au2.txt"
    au2.write_text("\n".join(f"{f},1" for f in range(1, 9)) + "\n")  # 8 labels for a 10-frame video
    write_video(tmp_path / "Videos_LeftCamera" / "LeftVideoSN003_comp.avi", 5)  # no labels
    (labels / "SN004").mkdir()
    (labels / "SN004" / "SN004_au1.txt").write_text("1,1\n")  # labels without a video
    (tmp_path / "Videos_LeftCamera" / "LeftVideoSN005_comp.avi").write_bytes(b"not a video")
    (labels / "SN005").mkdir()
    (labels / "SN005" / "SN005_au1.txt").write_text("1,1\n")

    index = read_disfa(tmp_path)
    text = "\n".join(str(p) for p in index.problems)
    assert f"{au1}: junk lines ignored (1): line 2 'this is junk'" in text
    duplicate = "duplicate frames (1; first kept, conflicting ones set to unknown): 2 (conflicting)"
    assert f"{au1}: {duplicate}" in text
    assert f"{au1}: intensity outside 0-5 set to unknown (1): line 5 frame 3 = 7" in text
    assert f"{au1}: out-of-range frames ignored (1;" in text and "): 11" in text
    assert "SN001_au9.txt: missing AU file" in text
    assert f"{au2}: length does not match the video: 8 labelled frames (1-8), video has 10" in text
    assert "LeftVideoSN003_comp.avi: subject with no labels" in text
    assert "SN004: labels but no video" in text
    assert "LeftVideoSN005_comp.avi: unreadable video" in text
    # The usable rest goes on: two subjects, their other labels intact.
    assert index.subjects == ["SN001", "SN002"]
    sn1 = index.frames[index.frames["subject"] == "SN001"].set_index("frame")
    assert sn1.loc[1, "AU01"] == 3 and np.isnan(sn1.loc[2, "AU01"]) and np.isnan(sn1.loc[3, "AU01"])
    assert sn1.loc[4, "AU01"] == 1 and np.isnan(sn1.loc[5, "AU01"])
    assert sn1["AU09"].isna().all()
    assert sn1.loc[7, "AU02"] == disfa_value(1, 2, 7)
    summary = index.summary()
    assert f"{len(index.problems)} problems:" in summary and "junk lines ignored" in summary


def test_disfa_landmarks_both_names_and_66_to_68(tmp_path: Path) -> None:
    make_disfa(tmp_path, subjects=(1, 2), n_frames=4)
    rng = np.random.default_rng(0)
    pts = rng.uniform(10, 50, size=(66, 2))
    lm1 = tmp_path / "Landmark_Points" / "SN001" / "tmp_frame_lm"
    lm1.mkdir(parents=True)
    for i in range(4):
        savemat(lm1 / f"SN001_{i:04d}_lm.mat", {"pts": pts + i})
    lm2 = tmp_path / "Landmark_Points" / "SN002" / "tmp_frame_lm"
    lm2.mkdir(parents=True)
    for i in (0, 1, 3):  # frame 3 (index 2) missing, as one frame of SN031 is in the release
        savemat(lm2 / f"l0{i + 1:04d}_lm.mat", {"pts": (pts + i).T})
    index = read_disfa(tmp_path)
    sources = index.frames["landmarks_source"].tolist()
    assert [Path(s).name for s in sources] == [f"SN001_{i:04d}_lm.mat" for i in range(4)] + [
        "l00001_lm.mat",
        "l00002_lm.mat",
        "",
        "l00004_lm.mat",
    ]
    assert any("landmark files missing for 1 of 4 frames" in str(p) for p in index.problems)
    points = read_disfa_landmarks(sources[1])
    assert points.shape == (68, 2) and points.dtype == np.float32
    keep = [i for i in range(68) if i not in (60, 64)]
    np.testing.assert_allclose(points[keep], pts + 1, rtol=1e-6)
    np.testing.assert_allclose(read_disfa_landmarks(sources[5])[keep], pts + 1, rtol=1e-6)
    # Inner mouth corners sit between the outer corner and the inner lips.
    full = complete_66_to_68(pts.astype(np.float32))
    assert np.linalg.norm(full[60] - full[48]) < np.linalg.norm(full[61] - full[48])
    bad = tmp_path / "bad.mat"
    savemat(bad, {"other": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="no 66x2 or 68x2"):
        read_disfa_landmarks(bad)


def make_bp4d(root: Path, subjects=("F001", "M002"), tasks=("T1", "T2"), n_frames=6, start=1) -> None:
    for subject in subjects:
        for task in tasks:
            folder = root / "BP4D-training" / subject / task
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(start, start + n_frames):
                cv2.imwrite(str(folder / f"{f:04d}.jpg"), np.full((8, 8, 3), f, np.uint8))
            for code in BP4D_AUS:
                label_dir = root / "AU-Intensity-Codes3.0" / f"AU{code:02d}"
                label_dir.mkdir(parents=True, exist_ok=True)
                lines = [f"{f},{bp4d_value(subject, task, code, f)}" for f in range(start, start + n_frames)]
                (label_dir / f"{subject}_{task}_AU{code:02d}.csv").write_text("\n".join(lines) + "\n")


def bp4d_value(subject: str, task: str, code: int, frame: int) -> int:
    value = (int(subject[1:]) + int(task[1:]) + code + frame) % 7
    return 9 if value == 6 else value  # 9 = unknown in FERA 2015


def test_bp4d_labels_round_trip_with_unknown_code(tmp_path: Path) -> None:
    make_bp4d(tmp_path, start=40)
    index = read_bp4d(tmp_path)
    assert index.problems == []
    assert index.aus == BP4D_AUS
    frames = index.frames
    assert len(frames) == 2 * 2 * 6
    assert sorted(frames.groupby(["subject", "sequence"]).groups) == [
        ("F001", "T1"),
        ("F001", "T2"),
        ("M002", "T1"),
        ("M002", "T2"),
    ]
    n_unknown = 0
    for row in frames.itertuples(index=False):
        assert Path(row.source).name == f"{row.frame:04d}.jpg"
        for code in BP4D_AUS:
            expected = bp4d_value(row.subject, row.sequence, code, row.frame)
            value = getattr(row, au_column(code))
            if expected == 9:
                n_unknown += 1
                assert np.isnan(value)
            else:
                assert value == expected
    assert n_unknown > 0


def test_bp4d_bad_input(tmp_path: Path) -> None:
    make_bp4d(tmp_path)
    labels = tmp_path / "AU-Intensity-Codes3.0"
    au06 = labels / "AU06" / "F001_T1_AU06.csv"
    au06.write_text("Frame,AU06\n1,2\n2;3\nNaN\n3,3\n3,3\n99,1\n")
    (labels / "AU10" / "F001_T2_AU10.csv").unlink()
    for code in BP4D_AUS:  # M002 loses every label: subject with no labels
        for task in ("T1", "T2"):
            (labels / f"AU{code:02d}" / f"M002_{task}_AU{code:02d}.csv").unlink()
    empty = tmp_path / "BP4D-training" / "F001" / "T2" / "0003.jpg"
    empty.write_bytes(b"")
    index = read_bp4d(tmp_path)
    text = "\n".join(str(p) for p in index.problems)
    assert f"{au06}: junk lines ignored (1): line 4 'NaN'" in text
    assert f"{au06}: duplicate frames (1; first kept, conflicting ones set to unknown): 3" in text
    assert f"{au06}: out-of-range frames ignored (1; not among the 6 images of F001/T1): 99" in text
    assert "F001_T2_AU10.csv: missing AU file: AU10 unknown for F001_T2" in text
    assert "M002: subject with no labels" in text
    assert f"{empty}: unreadable frame: empty file" in text
    assert index.subjects == ["F001"]
    t1 = index.frames[index.frames["sequence"] == "T1"].set_index("frame")
    assert t1.loc[1, "AU06"] == 2 and t1.loc[2, "AU06"] == 3 and t1.loc[3, "AU06"] == 3
    assert np.isnan(t1.loc[4, "AU06"])
    assert index.frames[index.frames["sequence"] == "T2"]["AU10"].isna().all()


def test_intensity_file_variants(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("\ufeff1 2\n\n2\t3.0\n3;4\n")
    problems: list = []
    labels = read_intensity_file(path, problems)
    assert problems == [] and labels is not None
    assert labels.frames.tolist() == [1, 2, 3] and labels.values.tolist() == [2.0, 3.0, 4.0]
    path.write_text("junk only\n")
    assert read_intensity_file(path, problems) is None
    assert "empty label file" in str(problems[-1])


def test_folder_reader(tmp_path: Path) -> None:
    (tmp_path / "p1").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "p1" / f"img{i}.png"), np.full((8, 8, 3), i, np.uint8))
    write_video(tmp_path / "p2" / "clip.mp4", 6)
    (tmp_path / "stray.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    rows = [
        "file,frame,AU06,AU12,subject",
        "p1/img0.png,0,1,2,",
        "p1/img1.png,,3,,",
        "p1/img2.png,0,abc,5,",
        "p2/clip.mp4,0,0,1,anna",
        "p2/clip.mp4,5,2,2,anna",
        "p2/clip.mp4,5,3,3,anna",
        "p2/clip.mp4,9,1,1,anna",
        "p2/missing.mp4,0,1,1,anna",
        "p1/img0.png,0,7,1,",
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    index = read_folder(tmp_path)
    assert index.aus == (6, 12)
    text = "\n".join(str(p) for p in index.problems)
    assert "missing.mp4: missing media file" in text
    assert "line 8 frame 9 (video has 6)" in text
    assert "duplicate rows ignored (2)" in text
    assert "line 4 AU6 'abc'" in text
    assert "stray.png" in text
    frames = index.frames
    sequences = frames[["subject", "sequence"]].drop_duplicates().values.tolist()
    assert sequences == [["anna", "p2/clip"], ["p1", "p1"]]
    video = frames[frames["subject"] == "anna"]
    assert video["source_frame"].tolist() == [0, 5] and video["AU06"].tolist() == [0, 2]
    images = frames[frames["subject"] == "p1"]
    assert images["frame"].tolist() == [0, 1, 2]
    assert images["AU06"].tolist()[:2] == [1, 3] and np.isnan(images["AU06"].iloc[2])
    assert images["AU12"].tolist()[0] == 2 and np.isnan(images["AU12"].iloc[1])


def test_not_a_dataset_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a DISFA root"):
        read_disfa(tmp_path)
    with pytest.raises(DatasetError, match="not a BP4D root"):
        read_bp4d(tmp_path)
    with pytest.raises(DatasetError, match="no label CSV"):
        read_folder(tmp_path)
