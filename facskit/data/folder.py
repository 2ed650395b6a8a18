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

Reading goes in three steps, one function or class each: the header (:func:`_read_label_csv`), the rows
sorted into sequences with every reason a row was dropped or changed (:class:`_LabelRows`), and the
sequences numbered into the index (:func:`_sequence_tables`).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

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
from facskit.io.media import MediaKind, media_kind

_AU_HEADER = re.compile(r"^\s*au\s*0*\d+\s*$", re.IGNORECASE)

#: One labelled frame of a sequence: (frame number or order key, media path, source_frame, AU values).
_Item = tuple[int, Path, int, np.ndarray]


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
    header, rows = _read_label_csv(csv_path)
    labelled = _LabelRows(root, header)
    for line, row in rows:
        labelled.add(line, row)
    problems = labelled.problems + labelled.row_problems(csv_path)
    unlabelled = _unlabelled_media(root, labelled.files)
    if unlabelled is not None:
        problems.append(unlabelled)
    tables = _sequence_tables(labelled.groups, header.aus, csv_path, problems)
    if not tables:
        problems.append(Problem(str(csv_path), "no usable row"))
    return DatasetIndex("folder", root, header.aus, concat_sequences(tables, header.aus, False), problems)


@dataclass(frozen=True)
class _LabelHeader:
    """Where each field is in the label CSV's rows (case-insensitive names; None: no such column)."""

    width: int  # number of header cells; shorter rows are padded to it
    aus: tuple[int, ...]  # AU codes, ascending
    au_positions: dict[int, int]  # AU code -> column
    file: int
    frame: int | None
    subject: int | None
    sequence: int | None


def _read_label_csv(csv_path: Path) -> tuple[_LabelHeader, list[tuple[int, list[str]]]]:
    """The CSV's header and its rows numbered by file line (the header is line 1)."""
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
        rows = list(enumerate(reader, start=2))
    return _LabelHeader(
        width=len(columns),
        aus=tuple(sorted(au_positions)),
        au_positions=au_positions,
        file=lower.index("file"),
        frame=lower.index("frame") if "frame" in lower else None,
        subject=lower.index("subject") if "subject" in lower else None,
        sequence=lower.index("sequence") if "sequence" in lower else None,
    ), rows


@dataclass
class _LabelRows:
    """The label CSV's rows sorted into sequences, with every reason a row was dropped or changed.

    :meth:`add` takes the rows in file order; a row is dropped for a missing media file, a junk or
    out-of-range frame or a repeated (file, frame), and a junk or out-of-range intensity becomes unknown.
    """

    root: Path
    header: _LabelHeader
    groups: dict[tuple[str, str], list[_Item]] = field(default_factory=lambda: defaultdict(list))
    files: set[Path] = field(default_factory=set)  # resolved media paths with a label row
    problems: list[Problem] = field(default_factory=list)  # unreadable videos, as they are met
    missing: dict[str, int] = field(default_factory=dict)  # file name -> rows naming it
    bad_frame: list[str] = field(default_factory=list)
    bad_value: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    seen: set[tuple[Path, int]] = field(default_factory=set)
    video_lengths: dict[Path, int | None] = field(default_factory=dict)  # None: unreadable

    def add(self, line: int, row: list[str]) -> None:
        """Sort one CSV row (file line ``line``) into its sequence, or note why it is dropped."""
        if not row or all(not cell.strip() for cell in row):
            return
        row = row + [""] * (self.header.width - len(row))
        name = row[self.header.file].strip()
        path = Path(name) if Path(name).is_absolute() else self.root / name
        if not path.is_file():
            self.missing[name] = self.missing.get(name, 0) + 1
            return
        self.files.add(path.resolve())
        is_video = media_kind(path) is MediaKind.VIDEO
        frame = self._frame(line, row, path, is_video)
        if frame is None:
            return
        if (path, frame) in self.seen:
            self.duplicates.append(f"line {line} {name} frame {frame}")
            return
        self.seen.add((path, frame))
        values = self._intensities(line, row)
        subject, sequence = self._subject_and_sequence(row, path, is_video)
        self.groups[(subject, sequence)].append((frame, path, frame if is_video else 0, values))

    def _frame(self, line: int, row: list[str], path: Path, is_video: bool) -> int | None:
        """The row's frame number, or None (noted) when it is junk or not in the media file."""
        i_frame = self.header.frame
        frame_text = row[i_frame].strip() if i_frame is not None else ""
        try:
            frame = int(float(frame_text)) if frame_text else 0
        except (ValueError, OverflowError):  # OverflowError: "inf"
            self.bad_frame.append(f"line {line} {frame_text!r}")
            return None
        if not is_video:
            if frame != 0:
                self.bad_frame.append(f"line {line} frame {frame} of an image (must be 0)")
                return None
            return frame
        length = self._video_length(path)
        if length is None:
            return None
        if not 0 <= frame < length:
            self.bad_frame.append(f"line {line} frame {frame} (video has {length})")
            return None
        return frame

    def _video_length(self, path: Path) -> int | None:
        """Frames in the video ``path``, counted once; None (one problem) when it cannot be read."""
        if path not in self.video_lengths:
            try:
                self.video_lengths[path] = video_frame_count(path)
            except Exception as error:  # PyAV raises many types for a broken file
                self.problems.append(Problem(str(path), f"unreadable video ({error}); its rows skipped"))
                self.video_lengths[path] = None
        return self.video_lengths[path]

    def _intensities(self, line: int, row: list[str]) -> np.ndarray:
        """The row's AU intensities, float32 in ``header.aus`` order; NaN if empty, junk or out of range."""
        values = np.full(len(self.header.aus), np.nan, dtype=np.float32)
        for j, code in enumerate(self.header.aus):
            cell = row[self.header.au_positions[code]].strip()
            if not cell:
                continue
            try:
                value = float(cell)
            except ValueError:
                self.bad_value.append(f"line {line} AU{code} {cell!r}")
                continue
            if not INTENSITY_RANGE[0] <= value <= INTENSITY_RANGE[1]:
                self.bad_value.append(f"line {line} AU{code} {value:g}")
                continue
            values[j] = value
        return values

    def _subject_and_sequence(self, row: list[str], path: Path, is_video: bool) -> tuple[str, str]:
        """The row's subject and sequence: its own cells, else derived from the media path (module doc)."""
        i_subject, i_sequence = self.header.subject, self.header.sequence
        relative = path.relative_to(self.root) if path.is_relative_to(self.root) else Path(path.name)
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
        return subject, sequence

    def row_problems(self, csv_path: Path) -> list[Problem]:
        """One problem per kind of dropped or changed row, quoting a few examples."""
        problems = [
            Problem(
                str(self.root / name), f"missing media file named in {csv_path.name} ({count} rows skipped)"
            )
            for name, count in self.missing.items()
        ]
        if self.bad_frame:
            problems.append(
                Problem(
                    str(csv_path),
                    f"out-of-range or junk frames, rows skipped ({len(self.bad_frame)}): "
                    f"{examples_text(self.bad_frame)}",
                )
            )
        if self.bad_value:
            problems.append(
                Problem(
                    str(csv_path),
                    f"junk or out-of-range intensities set to unknown ({len(self.bad_value)}): "
                    f"{examples_text(self.bad_value)}",
                )
            )
        if self.duplicates:
            problems.append(
                Problem(
                    str(csv_path),
                    f"duplicate rows ignored ({len(self.duplicates)}): {examples_text(self.duplicates)}",
                )
            )
        return problems


def _unlabelled_media(root: Path, labelled: set[Path]) -> Problem | None:
    """One problem naming the images and videos under ``root`` that no label row names, if any."""
    unlabelled = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and media_kind(p) is not None and p.resolve() not in labelled
    ]
    if not unlabelled:
        return None
    names = [str(p.relative_to(root)) for p in unlabelled]
    return Problem(
        str(root), f"media files with no label row, not indexed ({len(names)}): {examples_text(names)}"
    )


def _sequence_tables(
    groups: dict[tuple[str, str], list[_Item]], aus: tuple[int, ...], csv_path: Path, problems: list[Problem]
) -> list[pd.DataFrame]:
    """One index table per (subject, sequence), in sorted order, its frames numbered by
    :func:`_order_frames`; a video sequence spanning several files is noted in ``problems``."""
    tables = []
    for (subject, sequence), group in sorted(groups.items()):
        items, frames, spans_files = _order_frames(group)
        if spans_files:
            problems.append(
                Problem(
                    str(csv_path),
                    f"sequence {sequence!r} of {subject!r} spans several files; "
                    "frames are numbered by their order in the file list",
                )
            )
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
    return tables


def _order_frames(items: list[_Item]) -> tuple[list[_Item], np.ndarray, bool]:
    """A sequence's items in frame order with their frame numbers, and whether it spans several videos.

    One video: its own frame indices. Images, or several videos: numbered 0..n-1 in file-name order (then
    frame order within a video).
    """
    if not any(media_kind(p) is MediaKind.VIDEO for _, p, _, _ in items):
        items = sorted(items, key=lambda item: str(item[1]))
        return items, np.arange(len(items), dtype=np.int64), False
    if len({p for _, p, _, _ in items}) > 1:
        items = sorted(items, key=lambda item: (str(item[1]), item[0]))
        return items, np.arange(len(items), dtype=np.int64), True
    items = sorted(items, key=lambda item: item[0])
    return items, np.array([item[0] for item in items], dtype=np.int64), False
