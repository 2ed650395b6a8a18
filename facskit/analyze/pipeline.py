"""The analysis pipeline: decode -> track faces -> align -> batched network -> readout, streamed.

Frames arrive one at a time from :func:`facskit.io.iter_frames`; each face found by the
:class:`~facskit.faces.FaceTracker` is aligned and its crop queued; when ``batch_size`` crops are queued the
:class:`~facskit.runtime.backends.Backend` runs once on all of them and the frames waiting for those crops are
released in order. So at most one batch of frames is held at a time, whatever the video length, and the
network sees the same crops (hence gives the same numbers) whatever the batch size. Rows are gathered into
chunks of ``chunk_frames`` frames, the unit the CLI writes to disk and resumes from.

:meth:`AnalysisPipeline.run` is the plain serial loop. :mod:`facskit.analyze.engine` runs the same two
halves (:meth:`~AnalysisPipeline.prepare` on a front-end thread, :meth:`~AnalysisPipeline.run_prepared` on
the network thread), so the overlapped engine sees the same crops in the same batches and gives the same
numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from facskit.aus import au_column
from facskit.errors import MediaError
from facskit.runtime.backends import Backend

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FaceSelection = Literal["all", "largest"]
FACE_SELECTIONS: tuple[FaceSelection, ...] = ("all", "largest")
# Frames per written chunk of a resumable result: ~20 s of 25 fps video; small enough that a killed run
# loses little work. (Not the time chunk of a Ray task: distributed.DEFAULT_TIME_CHUNK_FRAMES.)
DEFAULT_CHUNK_FRAMES = 500
N_LANDMARKS = 68


@dataclass
class FaceResult:
    """One face in one frame: its tracker output and, after the network ran, intensities and heatmaps."""

    face_id: int
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    score: float
    pose: tuple[float, float, float]  # yaw, pitch, roll in degrees
    landmarks: np.ndarray  # (68, 2) frame pixels
    matrix: np.ndarray  # (2, 3) frame -> crop
    intensities: np.ndarray | None = None  # (A,) 0-5
    heatmaps: np.ndarray | None = None  # (P, h, w) float32, crop-aligned


@dataclass
class FrameResult:
    """One decoded frame and its faces (empty list: no face found). ``image`` is kept only until the frame
    is consumed (overlays are drawn then) and set to None before frames are gathered into chunks."""

    file: str
    index: int
    timestamp: float
    image: np.ndarray | None  # (H, W, 3) uint8 RGB
    faces: list[FaceResult] = field(default_factory=list)


# A frame's result with its faces' aligned crops (N, S, S, 3) uint8, or None when it has no face.
PreparedFrame = tuple[FrameResult, np.ndarray | None]


class AnalysisPipeline:
    """Streams :class:`FrameResult` objects for one media source, batching crops across frames.

    ``keep_heatmaps`` keeps each face's maps on its :class:`FaceResult` (for overlays and
    ``--save-heatmaps``); otherwise they are dropped right after the readout. ``keep_images=False`` drops
    each frame's pixels as soon as its faces are aligned, so that frames waiting for the network hold only
    their crops (a 4K frame is 25 MB, its face crop 192 kB).
    """

    def __init__(
        self,
        backend: Backend,
        batch_size: int = 16,
        faces: FaceSelection = "all",
        keep_heatmaps: bool = False,
        keep_images: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if faces not in FACE_SELECTIONS:
            raise ValueError(f"faces must be one of {FACE_SELECTIONS}, not {faces!r}")
        self.backend = backend
        self.batch_size = batch_size
        self.faces = faces
        self.keep_heatmaps = keep_heatmaps
        self.keep_images = keep_images
        from facskit.align import AlignSpec

        spec = backend.spec
        self.align_spec = AlignSpec(kind=spec.alignment, size=spec.crop_size)  # type: ignore[arg-type]

    def run(self, file: str, tracked_frames: Iterable[tuple[Any, Sequence[Any]]]) -> Iterator[FrameResult]:
        """Analyse ``(frame, faces)`` pairs of the source ``file``: frames as :class:`facskit.io.Frame`,
        faces as :class:`facskit.faces.TrackedFace` (from :class:`facskit.faces.FaceFrontEnd`).

        A :class:`MediaError` raised by the decoder mid-stream (a truncated video) is re-raised only after
        every frame decoded before it has been yielded, so the caller keeps those results.
        """
        return self.run_prepared(self.prepare(file, frame, tracked) for frame, tracked in tracked_frames)

    def prepare(self, file: str, frame: Any, tracked: Sequence[Any]) -> PreparedFrame:
        """The CPU-side work of one frame before the network: keep the wanted faces and align them.

        Split from :meth:`run_prepared` so that :mod:`facskit.analyze.engine` can run it on the front-end
        thread (cv2.warpAffine releases the GIL) while the network runs on another.
        """
        from facskit.align import align_faces

        result = self._frame_result(file, frame, tracked)
        if not self.keep_images:
            result.image = None
        if not result.faces:
            return result, None
        landmarks = np.stack([f.landmarks for f in result.faces])  # (N, 68, 2)
        crops, _, matrices = align_faces(frame.image, landmarks, self.align_spec)  # (N, S, S, 3)
        for face, matrix in zip(result.faces, matrices, strict=True):
            face.matrix = matrix
        return result, crops

    def run_prepared(self, prepared: Iterable[PreparedFrame]) -> Iterator[FrameResult]:
        """Batch the crops of prepared frames through the network and release the frames in order.

        Frames wait only for the batch their crops are in, so at most one batch of frames is held.
        """
        pending: list[FrameResult] = []
        crops: list[np.ndarray] = []
        owners: list[FaceResult] = []
        try:
            for result, batch in prepared:
                if batch is not None:
                    crops.extend(batch)
                    owners.extend(result.faces)
                pending.append(result)
                if len(crops) >= self.batch_size:
                    self._infer(crops, owners)
                    yield from pending
                    pending.clear()
                elif not crops:  # nothing waits for the network: release at once
                    yield from pending
                    pending.clear()
        except MediaError:
            self._infer(crops, owners)
            yield from pending
            raise
        self._infer(crops, owners)
        yield from pending

    def _frame_result(self, file: str, frame: Any, tracked: Sequence[Any]) -> FrameResult:
        """Keep the faces whose landmark fit succeeded (all, or the largest box), ordered by face id."""
        kept = [t for t in tracked if t.success]
        if self.faces == "largest" and len(kept) > 1:
            kept = [max(kept, key=lambda t: float(t.box[2]) * float(t.box[3]))]
        faces = [
            FaceResult(
                face_id=int(t.face_id),
                box=tuple(float(v) for v in t.box),  # type: ignore[arg-type]
                score=float(t.score),
                pose=tuple(float(v) for v in t.pose),  # type: ignore[arg-type]
                landmarks=np.asarray(t.landmarks, dtype=np.float32),
                matrix=np.zeros((2, 3)),
            )
            for t in kept
        ]
        faces.sort(key=lambda f: f.face_id)
        return FrameResult(file, int(frame.index), float(frame.timestamp), frame.image, faces)

    def _infer(self, crops: list[np.ndarray], owners: list[FaceResult]) -> None:
        """Run the network on the queued crops in slices of ``batch_size`` and read intensities out (in numpy:
        the readout is a max, a clip and a mean of two, exact in either library, and torch stays unimported
        on the ONNX Runtime path)."""
        from facskit.targets import intensity_from_heatmaps

        for start in range(0, len(crops), self.batch_size):
            batch = np.stack(crops[start : start + self.batch_size])  # (B, S, S, 3)
            maps = self.backend.heatmaps(batch)  # (B, P, h, w)
            intensities = intensity_from_heatmaps(maps, self.backend.spec.convention)  # (B, A)
            for face, value, heatmap in zip(
                owners[start : start + self.batch_size], intensities, maps, strict=True
            ):
                face.intensities = value.astype(np.float32)
                # float16 halves what a chunk holds; heatmaps are stored as float16 anyway.
                face.heatmaps = heatmap.astype(np.float16) if self.keep_heatmaps else None
        crops.clear()
        owners.clear()


def rows_from_frames(results: Sequence[FrameResult], aus: Sequence[int]) -> pd.DataFrame:
    """The raw result rows (schema of :mod:`facskit.analyze.results`, occurrence not yet set) of some frames.

    One row per face per frame, and one ``face_detected=False`` row for a frame without a face.
    """
    return raw_table([raw_columns(results, aus)], aus)


def raw_table(parts: Sequence[dict[str, Any]], aus: Sequence[int]) -> pd.DataFrame:
    """Consecutive :func:`raw_columns` of one or more inputs as one table in the result schema."""
    import pandas as pd

    from facskit.analyze.schema import conform

    merged = {
        name: [v for part in parts for v in part[name]]
        if name == "file"
        else np.concatenate([part[name] for part in parts])
        for name in parts[0]
    }
    return conform(pd.DataFrame(merged), aus)


def raw_columns(results: Sequence[FrameResult], aus: Sequence[int]) -> dict[str, Any]:
    """:func:`rows_from_frames` as plain columns (name -> list or array), before the schema's casts: the
    file names a list, ints int64, the box, score, pose and timestamp float64, landmarks and intensities
    float32 (NaN without a face)."""
    n = sum(max(1, len(r.faces)) for r in results)
    num_aus = len(aus)
    files: list[str] = []
    ints = {k: np.zeros(n, dtype=np.int64) for k in ("frame", "face_id")}
    detected = np.zeros(n, dtype=bool)
    floats = {
        k: np.full(n, np.nan) for k in ("timestamp", "x", "y", "w", "h", "score", "yaw", "pitch", "roll")
    }
    landmarks = np.full((n, N_LANDMARKS, 2), np.nan, dtype=np.float32)
    intensities = np.full((n, num_aus), np.nan, dtype=np.float32)
    i = 0
    for r in results:
        for face in r.faces or [None]:
            files.append(r.file)
            ints["frame"][i] = r.index
            floats["timestamp"][i] = r.timestamp
            if face is None:
                ints["face_id"][i] = -1
            else:
                detected[i] = True
                ints["face_id"][i] = face.face_id
                for key, value in zip(("x", "y", "w", "h"), face.box, strict=True):
                    floats[key][i] = value
                floats["score"][i] = face.score
                for key, value in zip(("yaw", "pitch", "roll"), face.pose, strict=True):
                    floats[key][i] = value
                landmarks[i] = face.landmarks
                if face.intensities is not None:
                    intensities[i] = face.intensities
            i += 1
    columns: dict[str, Any] = {"file": files, **ints, "face_detected": detected, **floats}
    for k in range(N_LANDMARKS):
        columns[f"x_{k}"] = landmarks[:, k, 0]
    for k in range(N_LANDMARKS):
        columns[f"y_{k}"] = landmarks[:, k, 1]
    for a, code in enumerate(aus):
        columns[au_column(code)] = intensities[:, a]
    return columns


def chunked(
    results: Iterable[FrameResult], chunk_frames: int = DEFAULT_CHUNK_FRAMES
) -> Iterator[list[FrameResult]]:
    """Group a stream of frames into lists of ``chunk_frames`` frames (the last one may be shorter)."""
    chunk: list[FrameResult] = []
    try:
        for result in results:
            chunk.append(result)
            if len(chunk) >= chunk_frames:
                yield chunk
                chunk = []
    except MediaError:
        if chunk:  # the frames decoded before a truncation still count
            yield chunk
        raise
    if chunk:
        yield chunk
