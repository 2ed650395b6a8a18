"""facskit.faces on the shared sample media: counts of faces, stable ids, no false alarms, head pose."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facskit.errors import FacskitError
from facskit.faces import (
    FACE_COLUMNS,
    Box,
    FaceDetector,
    FaceFrontEnd,
    FaceTracker,
    HeadPose,
    LandmarkPredictor,
    TrackedFace,
    face_rows,
    faces_in_image,
    head_pose,
    iou,
    model_file,
    project_mean_face,
)
from facskit.io import MediaFile, MediaKind, iter_frames, read_image

# face_noface.mov (169 frames): a man talks to the camera in frames 0-71, frame 72 is black, frames 73-168
# are an animated sky with a "Caminandes" title (checked frame by frame).
FACE_VISIBLE = range(0, 72)
NO_FACE_FROM = 72


@pytest.fixture(scope="module")
def front_end() -> FaceFrontEnd:
    return FaceFrontEnd()


def _track(front_end: FaceFrontEnd, path: Path, frames: int, frame_step: int = 1) -> list[list[TrackedFace]]:
    tracker = FaceTracker(detector=front_end.video_detector, predictor=front_end.predictor)
    found = []
    for frame in iter_frames(path, frame_step=frame_step):
        found.append([face for face in tracker.update(frame.image) if face.success])
        if len(found) == frames:
            break
    return found


def test_single_face_photo_has_exactly_one_face(front_end: FaceFrontEnd, media_dir: Path) -> None:
    faces = faces_in_image(
        read_image(media_dir / "single_face.jpg"), front_end.still_detector, front_end.predictor
    )
    assert len(faces) == 1 and faces[0].success
    face = faces[0]
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    x, y, w, h = face.box
    inside = (face.landmarks[:, 0] >= x - 0.2 * w) & (face.landmarks[:, 0] <= x + 1.2 * w)
    assert inside.all() and 150 < w < 300
    assert max(abs(angle) for angle in face.pose) < 20  # a roughly frontal portrait


def test_group_photo_finds_all_five_people(front_end: FaceFrontEnd, media_dir: Path) -> None:
    faces = faces_in_image(
        read_image(media_dir / "multi_face.jpg"), front_end.still_detector, front_end.predictor
    )
    assert len(faces) == 5 and all(face.success for face in faces)
    assert [face.face_id for face in faces] == [0, 1, 2, 3, 4]
    centres = [face.box.centre[0] for face in faces]
    assert centres == sorted(centres)  # ids run left to right
    assert all(iou(a.box, b.box) == 0 for i, a in enumerate(faces) for b in faces[i + 1 :])
    assert min(face.score for face in faces) < 0  # the sunglasses face: weak HOG, confirmed by the CNN


def test_large_image_is_detected_downscaled_and_fitted_at_full_size(
    front_end: FaceFrontEnd, media_dir: Path
) -> None:
    image = read_image(media_dir / "single_face.jpg")
    large = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 1716 x 1686 > 1280
    small_face = faces_in_image(image, front_end.still_detector, front_end.predictor)[0]
    large_faces = faces_in_image(large, front_end.still_detector, front_end.predictor)
    assert len(large_faces) == 1
    assert iou(large_faces[0].box, small_face.box.scaled(3)) > 0.7
    error = np.abs(large_faces[0].landmarks - 3 * small_face.landmarks).mean()
    assert error < 0.03 * large_faces[0].box.w  # same face, landmarks in full-resolution pixels


def test_no_face_video_has_no_face(front_end: FaceFrontEnd, media_dir: Path) -> None:
    found = _track(front_end, media_dir / "no_face.mp4", frames=60)
    assert len(found) == 60 and not any(found)


def test_still_detector_rejects_weak_false_alarms(front_end: FaceFrontEnd, media_dir: Path) -> None:
    # Frames 22-50 of no_face.mp4 hold HOG false alarms scoring up to -0.06: the CNN check removes them.
    for frame in iter_frames(media_dir / "no_face.mp4", frame_step=14):
        if frame.index in (28, 42):
            assert front_end.still_detector.detect(frame.image) == []
        if frame.index > 42:
            break


def test_talking_head_is_one_stable_face(front_end: FaceFrontEnd, media_dir: Path) -> None:
    found = _track(front_end, media_dir / "WolfgangLanger_Pexels.mp4", frames=150)
    with_face = sum(1 for faces in found if len(faces) == 1)
    assert with_face >= 0.97 * len(found)
    assert {face.face_id for faces in found for face in faces} == {0}
    widths = [faces[0].box.w for faces in found if faces]
    assert min(widths) / max(widths) > 0.7  # the box follows the face, it does not drift away


def test_faces_only_where_a_face_is_visible(front_end: FaceFrontEnd, media_dir: Path) -> None:
    found = _track(front_end, media_dir / "face_noface.mov", frames=110)
    visible = [len(found[i]) == 1 for i in FACE_VISIBLE]
    assert sum(visible) >= 0.97 * len(visible)
    assert not any(found[NO_FACE_FROM:])
    assert len({face.face_id for faces in found for face in faces}) == 1


class CountingDetector(FaceDetector):
    """The video detector, noting the frame scans ("whole") and the scans near tracked faces ("near")."""

    def __init__(self) -> None:
        super().__init__(upsample=0, verify_weak=False, max_side=640)
        self.calls: list[str] = []

    def candidates(self, image: np.ndarray, min_score: float):  # noqa: ANN201 - same as the parent
        self.calls.append("whole")
        return super().candidates(image, min_score)

    def candidates_near(self, image: np.ndarray, around, min_score: float):  # noqa: ANN001, ANN201
        self.calls.append("near")
        return super().candidates_near(image, around, min_score)


def test_tracker_detects_every_n_frames_not_every_frame(front_end: FaceFrontEnd, media_dir: Path) -> None:
    counting = CountingDetector()
    tracker = FaceTracker(detect_every=5, detector=counting, predictor=front_end.predictor)
    for frame in iter_frames(media_dir / "single_face.mp4"):
        tracker.update(frame.image)
        if frame.index == 29:
            break
    # frames 0, 5, ..., 25; the whole frame at the start and every third round, near the face between
    assert counting.calls == ["whole", "near", "near", "whole", "near", "near"]


def test_scans_near_the_faces_find_what_whole_frames_find(front_end: FaceFrontEnd, media_dir: Path) -> None:
    frames = [frame.image for frame in iter_frames(media_dir / "WolfgangLanger_Pexels.mp4")][:60]
    found = {}
    for rounds in (1, 3):
        counting = CountingDetector()
        tracker = FaceTracker(detector=counting, predictor=front_end.predictor, full_scan_rounds=rounds)
        found[rounds] = [tracker.update(image) for image in frames]
        assert ("near" in counting.calls) == (rounds > 1)
    ids = {rounds: [[face.face_id for face in faces] for faces in found[rounds]] for rounds in found}
    assert ids[1] == ids[3]
    for whole, near in zip(found[1], found[3], strict=True):
        for a, b in zip(whole, near, strict=True):
            np.testing.assert_array_equal(a.landmarks, b.landmarks)  # the fits do not depend on the scans
            assert b.score > 0.5  # the face is confirmed by the scan near it, as by the whole-frame scan


def test_a_face_fading_in_is_found_within_three_detection_rounds(
    front_end: FaceFrontEnd, media_dir: Path
) -> None:
    """No scene cut announces a face that fades in beside a tracked one: only a whole-frame scan finds it,
    which comes every third detection round (15 frames), so it is found at most 15 frames later than when
    every round scanned the whole frame."""
    left = [frame.image for frame in iter_frames(media_dir / "WolfgangLanger_Pexels.mp4")][:50]
    right = [frame.image for frame in iter_frames(media_dir / "single_face.mp4")][:50]
    frames = [
        np.concatenate([a, (b * float(np.clip((i - 20) / 12, 0, 1))).astype(np.uint8)], axis=1)
        for i, (a, b) in enumerate(zip(left, right, strict=True))
    ]
    first: dict[int, dict[int, int]] = {}
    for rounds in (1, 3):
        tracker = FaceTracker(
            detector=front_end.video_detector, predictor=front_end.predictor, full_scan_rounds=rounds
        )
        first[rounds] = {}
        for index, image in enumerate(frames):
            for face in tracker.update(image):
                first[rounds].setdefault(face.face_id, index)
    assert sorted(first[1]) == sorted(first[3]) == [0, 1]
    assert first[1][0] == first[3][0] == 0
    assert first[1][1] <= first[3][1] < first[1][1] + 5 * 3


def test_near_scan_maps_boxes_back_to_the_frame(front_end: FaceFrontEnd, media_dir: Path) -> None:
    image = next(iter(iter_frames(media_dir / "WolfgangLanger_Pexels.mp4"))).image
    detector = front_end.video_detector
    [whole] = detector.candidates(image, -0.5)
    [near] = detector.candidates_near(image, [whole.box], -0.5)
    assert iou(whole.box, near.box) > 0.7
    assert detector.candidates_near(image, [Box(0, 0, 0, 0), Box(-500, -500, 50, 50)], -0.5) == []
    assert 0 < detector.near_share(image.shape, [whole.box]) < 0.5  # cheaper than the whole frame
    assert detector.near_share(image.shape, [whole.box] * 8) > 1  # many faces: the whole frame is cheaper


def test_implausible_fit_is_flagged(front_end: FaceFrontEnd, media_dir: Path) -> None:
    tracker = FaceTracker(detector=front_end.video_detector, predictor=front_end.predictor)
    frame = next(iter(iter_frames(media_dir / "single_face.mp4")))
    assert [face.success for face in tracker.update(frame.image)] == [True]
    assert tracker.update(np.zeros_like(frame.image)) == []  # a black frame: the track is dropped


# ---- head pose -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "angles", [(0, 0, 0), (30, 0, 0), (0, 20, 0), (0, 0, 15), (-40, 15, -10), (25, -20, 30), (-10, -25, 5)]
)
def test_head_pose_recovers_projected_angles(angles: tuple[float, float, float]) -> None:
    truth = HeadPose(*angles)
    landmarks = project_mean_face(truth, (640, 360))
    found = head_pose(landmarks, (640, 360))
    np.testing.assert_allclose(found, truth, atol=1.0)


def test_head_pose_signs() -> None:
    frontal = project_mean_face(HeadPose(0, 0, 0), (640, 360))
    turned = project_mean_face(HeadPose(30, 0, 0), (640, 360))
    raised = project_mean_face(HeadPose(0, 20, 0), (640, 360))
    tilted = project_mean_face(HeadPose(0, 0, 15), (640, 360))
    nose = 30
    assert turned[nose, 0] < frontal[nose, 0]  # yaw > 0: nose toward the image's left
    assert raised[nose, 1] < frontal[nose, 1]  # pitch > 0: nose up
    assert tilted[45, 1] > tilted[36, 1]  # roll > 0: clockwise, the image-right eye goes down


# ---- schema and models ---------------------------------------------------------------------------------


def test_face_rows_follow_the_schema() -> None:
    assert FACE_COLUMNS[:13] == [
        "file", "frame", "timestamp", "face_id", "face_detected", "x", "y", "w", "h",
        "score", "yaw", "pitch", "roll",
    ]  # fmt: skip
    assert len(FACE_COLUMNS) == 13 + 136 and FACE_COLUMNS[13] == "x_0" and FACE_COLUMNS[-1] == "y_67"
    [empty] = face_rows("a.mp4", 3, 0.125, [])
    assert list(empty) == FACE_COLUMNS and empty["face_detected"] is False and np.isnan(empty["x_5"])
    landmarks = project_mean_face(HeadPose(0, 0, 0), (640, 360))
    from facskit.faces import detector_box_from_landmarks

    face = TrackedFace(7, detector_box_from_landmarks(landmarks), 1.5, landmarks, True, HeadPose(1, 2, 3))
    [row] = face_rows("a.mp4", 3, 0.125, [face])
    assert row["face_id"] == 7 and row["yaw"] == 1 and row["x_30"] == pytest.approx(landmarks[30, 0])


def test_missing_model_file_is_explained() -> None:
    assert model_file("shape_predictor_68_face_landmarks.dat").is_file()
    with pytest.raises(FacskitError, match="missing"):
        model_file("no_such_model.dat")
    with pytest.raises(FacskitError, match="file.dat"):
        LandmarkPredictor("/no/such/file.dat")


def test_front_end_streams_stills_and_videos(front_end: FaceFrontEnd, media_dir: Path) -> None:
    [(frame, faces)] = list(front_end.iter_faces(MediaFile(media_dir / "single_face.jpg", MediaKind.IMAGE)))
    assert frame.index == 0 and len(faces) == 1
    video = MediaFile(media_dir / "single_face.mp4", MediaKind.VIDEO)
    indices = [frame.index for frame, faces in front_end.iter_faces(video, frame_step=10) if faces]
    assert indices == list(range(0, 72, 10))
