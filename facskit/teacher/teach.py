"""Real faces in, a prepared training cache out, labelled by the blendshape teacher.

Every face of every frame that facskit's own front end finds (stills: detector + landmarks; videos: the
tracker) is aligned exactly as ``facskit prepare`` aligns it and labelled with the teacher's AU
pseudo-intensities (:mod:`facskit.teacher.au_map`; NaN for the AUs the teacher cannot see, so the trainer's
masked loss ignores them there). The raw 52 coefficients, the mesh's lip gap and the face-presence
probability are kept in the index as ``bs_<name>``, ``lips_apart`` and ``teacher_presence``.

The cache is :mod:`facskit.data.cache`'s format, so ``facskit train`` reads it as it reads any prepared
dataset. Each face track is its own subject and sequence (``<file key>#<face id>``): the teacher knows
nothing of identities, and a subject-exclusive split can never put one track on both sides.

Resumable by input file: a file's rows are committed when ``parts/<key>.parquet`` is renamed into place,
after its shards; a rerun skips committed files, deletes a half-written file's shards and redoes it, and
rebuilds ``index.parquet`` from the parts of the inputs given. A lock file keeps two runs off one cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

import facskit
from facskit.align import AlignSpec, align_face
from facskit.aus import au_column
from facskit.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    INDEX_FILE,
    LANDMARK_X,
    LANDMARK_Y,
    META_FILE,
    PART_DIR,
    POSE_COLUMNS,
    SHARD_DIR,
    SKIP_NO_FACE,
    SKIP_UNREADABLE,
    ShardWriter,
    read_cache_settings,
    write_json_atomic,
    write_parquet_atomic,
)
from facskit.errors import MediaError, UsageError
from facskit.io import MediaFile, MediaKind, Progress, expand_path, probe
from facskit.io.lock import hold_lock
from facskit.teacher.au_map import LIPS_APART, AUMap, coefficient_column, load_au_map
from facskit.teacher.blendshapes import BLENDSHAPE_NAMES, BUNDLE_SHA256, BlendshapeTeacher

SKIP_TEACHER_NO_FACE = "teacher_no_face"  # the mesh model does not see a face where dlib fitted one
MIN_PRESENCE = 0.5  # the mesh model's own face threshold (MediaPipe's min_face_presence_confidence)
SHARD_SIZE = 500
LOCK_FILE = ".lock"
BLENDSHAPE_COLUMNS = [coefficient_column(name) for name in BLENDSHAPE_NAMES]
LIPS_APART_COLUMN = coefficient_column(LIPS_APART)


@dataclass
class TeachSummary:
    """What one run did; ``text()`` is the line the CLI prints."""

    files: int = 0
    files_done_before: int = 0
    frames: int = 0
    faces: int = 0
    skipped: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.files} files ({self.files_done_before} done before), {self.frames} frames, "
            f"{self.faces} labelled faces, {self.skipped} skipped, {rate:.1f} frames/s"
        )
        if self.problems:
            text += f"; {len(self.problems)} problems:\n  " + "\n  ".join(self.problems)
        return text


def file_key(path: Path) -> str:
    """A cache-safe name for an input file, unique per resolved path (two ``clip.mp4`` never collide)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:60] or "file"
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def _columns(aus: Sequence[int]) -> list[str]:
    return (
        ["subject", "sequence", "frame", "source", "source_frame", "face_id"]
        + [au_column(a) for a in aus]
        + ["shard", "offset"]
        + LANDMARK_X
        + LANDMARK_Y
        + POSE_COLUMNS
        + ["face_detected", "landmark_source", "skip_reason", "teacher_presence", LIPS_APART_COLUMN]
        + BLENDSHAPE_COLUMNS
    )


def _empty_row(aus: Sequence[int], key: str, source: str, frame: int, skip: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_columns(aus), np.nan)
    row.update(
        subject=key, sequence=key, frame=frame, source=source, source_frame=frame, face_id=-1, shard="",
        offset=-1, face_detected=False, landmark_source="", skip_reason=skip,
    )  # fmt: skip
    return row


def _typed(part: pd.DataFrame, aus: Sequence[int]) -> pd.DataFrame:
    """Fixed column order and dtypes, so parts concatenate and compare identically."""
    part = part.reindex(columns=_columns(aus))
    floats = [au_column(a) for a in aus] + LANDMARK_X + LANDMARK_Y + POSE_COLUMNS
    floats += ["teacher_presence", LIPS_APART_COLUMN] + BLENDSHAPE_COLUMNS
    for name in floats:
        part[name] = part[name].astype(np.float32)
    for name in ("frame", "source_frame", "offset", "face_id"):
        part[name] = part[name].astype(np.int64)
    for name in ("subject", "sequence", "source", "shard", "landmark_source", "skip_reason"):
        part[name] = part[name].astype(str)
    part["face_detected"] = part["face_detected"].astype(bool)
    return part


class _Labeller:
    """The loaded models of one run: front end, teacher, AU map."""

    def __init__(self, aus: Sequence[int], au_map: AUMap, detect_every: int, threads: int) -> None:
        from facskit.faces import FaceFrontEnd

        self.aus = tuple(aus)
        self.au_map = au_map
        self.front_end = FaceFrontEnd(detect_every=detect_every)
        self.teacher = BlendshapeTeacher(threads=threads)
        self.spec = AlignSpec()

    def label_file(
        self, media: MediaFile, key: str, out: Path, frame_step: int, line: Progress
    ) -> tuple[pd.DataFrame, list[str]]:
        """Every face of every ``frame_step``-th frame of one file -> its part (rows) and problems."""
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        writer = ShardWriter(out / SHARD_DIR, key, (self.spec.size, self.spec.size, 3), SHARD_SIZE)
        source = str(media.path)
        step = frame_step if media.kind is MediaKind.VIDEO else 1
        try:
            try:
                for frame, faces in self.front_end.iter_faces(media, frame_step=step):
                    line.update(1)
                    usable = [f for f in faces if f.success]
                    if not usable:
                        rows.append(_empty_row(self.aus, key, source, frame.index, SKIP_NO_FACE))
                    for face in usable:
                        rows.append(self._face_row(frame.image, frame.index, face, key, source, writer))
            except MediaError as error:
                text = str(error)  # MediaError usually names the file already
                problems.append(text if str(media.path) in text else f"{media.path}: {text}")
                if not rows:
                    rows.append(_empty_row(self.aus, key, source, 0, SKIP_UNREADABLE))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return _typed(pd.DataFrame(rows), self.aus), problems

    def _face_row(
        self, image: np.ndarray, index: int, face: Any, key: str, source: str, writer: ShardWriter
    ) -> dict[str, Any]:
        track = f"{key}#{face.face_id}"
        row = _empty_row(self.aus, track, source, index, "")
        row.update(face_id=int(face.face_id), face_detected=True, landmark_source="detected")
        landmarks = np.asarray(face.landmarks, dtype=np.float32)
        reading = self.teacher.read(image, landmarks)
        row.update(zip(BLENDSHAPE_COLUMNS, reading.scores.tolist(), strict=True))
        row.update(teacher_presence=reading.presence, lips_apart=reading.lips_apart)
        row.update(zip(POSE_COLUMNS, tuple(face.pose), strict=True))
        if reading.presence < MIN_PRESENCE:
            row["skip_reason"] = SKIP_TEACHER_NO_FACE
            return row
        intensities = self.au_map.intensities(reading, self.aus)
        row.update(zip([au_column(a) for a in self.aus], intensities.tolist(), strict=True))
        aligned = align_face(image, landmarks, self.spec)
        row["shard"], row["offset"] = writer.append(aligned.crop)
        row.update(zip(LANDMARK_X, aligned.landmarks[:, 0].tolist(), strict=True))
        row.update(zip(LANDMARK_Y, aligned.landmarks[:, 1].tolist(), strict=True))
        return row


def _check_meta(out: Path, meta: dict[str, Any]) -> bool:
    """Write or check the cache's settings; True when only the AU map changed (relabel, do not redo)."""
    old = read_cache_settings(out)
    if old is None:
        write_json_atomic(meta, out / META_FILE)
        return False
    changed = sorted(k for k in set(meta) | set(old) if k != "facskit" and meta.get(k) != old.get(k))
    if changed == ["teacher"] and {**old.get("teacher", {}), "au_map": None} == {
        **meta["teacher"],
        "au_map": None,
    }:
        return True
    if changed:
        raise UsageError(
            f"{out} was made with other settings ({', '.join(changed)} differ); use a new --out folder"
        )
    return False


def _relabel(out: Path, au_map: AUMap, aus: tuple[int, ...], meta: dict[str, Any]) -> None:
    """Apply a new AU map to every committed part from its stored coefficients (no model is run)."""
    for part_path in sorted((out / PART_DIR).glob("*.parquet")):
        part = pd.read_parquet(part_path)
        labelled = (part["skip_reason"] == "").to_numpy()
        values = au_map.table_intensities(part[labelled], aus)
        for i, au in enumerate(aus):
            column = part[au_column(au)].to_numpy(dtype=np.float32).copy()
            column[labelled] = values[:, i]
            part[au_column(au)] = column
        write_parquet_atomic(_typed(part, aus), part_path)
    write_json_atomic(meta, out / META_FILE)


def teach(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    frame_step: int = 1,
    aus: Sequence[int] | None = None,
    detect_every: int = 5,
    au_map: AUMap | None = None,
    threads: int = 1,
    progress: bool = True,
    stream: TextIO | None = None,
) -> TeachSummary:
    """Label every face in ``inputs`` (files, folders, globs) with the teacher; write the cache ``out``.

    ``frame_step``: use every n-th video frame (neighbouring frames add little but time). ``aus``: the
    cache's AU columns (default: the default model's 17). Returns what was done; problems with single
    inputs are reported there and never stop the others.
    """
    from facskit.synth.face_model import SYNTH_AUS

    if frame_step < 1:
        raise UsageError(f"--frame-step must be at least 1, got {frame_step}")
    if detect_every < 1:
        raise UsageError(f"--detect-every must be at least 1, got {detect_every}")
    aus = tuple(sorted(aus if aus is not None else SYNTH_AUS))
    au_map = au_map if au_map is not None else load_au_map()
    media: dict[str, MediaFile] = {}
    for item in inputs:
        for found in expand_path(item):
            media.setdefault(file_key(found.path), found)
    if not media:
        raise UsageError("no images or videos found in the inputs")
    out = Path(out)
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    (out / PART_DIR).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = TeachSummary(files=len(media))
    busy = UsageError(f"{out} is being written by another facskit run; wait for it to finish")
    lock = hold_lock(out / LOCK_FILE, exclusive=True, busy=busy)
    try:
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "dataset": "teacher",
            "source_root": "",
            "aus": list(aus),
            "align": {"kind": AlignSpec().kind, "size": AlignSpec().size},
            "landmarks": "detect",
            "shard_size": SHARD_SIZE,
            "detect_every": detect_every,
            "frame_step": frame_step,
            "teacher": {"bundle_sha256": BUNDLE_SHA256, "au_map": au_map.to_json()},
            "facskit": facskit.__version__,
        }
        if _check_meta(out, meta):
            _relabel(out, au_map, aus, meta)
        for stale in list((out / SHARD_DIR).glob("*.tmp")) + list((out / PART_DIR).glob("*.tmp")):
            stale.unlink(missing_ok=True)
        pending = [k for k in sorted(media) if not (out / PART_DIR / f"{k}.parquet").is_file()]
        summary.files_done_before = len(media) - len(pending)
        total = 0
        for key in pending:
            try:
                count = probe(media[key]).frame_count if media[key].kind is MediaKind.VIDEO else 1
            except MediaError:
                count = 1
            total += -(-(count or 1) // (frame_step if media[key].kind is MediaKind.VIDEO else 1))
        labeller = _Labeller(aus, au_map, detect_every, threads) if pending else None
        with Progress(total or None, unit="frames", quiet=not progress, label="teach", stream=stream) as line:
            for key in pending:
                for stale in (out / SHARD_DIR).glob(f"{key}-*.npy"):
                    stale.unlink()
                assert labeller is not None
                part, problems = labeller.label_file(media[key], key, out, frame_step, line)
                write_json_atomic({"problems": problems}, out / PART_DIR / f"{key}.problems.json")
                write_parquet_atomic(part, out / PART_DIR / f"{key}.parquet")
        parts = [pd.read_parquet(out / PART_DIR / f"{k}.parquet") for k in sorted(media)]
        for key in sorted(media):
            problems_path = out / PART_DIR / f"{key}.problems.json"
            if problems_path.is_file():
                summary.problems.extend(json.loads(problems_path.read_text())["problems"])
        index = _typed(pd.concat(parts, ignore_index=True), aus)
        summary.frames = int(index.drop_duplicates(["source", "frame"]).shape[0])
        summary.faces = int((index["skip_reason"] == "").sum())
        summary.skipped = int((index["skip_reason"] != "").sum())
        write_parquet_atomic(index, out / INDEX_FILE)
        summary.seconds = time.perf_counter() - started
        write_json_atomic(
            {"files": summary.files, "frames": summary.frames, "faces": summary.faces,
             "skipped": summary.skipped, "problems": summary.problems},
            out / "summary.json",
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.close()
    if progress:
        print(f"teach: {summary.text()}", file=stream if stream is not None else sys.stderr)
    return summary
