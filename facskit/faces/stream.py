"""Faces for every frame of any media file: stills go through the still detector, videos through the
tracker. This is the front end `facskit faces` and the analyze module share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from facskit.deprecation import renamed_keyword
from facskit.faces.detect import FaceDetector
from facskit.faces.landmarks import LandmarkPredictor
from facskit.faces.still import faces_in_image
from facskit.faces.track import DEFAULT_DETECT_EVERY, FaceTracker, TrackedFace
from facskit.io import Frame, MediaFile, MediaKind, iter_frames


@dataclass
class FaceFrontEnd:
    """The loaded models (the landmark model memory-mapped, the detectors ~1 ms each from their cached
    copies), shared by every file one run processes; the still and video detectors load on first use, so a
    run over videos never pays for the still one."""

    detect_every: int = DEFAULT_DETECT_EVERY
    predictor: LandmarkPredictor = field(default_factory=LandmarkPredictor)

    @cached_property
    def still_detector(self) -> FaceDetector:
        return FaceDetector()

    @cached_property
    def video_detector(self) -> FaceDetector:
        return FaceDetector.for_video()

    @renamed_keyword("every", "frame_step")
    def iter_faces(self, media: MediaFile, frame_step: int = 1) -> Iterator[tuple[Frame, list[TrackedFace]]]:
        """(frame, faces) for every ``frame_step``-th frame of ``media``; faces may be empty.

        Tracking runs over the yielded frames, so with ``frame_step`` > 1 ``detect_every`` counts those.
        Raises MediaError as `facskit.io.iter_frames` does (after the good frames of a broken video).
        """
        if media.kind is MediaKind.IMAGE:
            for frame in iter_frames(media):
                yield frame, faces_in_image(frame.image, self.still_detector, self.predictor)
            return
        tracker = FaceTracker(
            detect_every=self.detect_every, detector=self.video_detector, predictor=self.predictor
        )
        for frame in iter_frames(media, frame_step=frame_step):
            yield frame, tracker.update(frame.image)
