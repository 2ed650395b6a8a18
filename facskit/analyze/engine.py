"""The pipelined analysis engine: decode, face front end and network overlap on separate threads.

    decode (PyAV) --q--> track + landmarks + align (dlib, cv2) --q--> batch + network + readout (torch/ORT)

Three stages, each on its own thread (the last on the caller's), joined by bounded queues. Threads and not
processes: PyAV's decoder, dlib's HOG, cv2.warpAffine, torch and ONNX Runtime kernels release the GIL, and
threads share the frames without pickling them (a front end in a second process, frames pickled through a
queue, ran at 75-79 against 102-112 frames/s). The landmark fit, many small numpy calls, holds the GIL for
most of its ~2 ms a face; that is what limits the engine on two cores now. The queues are bounded
(:data:`DECODE_QUEUE_FRAMES`, :data:`PREPARED_QUEUE_FRAMES`, fewer frames for large frames:
:data:`DECODE_QUEUE_BYTES`), so a fast decoder cannot run ahead of a slow network and memory stays flat
whatever the video length; frames waiting for the network hold only their face crops unless a caller wants
the pixels (overlays).

The stages are exactly those of the serial loop (:meth:`AnalysisPipeline.prepare` then
:meth:`AnalysisPipeline.run_prepared`), run in the same order on the same data, so the engine's rows equal
the plain loop's (tested in tests/analyze/test_engine.py).

The front-end stage builds its own :class:`~facskit.faces.FaceTracker` (as :meth:`FaceFrontEnd.iter_faces`
does) so that a caller can watch the tracker state frame by frame (``observe``): :mod:`facskit.analyze.
distributed` uses that to find where a chunk started mid-video has caught up with the single-process run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from facskit.analyze.pipeline import AnalysisPipeline, FrameResult, PreparedFrame
from facskit.deprecation import renamed_keyword

T = TypeVar("T")

# ~2 s of 25 fps 640x360 RGB (0.7 MB a frame): enough slack to hide a slow batch, little memory.
DECODE_QUEUE_FRAMES = 32
# Prepared frames hold their aligned crops (192 KB per face at 256): two batches of 64 in flight at most.
PREPARED_QUEUE_FRAMES = 128
# Larger frames get shorter queues: at most this many bytes of decoded frames wait for the front end, and
# of frames that keep their pixels (for overlays) for the network. A 240-frame 4K clip peaked at 1.83 GB
# with 32 + 128 frames queued (measured); at 64 MB, 4K decodes 2 frames ahead, 1080p 10, 640x360 still 32.
DECODE_QUEUE_BYTES = 64 << 20
PREPARED_QUEUE_BYTES = 128 << 20
_DONE = object()

# Called on the front-end thread after each tracker update: (frame index, the tracker).
TrackerObserver = Callable[[int, Any], None]


class _Failure:
    """An exception raised inside a stage, carried through the queue to be re-raised in order."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def in_background(items: Iterable[T], maxsize: int, name: str) -> Iterator[T]:
    """Iterate ``items`` on a daemon thread, handing them over through a queue of ``maxsize``.

    An exception raised by ``items`` is re-raised to the consumer after the items produced before it (so a
    truncated video still yields its good frames first). Closing the returned generator early (``break``,
    an error downstream) stops the producer at its next item, so no thread outlives the run.
    """
    channel: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(error))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None and stop.is_set():
                close()
        put(_DONE)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = channel.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


@renamed_keyword("every", "frame_step")
def tracked_video_frames(
    front_end: Any,
    media: Any,
    frame_step: int = 1,
    start_frame: int = 0,
    max_frames: int | None = None,
    observe: TrackerObserver | None = None,
    track_from: int = 0,
    decode_threads: int | None = None,
    prefetch: bool = True,
    frame_size: int | None = None,
) -> Iterator[tuple[Any, list[Any]]]:
    """``(frame, tracked faces)`` for every ``frame_step``-th frame of a video, decoded on its own thread.

    The same loop as :meth:`FaceFrontEnd.iter_faces` (one tracker, updated on every yielded frame), with the
    decoder prefetching. Frames before ``start_frame`` are tracked (so face ids and landmarks are those of an
    uninterrupted run) but not yielded; decoding stops at ``max_frames``. Frames before ``track_from`` are
    decoded only (a time chunk of a long video starts its tracker there, see :mod:`facskit.analyze.
    distributed`). ``decode_threads`` caps FFmpeg's threads and ``prefetch=False`` decodes on the caller's
    thread: together they keep a one-CPU task (a Ray worker) on one core. ``frame_size``: bytes of one
    decoded frame, which bounds the decode queue (read from the video's header when not given).
    """
    from facskit.faces import FaceTracker
    from facskit.io import iter_frames

    tracker = FaceTracker(
        detect_every=front_end.detect_every, detector=front_end.video_detector, predictor=front_end.predictor
    )
    decoded = iter_frames(media, frame_step=frame_step, threads=decode_threads)
    if prefetch:
        size = frame_size if frame_size is not None else frame_bytes(media)
        length = queue_length(size, DECODE_QUEUE_BYTES, DECODE_QUEUE_FRAMES)
        frames = in_background(decoded, length, "facskit-decode")
    else:
        frames = decoded
    try:
        for frame in frames:
            if max_frames is not None and frame.index >= max_frames:
                break
            if frame.index < track_from:
                continue
            faces = tracker.update(frame.image)
            if observe is not None:
                observe(frame.index, tracker)
            if frame.index >= start_frame:
                yield frame, faces
    finally:
        frames.close()


def run_pipelined(
    pipeline: AnalysisPipeline,
    file: str,
    tracked: Iterable[tuple[Any, list[Any]]],
    frame_size: int | None = None,
) -> Iterator[FrameResult]:
    """The engine: ``tracked`` (decode + track) and :meth:`~AnalysisPipeline.prepare` (align) run on the
    front-end thread, batching and the network on the caller's; rows as :meth:`AnalysisPipeline.run`.
    ``frame_size`` (bytes of one decoded frame) shortens the queue where the pipeline keeps the pixels."""
    length = PREPARED_QUEUE_FRAMES
    if pipeline.keep_images:
        length = queue_length(frame_size, PREPARED_QUEUE_BYTES, PREPARED_QUEUE_FRAMES)
    prepared: Iterator[PreparedFrame] = in_background(
        (pipeline.prepare(file, frame, faces) for frame, faces in tracked), length, "facskit-frontend"
    )
    return pipeline.run_prepared(prepared)


def frame_bytes(media: Any) -> int | None:
    """Bytes of one decoded RGB frame of the video ``media``, from its header; None where it does not say."""
    from facskit.io.video import probe_video

    try:
        info = probe_video(media.path)
    except Exception:  # noqa: BLE001 - only a queue length depends on it; decoding reports the real error
        return None
    return info.width * info.height * 3 if info.width and info.height else None


def queue_length(frame_size: int | None, budget: int, most: int) -> int:
    """``most`` frames, or as many frames of ``frame_size`` bytes as fit in ``budget`` when that is fewer,
    but at least 2."""
    if not frame_size:
        return most
    return max(2, min(most, budget // frame_size))


# glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30) -> bool:
    """Keep large blocks on glibc's heap instead of fresh mmap pages (DESIGN.md section 6).

    glibc hands every block over 128 KB-32 MB (its adaptive mmap threshold) out as new pages and returns
    them on free, so each inference re-faults its activation buffers in; raising both thresholds reuses the
    heap. The process keeps its peak heap instead of trimming it, a fixed cost that does not grow with video
    length. Returns False where glibc is not the allocator (the call is then a no-op).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1)
    except (OSError, AttributeError):
        return False


__all__ = [
    "frame_bytes",
    "in_background",
    "queue_length",
    "run_pipelined",
    "tracked_video_frames",
    "tune_malloc",
]
