"""``Detector``: the one object a user needs to get per-frame AU intensities from images and videos.

    from facskit import Detector
    det = Detector()                              # the shipped default model; CUDA if there is one
    result = det.analyze("interview.mp4")         # an AUResult (a pandas DataFrame)
    result.summary(); result.plot_timeseries()

It wires :mod:`facskit.io` (decode), :mod:`facskit.faces` (track), :mod:`facskit.align`, a
:class:`~facskit.runtime.backends.Backend` (network) and the readout through
:class:`~facskit.analyze.pipeline.AnalysisPipeline`, then applies the optional smoothing, calibration and
occurrence thresholds once per file. The same object drives ``facskit analyze``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from facskit.analyze.model_source import DEFAULT_MODEL, concrete_device, resolve_model
from facskit.analyze.pipeline import (
    DEFAULT_CHUNK_FRAMES,
    FACE_SELECTIONS,
    AnalysisPipeline,
    FaceSelection,
    FrameResult,
    chunked,
    raw_columns,
    raw_table,
)
from facskit.analyze.postprocess import Calibration, Smoothing, as_calibration, as_smoothing, finalize
from facskit.analyze.schema import thresholds_for
from facskit.analyze.sources import (
    ArrayFrame,
    as_array,
    check_array,
    is_pil_image,
    is_single,
    not_accepted,
)
from facskit.aus import OCCURRENCE_THRESHOLD
from facskit.deprecation import renamed_keyword
from facskit.errors import MediaError, UsageError
from facskit.runtime.backends import (
    BACKENDS,
    PRECISIONS,
    BackendName,
    OnnxBackend,
    Precision,
    TorchBackend,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from facskit.analyze.engine import TrackerObserver
    from facskit.analyze.results import AUResult
    from facskit.models.spec import AUModel

ARRAY_FILE = "<array>"

# What analyze() takes: a path (file, folder, glob), a facskit.io.MediaFile, or an RGB uint8 image.
Source = str | os.PathLike[str] | np.ndarray | Any


class Detector:
    """Per-frame AU intensities (0-5) and occurrences for images, videos, folders or arrays.

    Args:
        model: ``"default"`` (trained weights shipped with facskit), a checkpoint, an ``.onnx`` file, a
            registry name (untrained: for testing) or a model object.
        device: ``"auto"`` (CUDA when available, else the CPU; what ``facskit analyze`` uses), ``"cpu"``
            or ``"cuda[:N]"``.
        detect_every: run the face detector every ``detect_every`` analysed frames; landmarks are tracked
            on every frame between.
        faces: ``"all"`` faces, or only the ``"largest"`` one per frame.
        batch_size: crops per network call. Results do not depend on it.
        backend: ``"auto"`` (the fastest that passes the accuracy check on this machine, as ``facskit
            analyze`` does), ``"torch"`` or ``"onnx"`` (ONNX Runtime; the model is exported once and cached).
        smoothing: ``None`` (off), a window in frames (centred moving median per face) or a ``Smoothing``.
        threshold: occurrence threshold on the 0-5 scale, one number or ``{AU: value}``.
        calibration: ``None`` (off), ``True`` (subtract each face's 5th percentile per AU), a percentile
            or a ``Calibration``.
        frame_step: analyse every ``frame_step``-th frame only (1 = all frames).
        precision: ``"auto"`` (the fastest path that passed the accuracy check on this machine; with
            ``backend="torch"`` that is fp32 or bf16), ``"fp32"``,
            ``"bf16"`` (torch autocast; fp16 AMP on CUDA) or ``"int8"`` (ONNX Runtime, statically quantised).
        pipelined: overlap decode, face tracking and the network on threads (same numbers as the serial
            loop, which ``pipelined=False`` runs).
        quiet: no progress lines on stderr while a first backend check runs.
    """

    @renamed_keyword("every", "detect_every")
    def __init__(
        self,
        model: str | os.PathLike[str] | AUModel = DEFAULT_MODEL,
        device: str = "auto",
        detect_every: int = 5,
        faces: FaceSelection = "all",
        batch_size: int = 16,
        backend: BackendName = "auto",
        smoothing: Smoothing | int | None = None,
        threshold: float | Mapping[Any, float] = OCCURRENCE_THRESHOLD,
        calibration: Calibration | bool | float | None = None,
        frame_step: int = 1,
        precision: Precision = "auto",
        pipelined: bool = True,
        quiet: bool = False,
    ) -> None:
        if faces not in FACE_SELECTIONS:
            raise UsageError(f"faces must be one of {', '.join(FACE_SELECTIONS)}, not {faces!r}")
        if backend not in BACKENDS:
            raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.pipelined = bool(pipelined)
        if detect_every < 1 or batch_size < 1 or frame_step < 1:
            raise UsageError("detect_every, batch_size and frame_step must be >= 1")
        self.device = device = concrete_device(device, model)
        self.detect_every = int(detect_every)
        self.faces: FaceSelection = faces
        self.batch_size = int(batch_size)
        self.frame_step = int(frame_step)
        self.backend, self.model_card = resolve_model(model, device, backend, precision, quiet)
        self.spec = self.backend.spec
        self.aus: tuple[int, ...] = tuple(self.spec.aus)
        self.thresholds = thresholds_for(self.aus, threshold)
        self.smoothing = as_smoothing(smoothing)
        self.calibration = as_calibration(calibration)
        self._front_end: Any = None

    # ------------------------------------------------------------------------------------------ API

    def analyze(
        self, inputs: Source | Sequence[Source], max_frames: int | None = None, batch_size: int | None = None
    ) -> AUResult:
        """Analyse one or several inputs (file, folder, glob, or RGB uint8 array (H, W, 3)).

        Returns one :class:`AUResult` with one row per face per analysed frame (a ``face_detected=False``
        row for a frame without a face). ``max_frames`` caps the frames read per input. A video that breaks
        mid-way keeps the frames decoded before the break; the error is listed in ``.attrs["errors"]`` and
        warned about. An input that yields no frame at all raises if it is the only input.
        """
        from facskit.analyze.results import concat_results, empty_result

        # Smoothing and calibration need one file's series, so each file is finalised on its own; without
        # them (thresholds and casts work row by row) all files are finalised as one table: pandas' fixed
        # cost per small table made 200 photos take 16 s, most of it outside the faces.
        whole_files = self.smoothing is not None or self.calibration is not None
        results: list[AUResult] = []
        pending: list[dict[str, Any]] = []  # raw columns of the files not finalised yet
        errors: list[dict[str, str]] = []
        sources = self.sources(inputs)
        for label, source in sources:
            columns: list[dict[str, Any]] = []
            try:
                for chunk in self.iter_chunks(
                    source, label=label, max_frames=max_frames, batch_size=batch_size
                ):
                    columns.append(raw_columns(chunk, self.aus))
            except MediaError as error:
                if len(sources) == 1 and not columns:
                    raise
                errors.append({"file": label, "error": str(error)})
                warnings.warn(f"{label}: {error} (frames decoded before the error are kept)", stacklevel=2)
            if columns and whole_files:
                results.append(self.finalize(raw_table(columns, self.aus)))
            else:
                pending += columns
        if pending:
            results.append(self.finalize(raw_table(pending, self.aus)))
        attrs = self.attrs()
        if results:
            attrs["calibration"] = _merge_calibrations([r.attrs.get("calibration") for r in results])
        attrs["errors"] = errors
        return concat_results(results, attrs) if results else empty_result(self.aus, attrs)

    def iter_chunks(
        self,
        source: Source,
        label: str | None = None,
        start_frame: int = 0,
        max_frames: int | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        keep_heatmaps: bool = False,
        batch_size: int | None = None,
        on_frame: Callable[[FrameResult], None] | None = None,
        observe: TrackerObserver | None = None,
    ) -> Iterator[list[FrameResult]]:
        """Stream one input as lists of :class:`FrameResult` (``chunk_frames`` frames each).

        ``on_frame`` sees every frame with its image, in order, before the image is dropped; chunks carry
        the numbers (and the heatmaps with ``keep_heatmaps``) only.

        This is the constant-memory path ``facskit analyze`` writes from. Frames before ``start_frame``
        are decoded and tracked but not sent to the network, so a resumed run has the same face ids and
        the same numbers as an uninterrupted one. ``observe(frame_index, tracker)`` sees the tracker after
        every video frame (used by the Ray fan-out to stitch chunks); it implies the pipelined engine.
        """
        if is_pil_image(source):
            source = as_array(source)
        source = check_array(source) if isinstance(source, np.ndarray) else self._media(source)
        label = label or (ARRAY_FILE if isinstance(source, np.ndarray) else os.fspath(source.path))
        pipeline = AnalysisPipeline(
            self.backend,
            batch_size=batch_size or self.batch_size,
            faces=self.faces,
            keep_heatmaps=keep_heatmaps,
            keep_images=on_frame is not None,
        )
        results = self._results(pipeline, label, source, start_frame, max_frames, observe)
        yield from chunked(self._release_images(results, on_frame), chunk_frames)

    def _results(
        self,
        pipeline: AnalysisPipeline,
        label: str,
        source: Any,
        start_frame: int,
        max_frames: int | None,
        observe: TrackerObserver | None,
    ) -> Iterator[FrameResult]:
        """A video through the pipelined engine (unless ``pipelined=False``), anything else serially."""
        from facskit.io import MediaFile, MediaKind

        video = isinstance(source, MediaFile) and source.kind is MediaKind.VIDEO
        if video and (self.pipelined or observe is not None):
            from facskit.analyze.engine import frame_bytes, run_pipelined, tracked_video_frames

            size = frame_bytes(source)  # one header read bounds both queues
            tracked = tracked_video_frames(
                self.front_end,
                source,
                self.frame_step,
                start_frame,
                max_frames,
                observe=observe,
                frame_size=size,
            )
            return run_pipelined(pipeline, label, tracked, size)
        return pipeline.run(label, self._tracked_frames(source, start_frame, max_frames))

    @staticmethod
    def _release_images(
        results: Iterator[FrameResult], on_frame: Callable[[FrameResult], None] | None
    ) -> Iterator[FrameResult]:
        """Hand each frame to ``on_frame`` (e.g. an overlay writer), then drop its pixels, so a chunk of
        hundreds of frames holds only their numbers and memory stays flat in the video length."""
        for result in results:
            if on_frame is not None:
                on_frame(result)
            result.image = None
            yield result

    def finalize(self, raw: pd.DataFrame) -> AUResult:
        """Turn one file's raw rows into its result: smoothing, calibration, thresholds, attrs."""
        from facskit.analyze.results import as_result

        raw = raw.copy()
        added = finalize(raw, self.aus, self.thresholds, self.smoothing, self.calibration)
        attrs = self.attrs()
        attrs.update(added)
        return as_result(raw, attrs)

    def attrs(self) -> dict[str, Any]:
        """The metadata every result carries (model card, AU list, alignment, options)."""
        import facskit

        spec = self.spec
        return {
            "producer": f"facskit {facskit.__version__}",
            "model": spec.name,
            "model_source": self.model_card.get("source"),
            "model_hash": self.model_card.get("hash"),
            "model_trained": self.model_card.get("trained"),
            "model_training": self.model_card.get("training", {}),
            "aus": list(self.aus),
            "heatmap_convention": spec.convention,
            "input_size": spec.input_size,
            "alignment": {"kind": spec.alignment, "crop_size": spec.crop_size},
            "readout": spec.readout,
            "backend": self.backend.name,
            "precision": getattr(self.backend, "precision", "fp32"),
            "backend_check": getattr(self.backend, "check", None),
            "detect_every": self.detect_every,
            "faces": self.faces,
            "frame_step": self.frame_step,
            "thresholds": {f"AU{a:02d}": t for a, t in self.thresholds.items()},
            "smoothing": self.smoothing.to_dict() if self.smoothing else None,
            "calibration": None,
            "errors": [],
        }

    def options(self) -> dict[str, Any]:
        """The options that change the numbers: a resumed run must use the same ones."""
        attrs = self.attrs()
        keys = ("model_hash", "aus", "detect_every", "faces", "frame_step", "thresholds", "smoothing")
        out = {k: attrs[k] for k in keys}
        out["calibration"] = self.calibration.percentile if self.calibration else None
        return out

    def sources(self, inputs: Source | Sequence[Source]) -> list[tuple[str, Source]]:
        """``(label, source)`` per input: files, folders and globs expanded by :func:`facskit.io.iter_media`;
        arrays (and Pillow images, converted to arrays) labelled ``<array>`` (``<array>N`` among several).

        Anything else (``None``, bytes, a number) is a :class:`UsageError` saying what is accepted, rather
        than whatever exception the first library to touch it would raise.
        """
        from facskit.io import MediaFile

        if is_single(inputs):
            items = [inputs]
        elif isinstance(inputs, bytes | Mapping) or not hasattr(inputs, "__iter__"):
            raise UsageError(not_accepted(inputs))
        else:
            items = list(inputs)
        out: list[tuple[str, Source]] = []
        paths: list[str | os.PathLike[str]] = []
        for n, item in enumerate(items):
            if isinstance(item, np.ndarray) or is_pil_image(item):
                label = f"{ARRAY_FILE}{n}" if len(items) > 1 else ARRAY_FILE
                out.append((label, check_array(as_array(item))))
            elif isinstance(item, MediaFile):
                paths.append(item.path)
            elif isinstance(item, str | os.PathLike):
                paths.append(item)
            else:
                raise UsageError(not_accepted(item))
        if paths:
            from facskit.io import iter_media

            for media in iter_media([os.fspath(p) for p in paths]):
                out.append((os.fspath(media.path), media))
        return out

    @property
    def front_end(self) -> Any:
        """The face detector, landmark model and tracker settings, loaded once and shared by all inputs."""
        if self._front_end is None:
            from facskit.faces.shared import shared_front_end

            self._front_end = shared_front_end(self.detect_every)
        return self._front_end

    def _media(self, source: Any) -> Any:
        from facskit.io import MediaFile, iter_media

        if isinstance(source, MediaFile):
            return source
        if not isinstance(source, str | os.PathLike):
            raise UsageError(not_accepted(source))
        found = list(iter_media([os.fspath(source)]))
        if len(found) != 1:
            raise UsageError(f"{source} names {len(found)} media files; pass them to analyze() instead")
        return found[0]

    def _tracked_frames(
        self, source: Any, start_frame: int, max_frames: int | None
    ) -> Iterator[tuple[Any, Any]]:
        """``(frame, tracked faces)`` of one input, from ``start_frame`` to ``max_frames`` (exclusive)."""
        if isinstance(source, np.ndarray):
            from facskit.faces import faces_in_image

            front = self.front_end
            image = check_array(source)
            yield ArrayFrame(image), faces_in_image(image, front.still_detector, front.predictor)
            return
        for frame, faces in self.front_end.iter_faces(source, frame_step=self.frame_step):
            if max_frames is not None and frame.index >= max_frames:
                break
            if frame.index >= start_frame:
                yield frame, faces


def _merge_calibrations(calibrations: Sequence[Any]) -> dict[str, Any] | None:
    present = [c for c in calibrations if c]
    if not present:
        return None
    merged: dict[str, Any] = {"percentile": present[0]["percentile"], "baselines": {}}
    for c in present:
        merged["baselines"].update(c["baselines"])
    return merged


__all__ = ["Detector", "TorchBackend", "OnnxBackend"]
