"""DISFA reader: left-camera videos, per-AU intensity files and the per-frame AAM landmarks.

Layout (DESIGN.md section 3)::

    ROOT/Videos_LeftCamera/LeftVideoSN001_comp.avi      27 subjects SN001..SN032, 4845 frames at 20 fps
    ROOT/ActionUnit_Labels/SN001/SN001_au1.txt          lines "frame,intensity", frame from 1, 0-5
    ROOT/Landmark_Points/SN001/tmp_frame_lm/*.mat       66 AAM points per frame, MATLAB variable ``pts``

Landmark file names seen in public DISFA loaders, both accepted: ``SN001_0000_lm.mat`` (subject, 0-based
frame index: ``_0000_`` is frame 1) and ``l00001_lm.mat`` / ``l0001_lm.mat`` (``l`` + the 1-based frame
number, as public loaders index them; SN031 of the release lacks one file, which then falls back to
detection). Any sub-folder of
``Landmark_Points/SN001`` is searched, not only ``tmp_frame_lm``. The variable is ``pts`` (66 x 2, x then
y); a file without ``pts`` is accepted when it holds exactly one (66 or 68) x 2 array. Coordinates are taken
as they are (0-based pixels), matching the images decoded from the video.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facskit.aus import DISFA_AUS
from facskit.data.index import (
    DatasetIndex,
    Problem,
    concat_sequences,
    join_labels,
    read_intensity_file,
    sequence_table,
    video_frame_count,
)
from facskit.errors import DatasetError

VIDEO_DIR = "Videos_LeftCamera"
LABEL_DIR = "ActionUnit_Labels"
LANDMARK_DIR = "Landmark_Points"
# The single DISFA "sequence" per subject: the left-camera video.
SEQUENCE = "left"

_VIDEO = re.compile(r"^LeftVideo(SN\d+)_comp\.(avi|mp4|mkv|mov)$", re.IGNORECASE)
_LABEL = re.compile(r"^(SN\d+)_au(\d+)\.txt$", re.IGNORECASE)
_LM_SUBJECT = re.compile(r"^(SN\d+)_(\d+)_lm\.mat$", re.IGNORECASE)
_LM_L = re.compile(r"^l(\d+)_lm\.mat$", re.IGNORECASE)


def _child(root: Path, name: str) -> Path | None:
    """``root/name`` matched case-insensitively (copies made on Windows vary in case)."""
    exact = root / name
    if exact.is_dir():
        return exact
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and entry.name.lower() == name.lower():
                return entry
    return None


def read_disfa(root: str | Path, aus: tuple[int, ...] = DISFA_AUS) -> DatasetIndex:
    """Index a DISFA copy: one sequence per subject, one row per video frame, 12 AU intensities joined.

    Every problem (unreadable video, label file of the wrong length, missing AU file, subject with no
    labels, labels without a video, missing landmark files) is listed in ``problems``; the usable rest is
    indexed. Raises :class:`DatasetError` only when ``root`` has neither videos nor labels.
    """
    root = Path(root)
    problems: list[Problem] = []
    video_dir = _child(root, VIDEO_DIR)
    label_dir = _child(root, LABEL_DIR)
    landmark_dir = _child(root, LANDMARK_DIR)
    if video_dir is None and label_dir is None:
        raise DatasetError(f"{root} is not a DISFA root: expected {VIDEO_DIR}/ and {LABEL_DIR}/ inside it")

    videos: dict[str, Path] = {}
    if video_dir is None:
        problems.append(Problem(str(root / VIDEO_DIR), "missing video folder"))
    else:
        for path in sorted(video_dir.iterdir()):
            match = _VIDEO.match(path.name)
            if match:
                videos[match.group(1).upper()] = path
    label_files: dict[str, dict[int, Path]] = {}
    if label_dir is None:
        problems.append(Problem(str(root / LABEL_DIR), "missing label folder"))
    else:
        for subject_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
            subject = subject_dir.name.upper()
            files = label_files.setdefault(subject, {})
            for path in sorted(subject_dir.iterdir()):
                match = _LABEL.match(path.name)
                if not match:
                    continue
                if match.group(1).upper() != subject:
                    problems.append(
                        Problem(str(path), f"label file of {match.group(1)} inside {subject}/; ignored")
                    )
                    continue
                files[int(match.group(2))] = path

    tables = []
    any_landmarks = False
    for subject in sorted(set(videos) | set(label_files)):
        video = videos.get(subject)
        files = {code: path for code, path in label_files.get(subject, {}).items() if code in aus}
        if video is None:
            where = label_dir / subject if label_dir else root
            problems.append(
                Problem(
                    str(where),
                    f"labels but no video {VIDEO_DIR}/LeftVideo{subject}_comp.avi; subject skipped",
                )
            )
            continue
        if not files:
            problems.append(
                Problem(str(video), f"subject with no labels (no {subject}_auN.txt files); skipped")
            )
            continue
        try:
            n_video = video_frame_count(video)
        except Exception as error:  # PyAV raises many types for a broken file
            problems.append(Problem(str(video), f"unreadable video ({error}); subject skipped"))
            continue
        if n_video == 0:
            problems.append(Problem(str(video), "video has no frames; subject skipped"))
            continue
        frames = np.arange(1, n_video + 1, dtype=np.int64)
        labels: dict[int, np.ndarray] = {}
        for code in aus:
            path = files.get(code)
            if path is None:
                expected = (label_dir or root) / subject / f"{subject}_au{code}.txt"
                problems.append(Problem(str(expected), f"missing AU file: AU{code} unknown for {subject}"))
                continue
            parsed = read_intensity_file(path, problems)
            if parsed is None:
                continue
            lo, hi, n_lab = int(parsed.frames[0]), int(parsed.frames[-1]), len(parsed.frames)
            if n_lab != n_video or lo != 1 or hi != n_video:
                problems.append(
                    Problem(
                        str(path),
                        f"length does not match the video: {n_lab} labelled frames ({lo}-{hi}), "
                        f"video has {n_video}",
                    )
                )
            labels[code] = join_labels(
                frames, parsed, path, problems, what=f"{n_video} frames of {video.name}"
            )
        landmark_paths = _landmark_files(landmark_dir, subject, n_video, problems) if landmark_dir else None
        any_landmarks |= landmark_paths is not None
        tables.append(
            sequence_table(
                subject,
                SEQUENCE,
                frames,
                [str(video)] * n_video,
                frames - 1,
                labels,
                aus,
                landmark_paths,
            )
        )
    if any_landmarks:
        for table in tables:
            if "landmarks_source" not in table:
                table["landmarks_source"] = ""
    return DatasetIndex(
        "DISFA", root, tuple(aus), concat_sequences(tables, tuple(aus), any_landmarks), problems
    )


def _landmark_files(
    landmark_dir: Path, subject: str, n_video: int, problems: list[Problem]
) -> list[str] | None:
    """Per-frame landmark paths ("" where missing) for frames 1..n_video, or None without a subject folder."""
    subject_dir = _child(landmark_dir, subject)
    if subject_dir is None:
        problems.append(Problem(str(landmark_dir / subject), "no landmark folder; faces will be detected"))
        return None
    by_index: dict[int, Path] = {}
    for path in sorted(subject_dir.rglob("*.mat")):
        match = _LM_SUBJECT.match(path.name)
        if match and match.group(1).upper() == subject:
            by_index.setdefault(int(match.group(2)), path)
            continue
        match = _LM_L.match(path.name)
        if match and int(match.group(1)) >= 1:
            by_index.setdefault(int(match.group(1)) - 1, path)
    paths = [str(by_index.get(i, "")) for i in range(n_video)]
    missing = sum(1 for p in paths if not p)
    beyond = sum(1 for i in by_index if i >= n_video)
    if missing:
        problems.append(
            Problem(
                str(subject_dir),
                f"landmark files missing for {missing} of {n_video} frames; detected instead",
            )
        )
    if beyond:
        problems.append(
            Problem(str(subject_dir), f"out-of-range landmark files ignored ({beyond}): beyond the video")
        )
    return paths


# iBUG-68 indices of the 66-point (CMU/DISFA AAM) scheme: the inner mouth corners 60 and 64 are absent.
_IBUG_FROM_66 = np.array([i for i in range(68) if i not in (60, 64)])
# How far the inner mouth corner lies from the outer one towards the inner lips (see complete_66_to_68).
INNER_CORNER_FRACTION = 0.2


def complete_66_to_68(points: np.ndarray) -> np.ndarray:
    """(66, 2) AAM points -> (68, 2) iBUG order by estimating the two inner mouth corners.

    In iBUG-annotated faces the inner mouth corner sits a short way inside the outer one, about a fifth of
    the way towards the neighbouring inner-lip points (mean iBUG shape): 60 = p48 + 0.2 (mid(p61, p67) -
    p48), 64 = p54 + 0.2 (mid(p63, p65) - p54). Neither point is used by alignment (8, 36, 45) or by any AU
    point, so the estimate only affects the stored landmarks.
    """
    out = np.zeros((68, 2), dtype=np.float32)
    out[_IBUG_FROM_66] = points
    out[60] = out[48] + INNER_CORNER_FRACTION * (0.5 * (out[61] + out[67]) - out[48])
    out[64] = out[54] + INNER_CORNER_FRACTION * (0.5 * (out[63] + out[65]) - out[54])
    return out


def read_disfa_landmarks(path: str | Path) -> np.ndarray:
    """One DISFA landmark ``.mat`` as (68, 2) float32 iBUG points; raises ValueError for a bad file."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(str(path))
    except (NotImplementedError, ValueError, OSError, MatReadError) as error:  # v7.3 (HDF5) or damaged
        raise ValueError(f"cannot read {path}: {error}") from error
    candidates = [content["pts"]] if "pts" in content else []
    if not candidates:
        candidates = [
            v
            for k, v in content.items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2
        ]
    points = None
    for value in candidates:
        value = np.asarray(value, dtype=np.float32)
        if value.shape in ((2, 66), (2, 68)):
            value = value.T
        if value.shape in ((66, 2), (68, 2)):
            points = value
            break
    if points is None:
        shapes = ", ".join(str(np.shape(v)) for v in candidates) or "none"
        raise ValueError(f"{path}: no 66x2 or 68x2 landmark array ('pts'); found {shapes}")
    if not np.isfinite(points).all():
        raise ValueError(f"{path}: landmarks contain NaN or infinity")
    return complete_66_to_68(points) if len(points) == 66 else points.astype(np.float32)
