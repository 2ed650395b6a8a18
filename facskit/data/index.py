"""The common result of every dataset reader: one row per frame, labels joined, problems listed.

Readers never stop at the first bad file: a real dataset copy always has a few (a truncated label file, a
subject re-coded twice, a video one frame short), and a researcher wants the full list in one pass, with the
file named, rather than a traceback per run. Everything that is wrong becomes a :class:`Problem`; what is
still usable goes into the index.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facskit.aus import MAX_INTENSITY, au_column

# Columns every DatasetIndex frame table has, in this order, before the AU columns.
INDEX_COLUMNS: tuple[str, ...] = ("subject", "sequence", "frame", "source", "source_frame")
# Optional column: per-frame path of the dataset's own landmark file ("" where there is none).
LANDMARKS_COLUMN = "landmarks_source"
# Intensity labels are FACS 0 (absent) .. 5 (E, maximum).
INTENSITY_RANGE: tuple[float, float] = (0.0, MAX_INTENSITY)
# How many examples a problem message quotes before it says "and N more".
_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, named by file so the user can open it and look."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class DatasetIndex:
    """Frames of a dataset with their labels, plus what was wrong on the way.

    ``frames`` has the columns ``subject, sequence, frame, source, source_frame``, one float32 column per AU
    (``AU06``; NaN = unknown) and, where the dataset ships landmarks, ``landmarks_source``. ``frame`` is the
    dataset's own frame number (DISFA: 1-based label line; BP4D: the image's number), ``source_frame`` the
    0-based index inside a video (0 for an image). Rows are sorted by subject, sequence, frame.
    """

    dataset: str
    root: Path
    aus: tuple[int, ...]
    frames: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def au_columns(self) -> list[str]:
        return [au_column(code) for code in self.aus]

    @property
    def subjects(self) -> list[str]:
        return sorted(self.frames["subject"].unique().tolist())

    def __len__(self) -> int:
        return len(self.frames)

    def summary(self) -> str:
        """A few lines for the end of a run: counts, then every problem (the user needs them all)."""
        n_seq = self.frames.groupby(["subject", "sequence"]).ngroups if len(self.frames) else 0
        labelled = int(self.frames[self.au_columns].notna().any(axis=1).sum()) if len(self.frames) else 0
        lines = [
            f"{self.dataset} at {self.root}: {len(self.subjects)} subjects, {n_seq} sequences, "
            f"{len(self.frames)} frames ({labelled} with at least one label), AUs "
            + ", ".join(str(a) for a in self.aus)
        ]
        if self.problems:
            kinds = Counter(_problem_kind(p.message) for p in self.problems)
            lines.append(
                f"{len(self.problems)} problems: "
                + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
            )
            lines.extend(f"  {p}" for p in self.problems)
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def _problem_kind(message: str) -> str:
    # The first words before a colon or a digit make a stable category for the summary's counts.
    head = re.split(r"[:(\d]", message, maxsplit=1)[0].strip()
    return head or message


def examples_text(items: list[str]) -> str:
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (f" and {len(items) - _EXAMPLES} more" if len(items) > _EXAMPLES else "")


@dataclass
class IntensityLabels:
    """One AU's labels for one sequence: frame numbers and intensities (NaN = unknown), frames unique."""

    frames: np.ndarray  # (n,) int64
    values: np.ndarray  # (n,) float32


_SPLIT = re.compile(r"[,;\s]+")
# Frame numbers are stored as int64 and parsed through a float: beyond 2^53 neither holds them exactly (2^63
# overflowed the whole dataset's index). No recording has that many frames, so such a line is a problem.
MAX_FRAME_NUMBER = 2**53


def read_intensity_file(
    path: Path, problems: list[Problem], *, unknown: tuple[float, ...] = ()
) -> IntensityLabels | None:
    """Parse a ``frame,intensity`` file (DISFA ``SN001_au1.txt``, FERA 2015 ``F001_T1_AU06.csv``).

    Accepted: comma, semicolon or whitespace separators, an optional header line, blank lines, integer or
    decimal intensities. ``unknown`` codes (FERA's 9) become NaN silently. Junk lines, intensities outside
    0-5 and duplicated frames are reported once per file with the line numbers; a duplicate with a different
    value makes that frame unknown (NaN) because neither coding can be trusted. Returns None when nothing in
    the file can be used.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        problems.append(Problem(str(path), f"unreadable label file: {error.strerror or error}"))
        return None
    junk: list[str] = []
    out_of_range: list[str] = []
    huge_frames: list[str] = []
    seen: dict[int, float] = {}
    conflicts: dict[int, None] = {}
    duplicates: list[str] = []
    first_content = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        is_header = first_content and bool(re.search(r"[A-Za-z]", line)) and not _numeric_pair(fields)
        first_content = False
        if is_header:
            continue
        pair = _numeric_pair(fields)
        if pair is None:
            junk.append(f"{number} {raw.strip()[:30]!r}")
            continue
        frame, value = pair
        if abs(frame) > MAX_FRAME_NUMBER:
            huge_frames.append(f"line {number} frame {fields[0][:30]}")
            continue
        if value in unknown:
            value = float("nan")
        elif not INTENSITY_RANGE[0] <= value <= INTENSITY_RANGE[1]:
            out_of_range.append(f"line {number} frame {frame} = {value:g}")
            value = float("nan")
        if frame in seen:
            same = (np.isnan(seen[frame]) and np.isnan(value)) or seen[frame] == value
            duplicates.append(f"{frame}" + ("" if same else " (conflicting)"))
            if not same:
                conflicts[frame] = None
            continue
        seen[frame] = value
    if junk:
        problems.append(Problem(str(path), f"junk lines ignored ({len(junk)}): line {examples_text(junk)}"))
    if huge_frames:
        problems.append(
            Problem(
                str(path),
                f"frame numbers beyond {MAX_FRAME_NUMBER} ignored ({len(huge_frames)}): "
                f"{examples_text(huge_frames)}",
            )
        )
    if out_of_range:
        problems.append(
            Problem(
                str(path),
                f"intensity outside 0-5 set to unknown ({len(out_of_range)}): {examples_text(out_of_range)}",
            )
        )
    if duplicates:
        problems.append(
            Problem(
                str(path),
                f"duplicate frames ({len(duplicates)}; first kept, conflicting ones set to unknown): "
                f"{examples_text(duplicates)}",
            )
        )
    if not seen:
        problems.append(Problem(str(path), "empty label file: no 'frame,intensity' line"))
        return None
    for frame in conflicts:
        seen[frame] = float("nan")
    frames = np.fromiter(seen.keys(), dtype=np.int64, count=len(seen))
    values = np.fromiter(seen.values(), dtype=np.float32, count=len(seen))
    order = np.argsort(frames, kind="stable")
    return IntensityLabels(frames[order], values[order])


def _numeric_pair(fields: list[str]) -> tuple[int, float] | None:
    if len(fields) != 2:
        return None
    try:
        frame_f = float(fields[0])
        value = float(fields[1])
    except ValueError:
        return None
    if not frame_f.is_integer() or np.isnan(value):  # also refuses an infinite frame number
        return None
    return int(frame_f), value


def join_labels(
    frame_numbers: np.ndarray,
    labels: IntensityLabels,
    path: Path,
    problems: list[Problem],
    *,
    what: str = "frames",
) -> np.ndarray:
    """Values of ``labels`` at ``frame_numbers`` (NaN where unlabelled); labels for absent frames reported.

    ``frame_numbers`` is sorted and unique (the sequence's frames); ``what`` names them in the message
    ("frames 1-4845 of the video", "images").
    """
    out = np.full(len(frame_numbers), np.nan, dtype=np.float32)
    pos = np.searchsorted(frame_numbers, labels.frames)
    pos_clipped = np.minimum(pos, max(len(frame_numbers) - 1, 0))
    hit = (
        (pos < len(frame_numbers)) & (frame_numbers[pos_clipped] == labels.frames)
        if len(frame_numbers)
        else np.zeros(len(labels.frames), dtype=bool)
    )
    out[pos[hit]] = labels.values[hit]
    if not hit.all():
        missing = [str(f) for f in labels.frames[~hit].tolist()]
        problems.append(
            Problem(
                str(path),
                f"out-of-range frames ignored ({len(missing)}; not among the {what}): "
                f"{examples_text(missing)}",
            )
        )
    return out


def empty_frames(aus: tuple[int, ...], with_landmarks: bool = False) -> pd.DataFrame:
    """A frame table with the right columns and no rows (a dataset where nothing was usable)."""
    columns: dict[str, pd.Series] = {
        "subject": pd.Series([], dtype=object),
        "sequence": pd.Series([], dtype=object),
        "frame": pd.Series([], dtype=np.int64),
        "source": pd.Series([], dtype=object),
        "source_frame": pd.Series([], dtype=np.int64),
    }
    for code in aus:
        columns[au_column(code)] = pd.Series([], dtype=np.float32)
    if with_landmarks:
        columns[LANDMARKS_COLUMN] = pd.Series([], dtype=object)
    return pd.DataFrame(columns)


def sequence_table(
    subject: str,
    sequence: str,
    frames: np.ndarray,
    sources: list[str],
    source_frames: np.ndarray,
    labels: dict[int, np.ndarray],
    aus: tuple[int, ...],
    landmarks: list[str] | None = None,
) -> pd.DataFrame:
    """Build one sequence's rows; ``labels[code]`` is (n,) float32 aligned with ``frames``."""
    n = len(frames)
    data: dict[str, object] = {
        "subject": [subject] * n,
        "sequence": [sequence] * n,
        "frame": np.asarray(frames, dtype=np.int64),
        "source": sources,
        "source_frame": np.asarray(source_frames, dtype=np.int64),
    }
    for code in aus:
        data[au_column(code)] = labels.get(code, np.full(n, np.nan, dtype=np.float32)).astype(np.float32)
    if landmarks is not None:
        data[LANDMARKS_COLUMN] = landmarks
    return pd.DataFrame(data)


def concat_sequences(tables: list[pd.DataFrame], aus: tuple[int, ...], with_landmarks: bool) -> pd.DataFrame:
    """Concatenate sequence tables in (subject, sequence, frame) order with a fresh 0..n-1 index."""
    if not tables:
        return empty_frames(aus, with_landmarks)
    frames = pd.concat(tables, ignore_index=True)
    frames = frames.sort_values(["subject", "sequence", "frame"], kind="stable").reset_index(drop=True)
    for code in aus:
        frames[au_column(code)] = frames[au_column(code)].astype(np.float32)
    return frames


def video_frame_count(path: Path) -> int:
    """Number of frames in a video, from the container header, else by demuxing packets (no decoding).

    Raises ``OSError``/``av.error.FFmpegError`` for an unreadable file; callers turn that into a Problem.
    """
    import av  # heavy; only readers of video datasets need it

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise OSError("no video stream")
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)
