"""The frames of one sequence's index rows, in row order, each video decoded once from its start.

Why a module of its own: a prepare worker wants a sequence's frames in order without seeking (seeking in
the compressed videos of DISFA or BP4D is slow and not always frame-exact), and it must account for every
row, readable or not. So frames are streamed per run of rows from one source, and a frame that cannot be
read comes out as ``None`` with a :class:`~facskit.data.index.Problem` saying why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facskit.data.index import Problem
from facskit.errors import MediaError
from facskit.io.media import MediaKind, media_kind

#: (row position, RGB image, or None when the frame could not be read)
FrameAt = tuple[int, np.ndarray | None]


def iter_sequence_frames(rows: pd.DataFrame, problems: list[Problem]) -> Iterator[FrameAt]:
    """Yield (row position, RGB image or None when unreadable) for every row, each video streamed once.

    ``rows`` are one sequence's index rows (``source``, ``source_frame``; positions 0..n-1); what could
    not be read is appended to ``problems``.
    """
    sources = rows["source"].to_numpy()
    source_frames = rows["source_frame"].to_numpy()
    for start, stop in _runs_of_one_source(sources):
        source = str(sources[start])
        positions = range(start, stop)
        if media_kind(Path(source)) is MediaKind.VIDEO:  # by extension, as the readers index it
            yield from _video_frames(source, source_frames, positions, problems)
        else:
            yield from _image_frames(source, positions, problems)


def _runs_of_one_source(sources: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive rows with the same source."""
    start = 0
    while start < len(sources):
        stop = start
        while stop < len(sources) and sources[stop] == sources[start]:
            stop += 1
        yield start, stop
        start = stop


def _video_frames(
    source: str, source_frames: np.ndarray, positions: Sequence[int], problems: list[Problem]
) -> Iterator[FrameAt]:
    """The rows at ``positions`` from one decoding pass of the video ``source``, stopping after the last
    frame wanted; frames the video does not deliver (it ends early or breaks) come out as None."""
    from facskit.io import iter_frames

    wanted: dict[int, list[int]] = {}
    for position in positions:
        wanted.setdefault(int(source_frames[position]), []).append(position)
    last = max(wanted)
    try:
        for frame in iter_frames(source):
            for position in wanted.pop(frame.index, None) or ():
                yield position, frame.image
            if frame.index >= last:
                break
    except Exception as error:  # noqa: BLE001 - MediaError, OSError, ValueError and PyAV's own av.error.*
        problems.append(Problem(source, f"unreadable frames: decoding stopped ({error})"))
    if wanted:
        missing = sorted(wanted)
        problems.append(
            Problem(
                source,
                f"unreadable frames ({len(missing)}): video ended or broke before frame {missing[0]}",
            )
        )
        for index in missing:
            for position in wanted[index]:
                yield position, None


def _image_frames(source: str, positions: Sequence[int], problems: list[Problem]) -> Iterator[FrameAt]:
    """The rows at ``positions``, all showing the image file ``source`` (read once per row)."""
    from facskit.io import read_image

    for position in positions:
        try:
            yield position, read_image(source)
        except (MediaError, OSError) as error:
            problems.append(Problem(source, f"unreadable frame: {error}"))
            yield position, None
