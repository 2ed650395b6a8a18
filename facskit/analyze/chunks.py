"""Time chunks of a long video and how their rows are stitched back into one run's (the Ray path of
``facskit analyze``; pure functions of rows and tracker states, no Ray here).

The face tracker carries state from frame to frame (landmarks are re-fitted from the previous frame's,
detection runs every ``detect_every`` frames), so a chunk cannot start at its first frame: it starts
``warmup`` frames early, tracks through that warm-up without running the network, and its warm-up rows are
dropped. To give exactly the numbers of a single-process run, the stitcher checks that the chunk's tracker
has *caught up* with the previous chunk's: both record a fingerprint of the full tracker state (detection
phase, every track's landmarks, score and counters, in order) on the overlapping frames, and the first frame
where the two agree proves that every later frame is the same as in one uninterrupted run (the tracker is
deterministic). The same frame maps the chunk-local face ids onto the previous chunk's, and ids born later
are shifted by the difference of the two id counters, so face ids are stable across borders and equal those
of one process. A chunk that never caught up is re-run with :data:`FALLBACK_WARMUP_FACTOR` times the
warm-up by the caller; if that fails too, its ids are matched by landmark distance
(:func:`approximate_id_map`) and the stitch says it is approximate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facskit.faces.track import DEFAULT_FULL_SCAN_ROUNDS

FALLBACK_WARMUP_FACTOR = 4


def default_warmup(detect_every: int) -> int:
    """Frames a chunk tracks before its first row: 8 detection rounds plus 20 frames (caught up in 12-36
    frames on the sample media)."""
    return 8 * detect_every + 20


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, stop)`` of one file (``stop`` None: to the end), tracked from ``warm_start``.

    ``tail_from``: the chunk also fingerprints its tracker from there to ``stop``, where the next chunk's
    (possibly extended) warm-up overlaps it.
    """

    index: int
    start: int
    stop: int | None
    warm_start: int
    tail_from: int | None = None


def plan_chunks(
    frame_count: int | None, chunk_frames: int, warmup: int, detect_every: int, frame_step: int = 1
) -> list[Chunk]:
    """Time chunks of a video of ``frame_count`` frames (one chunk when unknown or short).

    Warm-up starts are rounded down to a multiple of ``detect_every * frame_step`` times the tracker's
    detection rounds per whole-frame scan, so the chunk's detection rounds, and its whole-frame scans, fall
    on the same frames as the single run's (the tracker scans the whole frame on its first frame).
    """
    if not frame_count or frame_count <= chunk_frames:
        return [Chunk(0, 0, None, 0)]
    period = detect_every * frame_step * DEFAULT_FULL_SCAN_ROUNDS
    starts = list(range(0, frame_count, chunk_frames))

    def warm(start: int, frames: int) -> int:
        return max(0, (start - frames) // period * period)

    chunks = []
    for k, start in enumerate(starts):
        last = k == len(starts) - 1
        stop = None if last else starts[k + 1]
        tail = None if last else warm(starts[k + 1], FALLBACK_WARMUP_FACTOR * warmup)
        chunks.append(Chunk(k, start, stop, warm(start, warmup), tail))
    return chunks


@dataclass
class TrackerState:
    """A tracker's state after one frame: detection phase (frames since the last detection, rounds since the
    last whole-frame scan), id counter, face ids in order and a digest of everything else that decides the
    next frames (landmarks, scores, success, unconfirmed rounds)."""

    phase: tuple[int, int]
    next_id: int
    ids: tuple[int, ...]
    digest: str

    @classmethod
    def of(cls, tracker: Any) -> TrackerState:
        # FaceTracker keeps these private; they are read, never written, and only here.
        digest = hashlib.sha1()
        for track in tracker._tracks:
            digest.update(np.ascontiguousarray(track.landmarks).tobytes())
            digest.update(
                repr((float(track.score), bool(track.success), int(track.unconfirmed_rounds))).encode()
            )
        ids = tuple(int(t.face_id) for t in tracker._tracks)
        phase = (int(tracker._frames_since_detection), int(tracker._rounds_since_full_scan))
        return cls(phase, int(tracker._next_id), ids, digest.hexdigest())

    def same_as(self, other: TrackerState) -> bool:
        return self.phase == other.phase and self.digest == other.digest and len(self.ids) == len(other.ids)


@dataclass
class ChunkResult:
    """What a task sends back: raw rows of its frames and the tracker states on the overlaps."""

    label: str
    chunk: Chunk
    rows: pd.DataFrame
    states: dict[int, TrackerState] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class IdMap:
    """Chunk-local face id -> single-run face id: explicit pairs from the sync frame, an offset for ids
    born after it."""

    pairs: dict[int, int] = field(default_factory=dict)
    offset: int = 0

    def __call__(self, local: int) -> int:
        if local < 0:
            return local
        return self.pairs.get(local, local + self.offset)


def sync_frame(previous: dict[int, TrackerState], current: dict[int, TrackerState]) -> int | None:
    """The first overlapping frame where both chunks' trackers are in the same state, or None."""
    for index in sorted(set(previous) & set(current)):
        if previous[index].same_as(current[index]):
            return index
    return None


def id_map_at(frame: int, previous: ChunkResult, prev_map: IdMap, current: ChunkResult) -> IdMap:
    """The id map of ``current`` from the sync ``frame``: tracks pair up in order (same state means same
    order), and an id born later in ``current`` is born with the same number in the single run."""
    before, after = previous.states[frame], current.states[frame]
    pairs = {local: prev_map(prior) for local, prior in zip(after.ids, before.ids, strict=True)}
    return IdMap(pairs, prev_map(before.next_id) - after.next_id)


def approximate_id_map(previous: pd.DataFrame, prev_map: IdMap, current: ChunkResult) -> IdMap:
    """Fallback when no sync frame exists: match the faces of the current chunk's first frame to the
    previous chunk's last frame by mean landmark distance (greedy, < 0.1 of the face width)."""
    first = current.rows[current.rows["frame"] == current.rows["frame"].min()]
    last = previous[previous["frame"] == previous["frame"].max()]
    xs = [f"x_{k}" for k in range(68)]
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for _, row in first[first["face_detected"]].iterrows():
        best, best_d = None, np.inf
        for _, other in last[last["face_detected"]].iterrows():
            d = float(np.nanmean(np.abs(row[xs].to_numpy(float) - other[xs].to_numpy(float))))
            if d < best_d and int(other["face_id"]) not in used and d < 0.1 * float(other["w"]):
                best, best_d = int(other["face_id"]), d
        if best is not None:
            pairs[int(row["face_id"])] = best
            used.add(best)
    top = int(previous["face_id"].max()) + 1 if len(previous) else 0
    local_top = int(current.rows["face_id"].min()) if len(current.rows) else 0
    return IdMap(pairs, top - local_top)


def stitch(parts: list[ChunkResult]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One file's rows from its chunks, face ids mapped to the single run's (module docstring)."""
    frames = []
    info: dict[str, Any] = {"chunks": len(parts), "exact": True, "sync_frames": [], "errors": []}
    id_map = IdMap()
    previous: ChunkResult | None = None
    for part in parts:
        if part.error:
            info["errors"].append(part.error)
        if previous is not None:
            frame = sync_frame(previous.states, part.states)
            if frame is None:
                info["exact"] = False
                id_map = approximate_id_map(frames[-1], id_map, part)
            else:
                info["sync_frames"].append(frame)
                id_map = id_map_at(frame, previous, id_map, part)
        rows = part.rows.copy()
        rows["face_id"] = rows["face_id"].map(id_map).astype("int64")
        frames.append(rows)
        previous = part
    return pd.concat(frames, ignore_index=True), info
