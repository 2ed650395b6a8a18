"""Folder reader: anyone's images or videos plus one CSV of labels (``file,frame,AU01,...``).

The CSV (``labels.csv``, or the only ``*.csv`` in the folder, or the one named with ``labels=``) has

* ``file``: path of an image or video, relative to the folder (absolute paths work too);
* ``frame``: for a video, the 0-based frame index inside it (the ``frame`` of ``facskit analyze``); for an
  image, 0 or empty;
* ``AU01``, ``AU6``, ``au12``...: intensities 0-5, empty = unknown;
* optional ``subject`` and ``sequence`` columns. Without them, a video is its own subject and sequence
  (its path without the extension), and images are grouped by folder (subject and sequence = the folder;
  an image at the top level is its own subject); images of a sequence are numbered in file-name order.

Subject-exclusive folds need a real subject, so give the ``subject`` column whenever one person appears
in several videos.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from facskit.aus import parse_au
from facskit.data.index import (
    INTENSITY_RANGE,
    DatasetIndex,
    Problem,
    concat_sequences,
    examples_text,
    sequence_table,
    video_frame_count,
)
from facskit.errors import DatasetError
from facskit.io.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

_AU_HEADER = re.compile(r"^\s*au\s*0*\d+\s*$", re.IGNORECASE)


def find_label_csv(root: Path) -> Path:
    """``labels.csv`` if present, else the only CSV at the top of ``root``."""
    preferred = root / "labels.csv"
    if preferred.is_file():
        return preferred
    candidates = sorted(p for p in root.glob("*.csv") if p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"{root}: no label CSV (expected labels.csv with columns file,frame,AU01,...)")
    names = ", ".join(p.name for p in candidates)
    raise DatasetError(f"{root}: several CSV files ({names}); name one with --labels or call it labels.csv")


def read_folder(root: str | Path, labels: str | Path | None = None) -> DatasetIndex:
    """Index a folder dataset from its label CSV; AUs are the CSV's AU columns in ascending order.

    Problems listed (the rest is indexed): missing media files, junk or out-of-range intensities, junk or
    out-of-range frame numbers, duplicate (file, frame) rows, unreadable videos, media files in the folder
    that have no label row.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    csv_path = Path(labels) if labels is not None else find_label_csv(root)
    if not csv_path.is_absolute() and not csv_path.exists():
        csv_path = root / csv_path
    problems: list[Problem] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{csv_path}: empty label CSV")
        columns = [h.strip() for h in header]
        lower = [c.lower() for c in columns]
        if "file" not in lower:
            raise DatasetError(f"{csv_path}: no 'file' column in the header {columns}")
        au_positions = {
            parse_au(c, known_only=False): i for i, c in enumerate(columns) if _AU_HEADER.match(c)
        }
        if not au_positions:
            raise DatasetError(f"{csv_path}: no AU columns (AU01, AU06, ...) in the header {columns}")
        aus = tuple(sorted(au_positions))
        i_file = lower.index("file")
        i_frame = lower.index("frame") if "frame" in lower else None
        i_subject = lower.index("subject") if "subject" in lower else None
        i_sequence = lower.index("sequence") if "sequence" in lower else None
        rows = list(enumerate(reader, start=2))

    missing: dict[str, int] = {}
    bad_frame: list[str] = []
    bad_value: list[str] = []
    duplicates: list[str] = []
    video_lengths: dict[Path, int | None] = {}
    # (subject, sequence) -> list of (frame-or-order key, path, source_frame, values)
    groups: dict[tuple[str, str], list[tuple[int, Path, int, np.ndarray]]] = defaultdict(list)
    seen: set[tuple[Path, int]] = set()
    labelled_files: set[Path] = set()
    for line, row in rows:
        if not row or all(not cell.strip() for cell in row):
            continue
        row = row + [""] * (len(columns) - len(row))
        name = row[i_file].strip()
        path = Path(name) if Path(name).is_absolute() else root / name
        if not path.is_file():
            missing[name] = missing.get(name, 0) + 1
            continue
        labelled_files.add(path.resolve())
        is_video = path.suffix.lower() in VIDEO_EXTENSIONS
        frame_text = row[i_frame].strip() if i_frame is not None else ""
        try:
            frame = int(float(frame_text)) if frame_text else 0
        except (ValueError, OverflowError):  # OverflowError: "inf"
            bad_frame.append(f"line {line} {frame_text!r}")
            continue
        if is_video:
            if path not in video_lengths:
                try:
                    video_lengths[path] = video_frame_count(path)
                except Exception as error:  # PyAV raises many types for a broken file
                    problems.append(Problem(str(path), f"unreadable video ({error}); its rows skipped"))
                    video_lengths[path] = None
            length = video_lengths[path]
            if length is None:
                continue
            if not 0 <= frame < length:
                bad_frame.append(f"line {line} frame {frame} (video has {length})")
                continue
        elif frame != 0:
            bad_frame.append(f"line {line} frame {frame} of an image (must be 0)")
            continue
        if (path, frame) in seen:
            duplicates.append(f"line {line} {name} frame {frame}")
            continue
        seen.add((path, frame))
        values = np.full(len(aus), np.nan, dtype=np.float32)
        for j, code in enumerate(aus):
            cell = row[au_positions[code]].strip()
            if not cell:
                continue
            try:
                value = float(cell)
            except ValueError:
                bad_value.append(f"line {line} AU{code} {cell!r}")
                continue
            if not INTENSITY_RANGE[0] <= value <= INTENSITY_RANGE[1]:
                bad_value.append(f"line {line} AU{code} {value:g}")
                continue
            values[j] = value
        relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        subject = row[i_subject].strip() if i_subject is not None and row[i_subject].strip() else None
        sequence = row[i_sequence].strip() if i_sequence is not None and row[i_sequence].strip() else None
        if subject is None:
            if is_video:
                subject = relative.with_suffix("").as_posix()
            else:
                subject = relative.parent.as_posix() if len(relative.parts) > 1 else relative.stem
        if sequence is None:
            sequence = (
                relative.with_suffix("").as_posix() if is_video else (relative.parent.as_posix() or ".")
            )
        groups[(subject, sequence)].append((frame, path, frame if is_video else 0, values))

    for name, count in missing.items():
        problems.append(
            Problem(str(root / name), f"missing media file named in {csv_path.name} ({count} rows skipped)")
        )
    if bad_frame:
        problems.append(
            Problem(
                str(csv_path),
                f"out-of-range or junk frames, rows skipped ({len(bad_frame)}): {examples_text(bad_frame)}",
            )
        )
    if bad_value:
        problems.append(
            Problem(
                str(csv_path),
                f"junk or out-of-range intensities set to unknown ({len(bad_value)}): "
                f"{examples_text(bad_value)}",
            )
        )
    if duplicates:
        problems.append(
            Problem(str(csv_path), f"duplicate rows ignored ({len(duplicates)}): {examples_text(duplicates)}")
        )
    unlabelled = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
        and p.resolve() not in labelled_files
    ]
    if unlabelled:
        names = [str(p.relative_to(root)) for p in unlabelled]
        problems.append(
            Problem(
                str(root),
                f"media files with no label row, not indexed ({len(names)}): {examples_text(names)}",
            )
        )

    tables = []
    for (subject, sequence), items in sorted(groups.items()):
        is_video_seq = any(p.suffix.lower() in VIDEO_EXTENSIONS for _, p, _, _ in items)
        if is_video_seq:
            if len({p for _, p, _, _ in items}) > 1:
                problems.append(
                    Problem(
                        str(csv_path),
                        f"sequence {sequence!r} of {subject!r} spans several files; "
                        "frames are numbered by their order in the file list",
                    )
                )
                items = sorted(items, key=lambda item: (str(item[1]), item[0]))
                frames = np.arange(len(items), dtype=np.int64)
            else:
                items = sorted(items, key=lambda item: item[0])
                frames = np.array([item[0] for item in items], dtype=np.int64)
        else:
            items = sorted(items, key=lambda item: str(item[1]))
            frames = np.arange(len(items), dtype=np.int64)
        matrix = np.stack([item[3] for item in items]) if items else np.zeros((0, len(aus)), np.float32)
        tables.append(
            sequence_table(
                subject,
                sequence,
                frames,
                [str(item[1]) for item in items],
                np.array([item[2] for item in items], dtype=np.int64),
                {code: matrix[:, j] for j, code in enumerate(aus)},
                aus,
            )
        )
    if not tables:
        problems.append(Problem(str(csv_path), "no usable row"))
    return DatasetIndex("folder", root, aus, concat_sequences(tables, aus, False), problems)
