"""Scale-out with Ray (``pip install 'facskit[ray]'``): files, and time chunks of long videos, as Ray tasks.

    facskit analyze videos/ --out results/ --ray                 # a local Ray instance on this machine
    facskit analyze videos/ --out results/ --ray auto            # the cluster this node belongs to
    facskit analyze videos/ --out results/ --ray ray://head:10001

This module runs the inputs the driver (:func:`facskit.analyze.runner.analyze_to_dir`) hands it: every
file is one task, and a video longer than ``chunk_frames`` is cut into time chunks, whose rows are stitched
into exactly those of one uninterrupted run (:mod:`facskit.analyze.chunks` says how). On the sample media
the trackers agree 12-36 frames after a chunk's start (default warm-up: 60 frames); a chunk that has not
caught up is re-run once with four times the warm-up, and if that fails too its ids are matched by landmark
distance and the result's ``.attrs["stitch"]`` says it is approximate.

Tasks are retried on worker failure (``max_retries``), their number in flight is bounded (``workers``), and
progress (tasks, frames, fps) is logged as they finish.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from facskit.analyze.chunks import (
    Chunk,
    ChunkResult,
    TrackerState,
    default_warmup,
    plan_chunks,
    stitch,
    sync_frame,
)
from facskit.deprecation import renamed_keyword
from facskit.errors import MediaError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from facskit.analyze.detector import Detector
    from facskit.analyze.results import AUResult

# Frames per time chunk, the unit of work of one Ray task: ~3 minutes of 25 fps video, a few minutes of work
# per task on one core. (Not the written chunk of a resumable result: pipeline.DEFAULT_CHUNK_FRAMES.)
DEFAULT_TIME_CHUNK_FRAMES = 4500
MAX_RETRIES = 3


@dataclass(frozen=True)
class DetectorRecipe:
    """What a worker needs to rebuild the driver's Detector: the network itself (weights travel with the
    task, so a registry model's random init or a local file need not exist on the worker) and the options.

    ``threads`` is the CPU count Ray reserved for each task. Every library that would otherwise start one
    thread per core of the node (torch, OpenCV, ONNX Runtime, FFmpeg) is capped to it, and a one-CPU task
    runs the serial loop instead of the pipelined engine: N tasks on N cores then share the node instead of
    each spreading over all of it, which is what makes the fan-out scale with its workers.
    """

    model: Any  # an AUModel, or the bytes of an .onnx file
    backend: str
    precision: str
    device: str
    detect_every: int
    faces: str
    batch_size: int
    frame_step: int
    threads: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # one per driver run: the worker cache key

    @classmethod
    def of(cls, detector: Detector, threads: int = 1) -> DetectorRecipe:
        backend = detector.backend
        model = backend.model if hasattr(backend, "model") else Path(backend.path).read_bytes()
        return cls(
            model,
            backend.name,
            getattr(backend, "precision", "fp32"),
            detector.device,
            detector.detect_every,
            detector.faces,
            detector.batch_size,
            detector.frame_step,
            threads,
        )

    def build(self) -> Detector:
        """The Detector, built once per worker process and run (Ray reuses its worker processes, so the
        second and later tasks of a run skip model loading, ONNX export/quantisation and dlib start-up)."""
        cached = _WORKER_DETECTORS.get(self.token)
        if cached is not None:
            return cached
        limit_threads(self.threads)
        detector = self._fresh()
        _WORKER_DETECTORS.clear()  # a worker keeps the current run's detector only
        _WORKER_DETECTORS[self.token] = detector
        return detector

    def _fresh(self) -> Detector:
        from facskit.analyze.detector import Detector
        from facskit.runtime.backends import OnnxBackend

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(self.model, bytes):
                # ONNX Runtime reads the file when a session is made, so the copy is removed right after:
                # no file is left behind per worker and run.
                with tempfile.TemporaryDirectory(prefix="facskit-ray-") as folder:
                    path = Path(folder) / "model.onnx"
                    path.write_bytes(self.model)
                    detector = Detector(
                        model=path, device=self.device, detect_every=self.detect_every, faces=self.faces
                    )
                    # a session capped to the task's CPUs, at the driver's precision
                    detector.backend = OnnxBackend(path, self.device, self.threads, self.precision)
            else:
                detector = Detector(
                    model=self.model,
                    device=self.device,
                    detect_every=self.detect_every,
                    faces=self.faces,  # type: ignore[arg-type]
                    backend=self.backend,  # type: ignore[arg-type]
                    precision=self.precision,  # type: ignore[arg-type]
                )
                backend = detector.backend
                if isinstance(backend, OnnxBackend):  # a session capped to the task's CPUs
                    detector.backend = OnnxBackend(backend.path, self.device, self.threads, backend.precision)
        detector.batch_size = self.batch_size
        detector.frame_step = self.frame_step
        detector.pipelined = self.threads > 1
        return detector


_WORKER_DETECTORS: dict[str, Detector] = {}


def limit_threads(threads: int) -> None:
    """Cap OpenCV's thread pool, and torch's where torch is loaded, to ``threads`` (ONNX Runtime and FFmpeg
    are capped where their sessions and decoders are made).

    Torch is loaded exactly when the recipe carries a torch model (unpickling the model imported it); an
    ONNX Runtime worker never imports it, so this does not either.
    """
    import cv2

    cv2.setNumThreads(max(1, threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, threads))


def analyze_chunk(
    recipe: DetectorRecipe, label: str, chunk: Chunk, max_frames: int | None = None
) -> ChunkResult:
    """One task: rows of ``chunk`` of the file ``label`` plus the tracker states the stitcher needs.

    Plain function (Ray wraps it in :func:`_remote`), so it is tested and usable without Ray.
    """
    from facskit.analyze.engine import run_pipelined, tracked_video_frames
    from facskit.analyze.pipeline import AnalysisPipeline, rows_from_frames
    from facskit.io import MediaKind, iter_media

    began = time.perf_counter()
    detector = recipe.build()
    media = next(iter(iter_media([label])))
    stop = chunk.stop if max_frames is None else min(chunk.stop or max_frames, max_frames)
    frames = []
    error = None
    states: dict[int, TrackerState] = {}
    try:
        if media.kind is not MediaKind.VIDEO:
            for part in detector.iter_chunks(media, label=label, max_frames=stop):
                frames.extend(part)
        else:

            def observe(index: int, tracker: Any) -> None:
                if index < chunk.start or (chunk.tail_from is not None and index >= chunk.tail_from):
                    states[index] = TrackerState.of(tracker)

            pipeline = AnalysisPipeline(
                detector.backend, detector.batch_size, detector.faces, keep_images=False
            )
            tracked = tracked_video_frames(
                detector.front_end,
                media,
                detector.frame_step,
                start_frame=chunk.start,
                max_frames=stop,
                observe=observe,
                track_from=chunk.warm_start,
                decode_threads=recipe.threads,
                prefetch=detector.pipelined,
            )
            if detector.pipelined:
                results = run_pipelined(pipeline, label, tracked)
            else:
                results = pipeline.run_prepared(
                    pipeline.prepare(label, frame, faces) for frame, faces in tracked
                )
            for result in results:
                result.image = None
                frames.append(result)
    except MediaError as failure:
        error = str(failure)
    rows = rows_from_frames(frames, detector.aus)
    return ChunkResult(label, chunk, rows, states, error, time.perf_counter() - began)


def _remote(ray: Any, cpus_per_task: int) -> Any:
    return ray.remote(num_cpus=cpus_per_task, max_retries=MAX_RETRIES)(analyze_chunk)


def init_ray(address: str | None, num_cpus: int | None = None) -> Any:
    """``ray.init`` on ``address`` (``None``/``"local"``: a local instance) unless already connected."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'facskit[ray]'") from None
    if not ray.is_initialized():
        if address in (None, "local"):
            ray.init(
                num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False
            )
        else:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    return ray


def stop_ray() -> None:
    """Disconnect from Ray now, stopping the local instance if this process started one.

    For a command that is about to exit. Left to Ray's exit hook, the same shutdown first sleeps 0.5 s "so
    that log messages finish printing" (workers' logs are not forwarded here: ``log_to_driver`` is off).
    Ray then stops a local instance's processes one at a time, giving each 1 s to exit after SIGTERM; its
    autoscaler monitor never exits in that second, so it always costs the full timeout (1.0 of the 1.4 s
    the shutdown took here). The monitor holds nothing of this run's and is about to be killed anyway, so
    it is killed first. That uses a private attribute of Ray's; where it is missing, the shutdown is Ray's
    plain one. A remote cluster keeps running either way: only a local node started here is stopped.
    """
    import ray

    if not ray.is_initialized():
        return
    with contextlib.suppress(Exception):
        from ray._private import ray_constants, worker

        node = worker._global_node
        if node is not None and node.is_head():
            for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
                info.process.kill()
    ray.shutdown()


def warm_worker(detect_every: int, with_torch: bool = False) -> int:
    """Import the heavy libraries and load dlib's models in a worker (they stay loaded in the process):
    the landmark model and the video face detector its tasks track with (0.4 s and 0.3 s here).

    Torch (~1 s and ~200 MB per process) only ``with_torch``, for a run known to use the torch backend: an
    ONNX Runtime worker never needs it.
    """
    import importlib
    import os

    from facskit.faces.shared import shared_front_end

    if with_torch:
        importlib.import_module("torch")  # the import is the point: it takes a second in a fresh process
    with contextlib.suppress(ImportError):  # the auto/onnx backends' runtime, an optional extra
        importlib.import_module("onnxruntime")

    shared_front_end(detect_every).video_detector  # noqa: B018 - loading it is the point
    return os.getpid()


def task_slots(ray: Any, cpus_per_task: int, workers: int | None = None) -> int:
    """Tasks in flight at once: ``workers`` if given, else as many as the cluster's CPUs hold."""
    if cpus_per_task < 1:
        raise UsageError(f"--cpus-per-task must be >= 1, not {cpus_per_task}")
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))


@renamed_keyword("every", "detect_every")
def start_ray(
    address: str | None,
    detect_every: int = 5,
    cpus_per_task: int = 1,
    workers: int | None = None,
    with_torch: bool = False,
) -> list[Any]:
    """Connect to (or start) Ray and warm one worker per task slot in the background.

    Called before the driver builds its detector, so the workers' imports and model loading (several
    seconds per fresh process, paid once per worker) overlap the driver's own start-up instead of delaying
    the first task. Only the slots the run will use are warmed; ``with_torch``: the run will use the torch
    backend, so the workers import it too. Returns the warm-up refs (nothing needs to wait for them).
    """
    ray = init_ray(address)
    slots = task_slots(ray, cpus_per_task, workers)
    warm = ray.remote(num_cpus=cpus_per_task, max_retries=0)(warm_worker)
    return [warm.remote(detect_every, with_torch) for _ in range(slots)]


def analyze_ray_raw(
    detector: Detector,
    labels: Sequence[str],
    address: str | None = None,
    workers: int | None = None,
    chunk_frames: int = DEFAULT_TIME_CHUNK_FRAMES,
    warmup: int | None = None,
    max_frames: int | None = None,
    cpus_per_task: int = 1,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """Raw rows (not yet smoothed/calibrated/thresholded) and stitch info of each file, yielded as soon as
    all of that file's chunks are back, in the order files finish.

    Yielding per file lets the caller write a result while the other files' tasks still run (on 8 files
    over 2 workers, writing everything at the end left ~1.4 s of a ~30 s run with no task in flight) and
    keeps the driver's memory to the files in flight rather than the whole run's rows.
    """
    from facskit.io import probe

    log = log or (lambda message: print(message, file=sys.stderr))
    ray = init_ray(address)
    limit = task_slots(ray, cpus_per_task, workers)
    remote = _remote(ray, cpus_per_task)
    recipe_ref = ray.put(DetectorRecipe.of(detector, threads=int(cpus_per_task)))
    warmup = default_warmup(detector.detect_every) if warmup is None else warmup
    plans: dict[str, list[Chunk]] = {}
    for label in labels:
        try:
            info = probe(label)
            count = info.frame_count if info.kind.value == "video" else None
        except MediaError:
            count = None
        if count and max_frames:
            count = min(count, max_frames)
        plans[label] = plan_chunks(count, chunk_frames, warmup, detector.detect_every, detector.frame_step)
    tasks = [(label, chunk) for label, chunks in plans.items() for chunk in chunks]
    missing = {label: len(chunks) for label, chunks in plans.items()}
    results: dict[tuple[str, int], ChunkResult] = {}
    pending: dict[Any, tuple[str, Chunk]] = {}
    queue = list(tasks)
    began, frames_done, tasks_done = time.perf_counter(), 0, 0
    while queue or pending:
        while queue and len(pending) < limit:
            label, chunk = queue.pop(0)
            pending[remote.remote(recipe_ref, label, chunk, max_frames)] = (label, chunk)
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            label, chunk = pending.pop(ref)
            result: ChunkResult = ray.get(ref)
            results[(label, chunk.index)] = result
            tasks_done += 1
            frames_done += int(result.rows["frame"].nunique())
            elapsed = time.perf_counter() - began
            log(
                f"ray: {tasks_done}/{len(tasks)} tasks, {frames_done} frames, "
                f"{frames_done / max(elapsed, 1e-9):.1f} fps ({Path(label).name} chunk {chunk.index})"
            )
            missing[label] -= 1
            if missing[label] == 0:
                parts = [results.pop((label, c.index)) for c in plans[label]]
                parts = _resync(ray, remote, recipe_ref, parts, warmup, max_frames, log)
                yield (label, *stitch(parts))


def _resync(
    ray: Any,
    remote: Any,
    recipe_ref: Any,
    parts: list[ChunkResult],
    warmup: int,
    max_frames: int | None,
    log: Callable[[str], None],
) -> list[ChunkResult]:
    """Re-run, with a longer warm-up, every chunk whose tracker never caught up with its predecessor's."""
    fixed = list(parts)
    for k in range(1, len(parts)):
        if (
            sync_frame(parts[k - 1].states, parts[k].states) is None
            and parts[k - 1].chunk.tail_from is not None
        ):
            chunk = parts[k].chunk
            longer = Chunk(
                chunk.index, chunk.start, chunk.stop, parts[k - 1].chunk.tail_from, chunk.tail_from
            )
            log(
                f"ray: {Path(parts[k].label).name} chunk {k} re-run with a "
                f"{chunk.start - longer.warm_start}-frame warm-up"
            )
            fixed[k] = ray.get(remote.remote(recipe_ref, parts[k].label, longer, max_frames))
    return fixed


def analyze_ray(
    detector: Detector,
    inputs: Any,
    address: str | None = None,
    workers: int | None = None,
    chunk_frames: int = DEFAULT_TIME_CHUNK_FRAMES,
    warmup: int | None = None,
    max_frames: int | None = None,
    cpus_per_task: int = 1,
    log: Callable[[str], None] | None = None,
) -> AUResult:
    """:meth:`Detector.analyze` fanned out over Ray: the same rows and numbers, one result for all inputs."""
    from facskit.analyze.results import concat_results, empty_result

    labels = [label for label, _ in detector.sources(inputs)]
    stitched = analyze_ray_raw(
        detector, labels, address, workers, chunk_frames, warmup, max_frames, cpus_per_task, log=log
    )
    raw = {label: (rows, info) for label, rows, info in stitched}
    results = []
    for label in labels:
        rows, _ = raw[label]
        if len(rows):
            results.append(detector.finalize(rows))
    attrs = detector.attrs()
    attrs["stitch"] = {label: raw[label][1] for label in labels}
    attrs["errors"] = [{"file": label, "error": e} for label in labels for e in raw[label][1]["errors"]]
    return concat_results(results, attrs) if results else empty_result(detector.aus, attrs)


__all__ = [
    "analyze_chunk",
    "analyze_ray",
    "start_ray",
    "stop_ray",
]
