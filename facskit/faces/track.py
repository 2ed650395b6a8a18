"""Faces through a video: detect every N frames, fit landmarks every frame, keep a stable face id.

Per frame (one 1.6-1.9 ms landmark fit per face on a 2-core AMD EPYC, grey image only):
1. each live track is re-fitted from the HOG-like box its previous landmarks imply (`detector_box_from_
   landmarks`), which follows the face at no detection cost;
2. detection runs every `detect_every`-th frame: around each tracked face only (`FaceDetector.
   candidates_near`, ~6x cheaper than the whole frame for one face), and on the whole <= 640-pixel grey
   copy (`FaceDetector.candidates`) every `full_scan_rounds`-th round, on a scene cut (a jump in a 32 x 18
   thumbnail), when a fit looks implausible, while no face is tracked, and when the regions around the
   faces would cover half the frame or more. A face entering the picture is therefore found within
   `detect_every` x `full_scan_rounds` frames (15 by default: 0.6 s at 25 frames/s);
3. detections are matched to tracks by box IoU; a matched track is re-fitted from the detection if its
   own fit failed; a detection scoring >= `new_face_threshold` with no track starts a new face id; a
   track that no detection (even a weak one, >= `confirm_threshold`) supports for `max_unconfirmed`
   detection rounds in a row, or right after a scene cut, is dropped.
Ids are never reused within one tracker, so a face that leaves and comes back gets a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from facskit.deprecation import renamed_keyword
from facskit.faces.detect import DetectedFace, FaceDetector, to_gray
from facskit.faces.geometry import Box, detector_box_from_landmarks, iou
from facskit.faces.landmarks import LandmarkPredictor, landmarks_plausible
from facskit.faces.pose import HeadPose, head_pose

DEFAULT_DETECT_EVERY = 5  # frames between detections while tracking (DESIGN.md section 6)
# Detection rounds per whole-frame scan while every face is tracked; the others look near the faces only.
# Measured on WolfgangLanger_Pexels.mp4 (one face, 640 x 360), 3 alternating runs in one process: detection
# 4.3-5.0 ms per frame with every round on the whole frame, 1.9-2.5 ms with this.
DEFAULT_FULL_SCAN_ROUNDS = 3
# Scan the whole frame instead when the regions near the faces would cost this share of it or more (the HOG's
# time grows with the pixels it scans: many faces, or faces filling the frame).
MAX_NEAR_SHARE = 0.5
MATCH_IOU = 0.3  # a detection and a track overlapping this much are the same face
SCENE_CUT_LEVEL = 20.0  # mean absolute grey difference (0-255) between thumbnails that counts as a cut
THUMBNAIL_SIZE = (32, 18)  # (w, h) pixels; enough to see a cut, costs ~0.1 ms


@dataclass(frozen=True)
class TrackedFace:
    """One face in one frame.

    face_id: stable over the frames a face is tracked. box: HOG-detector-like (x, y, w, h) pixel box
    implied by the landmarks. score: HOG score of the last detection that supported the face.
    landmarks: float32 (68, 2) pixels. success: the fit looks like a face. pose: degrees.
    """

    face_id: int
    box: Box
    score: float
    landmarks: np.ndarray
    success: bool
    pose: HeadPose


@dataclass
class _Track:
    face_id: int
    landmarks: np.ndarray
    score: float
    success: bool = True
    unconfirmed_rounds: int = 0
    box: Box = field(init=False)

    def __post_init__(self) -> None:
        self.box = detector_box_from_landmarks(self.landmarks)


class FaceTracker:
    """`update(image) -> list[TrackedFace]` for consecutive video frames (RGB or grey, one size).

    detect_every: detection interval in frames. full_scan_rounds: every this many detection rounds the
    whole frame is scanned, the others scan near the tracked faces only (1: always the whole frame).
    confirm_threshold: HOG score that still confirms an existing track; new_face_threshold: score needed to
    start one. max_unconfirmed: detection rounds a track may go unconfirmed (a turned head the HOG misses)
    before it is dropped.
    """

    @renamed_keyword("every", "detect_every")
    def __init__(
        self,
        detect_every: int = DEFAULT_DETECT_EVERY,
        detector: FaceDetector | None = None,
        predictor: LandmarkPredictor | None = None,
        confirm_threshold: float = -0.5,
        new_face_threshold: float = 0.0,
        max_unconfirmed: int = 2,
        full_scan_rounds: int = DEFAULT_FULL_SCAN_ROUNDS,
    ) -> None:
        if detect_every < 1 or full_scan_rounds < 1:
            raise ValueError(
                f"detect_every and full_scan_rounds must be >= 1, got {detect_every}, {full_scan_rounds}"
            )
        self.detect_every = detect_every
        self.full_scan_rounds = full_scan_rounds
        self.detector = detector if detector is not None else FaceDetector.for_video()
        self.predictor = predictor if predictor is not None else LandmarkPredictor()
        self.confirm_threshold = confirm_threshold
        self.new_face_threshold = new_face_threshold
        self.max_unconfirmed = max_unconfirmed
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (call between videos); ids keep counting up."""
        self._tracks: list[_Track] = []
        self._frames_since_detection = 0
        self._rounds_since_full_scan = 0
        self._thumbnail: np.ndarray | None = None
        self._next_id = getattr(self, "_next_id", 0)

    def _scene_cut(self, gray: np.ndarray) -> bool:
        thumbnail = cv2.resize(gray, THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA).astype(np.int16)
        previous, self._thumbnail = self._thumbnail, thumbnail
        return previous is not None and float(np.abs(thumbnail - previous).mean()) > SCENE_CUT_LEVEL

    def _fit(self, gray: np.ndarray, start: Box) -> tuple[np.ndarray, bool]:
        landmarks = self.predictor.predict(gray, start)
        return landmarks, landmarks_plausible(gray, start, landmarks)

    def update(self, image: np.ndarray) -> list[TrackedFace]:
        gray = to_gray(image)
        cut = self._scene_cut(gray)
        for track in self._tracks:
            track.landmarks, track.success = self._fit(gray, track.box)
            track.box = detector_box_from_landmarks(track.landmarks)
        self._frames_since_detection += 1
        due = self._frames_since_detection >= self.detect_every
        if due or cut or not self._tracks or not all(track.success for track in self._tracks):
            self._associate(gray, self._detect(gray, due and not cut), cut)
            self._frames_since_detection = 0
        else:
            self._tracks = [track for track in self._tracks if track.success]
        height, width = gray.shape
        return [
            TrackedFace(
                track.face_id,
                track.box,
                track.score,
                track.landmarks,
                track.success,
                head_pose(track.landmarks, (width, height)),
            )
            for track in self._tracks
        ]

    def _detect(self, gray: np.ndarray, routine: bool) -> list[DetectedFace]:
        """Detections for this round: near the tracked faces on a routine round while every face fits and
        the whole frame is not due, else on the whole frame."""
        self._rounds_since_full_scan += 1
        boxes = [track.box for track in self._tracks]
        near = (
            routine
            and self._rounds_since_full_scan < self.full_scan_rounds
            and self._tracks
            and all(track.success for track in self._tracks)
            and self.detector.near_share(gray.shape, boxes) < MAX_NEAR_SHARE
        )
        if near:
            return self.detector.candidates_near(gray, boxes, self.confirm_threshold)
        self._rounds_since_full_scan = 0
        return self.detector.candidates(gray, self.confirm_threshold)

    def _associate(self, gray: np.ndarray, detections: list[DetectedFace], cut: bool) -> None:
        pairs = sorted(
            (
                (iou(track.box, detection.box), t, d)
                for t, track in enumerate(self._tracks)
                for d, detection in enumerate(detections)
            ),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        matched_detections: set[int] = set()
        for overlap, t, d in pairs:
            if overlap < MATCH_IOU:
                break
            if t in matched_tracks or d in matched_detections:
                continue
            matched_tracks.add(t)
            matched_detections.add(d)
            track, detection = self._tracks[t], detections[d]
            track.score = detection.score
            track.unconfirmed_rounds = 0
            if not track.success:
                track.landmarks, track.success = self._fit(gray, detection.box)
                track.box = detector_box_from_landmarks(track.landmarks)
        survivors = []
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.unconfirmed_rounds += 1
                if cut or track.unconfirmed_rounds > self.max_unconfirmed:
                    continue
            if track.success:
                survivors.append(track)
        for d, detection in enumerate(detections):
            if d in matched_detections or detection.score < self.new_face_threshold:
                continue
            landmarks, plausible = self._fit(gray, detection.box)
            if plausible:
                survivors.append(_Track(self._next_id, landmarks, detection.score))
                self._next_id += 1
        self._tracks = survivors
