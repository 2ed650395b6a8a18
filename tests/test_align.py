"""Alignment: bit-compatibility with the BMVC'18 reference, round trips, and heatmaps back to the frame."""

import cv2
import numpy as np
import pytest

from facskit.align import (
    BMVC_TEMPLATE_256,
    MEAN_FACE_256,
    AlignSpec,
    align_face,
    align_faces,
    alignment_matrix,
    crop_template,
    heatmaps_to_frame,
    points_to_crop,
    points_to_frame,
    rescale_points,
)


def _face(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured 480 x 640 frame and landmarks of a rotated, scaled, noisy mean face in it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    angle, scale = 0.2, 0.9
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = MEAN_FACE_256 @ rot.T + np.array([250.0, 120.0]) + rng.normal(0, 1.5, size=(68, 2))
    return image, landmarks.astype(np.float32)


def test_bmvc_is_bit_compatible_with_the_reference_cv2_calls():
    image, landmarks = _face()
    # The reference: getAffineTransform on float32 points 8, 36, 45, then warpAffine with defaults.
    ref_matrix = cv2.getAffineTransform(np.float32(landmarks[[8, 36, 45], :]), BMVC_TEMPLATE_256)
    ref_crop = cv2.warpAffine(image, ref_matrix, (256, 256))
    aligned = align_face(image, landmarks, AlignSpec("bmvc"))
    np.testing.assert_array_equal(aligned.matrix, ref_matrix)
    np.testing.assert_array_equal(aligned.crop, ref_crop)
    assert aligned.crop.shape == (256, 256, 3) and aligned.crop.dtype == np.uint8
    assert aligned.landmarks.dtype == np.float32 and aligned.matrix.dtype == np.float64


def test_bmvc_matrix_solves_the_three_point_system():
    _, landmarks = _face(1)
    src = landmarks[[8, 36, 45]].astype(np.float64)
    # Independent solve: [x y 1] @ M.T = template, three equations per output coordinate.
    system = np.hstack([src, np.ones((3, 1))])
    solved = np.linalg.solve(system, BMVC_TEMPLATE_256.astype(np.float64)).T  # (2, 3)
    matrix = alignment_matrix(landmarks, AlignSpec("bmvc"))
    np.testing.assert_allclose(matrix, solved, atol=1e-6)
    np.testing.assert_allclose(points_to_crop(src, matrix), BMVC_TEMPLATE_256, atol=1e-4)


def test_similarity_alignment_fits_the_mean_face_without_shear():
    _, landmarks = _face(2)
    matrix = alignment_matrix(landmarks, AlignSpec("similarity"))
    linear = matrix[:, :2]
    assert abs(linear[0, 0] - linear[1, 1]) < 1e-9 and abs(linear[0, 1] + linear[1, 0]) < 1e-9
    residual = np.linalg.norm(points_to_crop(landmarks, matrix) - MEAN_FACE_256, axis=-1)
    assert residual.mean() < 3.0
    # A face that is exactly a similarity of the template is recovered exactly.
    clean = MEAN_FACE_256 * 0.5 + 10.0
    np.testing.assert_allclose(points_to_crop(clean, alignment_matrix(clean, AlignSpec("similarity"))),
                               MEAN_FACE_256, atol=1e-9)  # fmt: skip


def test_other_crop_sizes_scale_the_template():
    _, landmarks = _face(3)
    big = alignment_matrix(landmarks, AlignSpec("bmvc", size=512))
    np.testing.assert_allclose(
        points_to_crop(landmarks[[8, 36, 45]], big), rescale_points(BMVC_TEMPLATE_256, 256, 512), atol=1e-3
    )
    assert crop_template(AlignSpec("similarity", 128)).shape == (68, 2)
    with pytest.raises(ValueError, match="valid kinds"):
        AlignSpec("procrustes")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["bmvc", "similarity"])
def test_round_trip_frame_crop_frame(kind):
    _, landmarks = _face(4)
    matrix = alignment_matrix(landmarks, AlignSpec(kind))
    points = np.random.default_rng(5).uniform(0, 640, size=(10, 7, 2))
    back = points_to_frame(points_to_crop(points, matrix), matrix)
    assert np.abs(back - points).max() < 0.01


def test_align_faces_batch_equals_single():
    image, landmarks = _face(6)
    batch = np.stack([landmarks, landmarks + 5.0])  # (2, 68, 2)
    crops, crop_landmarks, matrices = align_faces(image, batch, AlignSpec("similarity", 128))
    assert crops.shape == (2, 128, 128, 3)
    for n in range(2):
        single = align_face(image, batch[n], AlignSpec("similarity", 128))
        np.testing.assert_array_equal(crops[n], single.crop)
        np.testing.assert_allclose(crop_landmarks[n], single.landmarks, atol=1e-4)
        np.testing.assert_array_equal(matrices[n], single.matrix)


@pytest.mark.parametrize("kind", ["bmvc", "similarity"])
def test_heatmap_peak_lands_where_the_point_does(kind):
    _, landmarks = _face(7)
    matrix = alignment_matrix(landmarks, AlignSpec(kind))
    maps = np.zeros((2, 64, 64), dtype=np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    peaks_map = np.array([(20.0, 30.0), (41.0, 12.0)])  # (x, y) map pixels
    for p, (x, y) in enumerate(peaks_map):
        maps[p] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    frame = heatmaps_to_frame(maps, matrix, (480, 640), crop_size=256)
    assert frame.shape == (2, 480, 640) and frame.dtype == np.float32
    expected = points_to_frame(rescale_points(peaks_map, 64, 256), matrix)  # (2, 2) frame pixels
    rows, cols = np.mgrid[0:480, 0:640]
    for p in range(2):
        y, x = np.unravel_index(np.argmax(frame[p]), frame[p].shape)
        assert np.hypot(x - expected[p, 0], y - expected[p, 1]) <= 1.0, (x, y, expected[p])
        # Sub-pixel: the warped Gaussian is point-symmetric about the point, so its centroid is the point;
        # a half-pixel slip in the map <-> crop convention would move it by ~1.7 frame pixels.
        weight = np.where(frame[p] > 0.05, frame[p], 0.0)
        centroid = np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum()
        np.testing.assert_allclose(centroid, expected[p], atol=0.1)
        assert frame[p].max() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("kind", ["bmvc", "similarity"])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (-200.0, -150.0), (420.0, 0.0), (3000.0, 0.0)])
def test_heatmaps_warped_into_their_region_equal_the_whole_frame_there(kind, shift):
    """Outside :func:`heatmap_region` the whole-frame warp is 0, and inside it the window's warp equals it
    (bit for bit with OpenCV 5.1; the tolerance allows another rounding of the folded translation), for
    faces inside, across the frame's edges and off the frame."""
    from facskit.align import heatmap_region

    _, landmarks = _face(7)
    matrix = alignment_matrix(landmarks + np.array(shift, np.float32), AlignSpec(kind))
    maps = np.random.default_rng(3).uniform(0.0, 5.0, (1, 64, 64)).astype(np.float32)  # non-zero everywhere
    whole = heatmaps_to_frame(maps, matrix, (480, 640), crop_size=256)[0]
    region = heatmap_region(matrix, (480, 640), crop_size=256, map_size=64)
    if region is None:
        assert not whole.any()
        return
    x0, y0, x1, y1 = region
    window = heatmaps_to_frame(maps, matrix, (y1 - y0, x1 - x0), crop_size=256, origin=(x0, y0))[0]
    np.testing.assert_allclose(window, whole[y0:y1, x0:x1], rtol=0, atol=1e-3)
    outside = whole.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any() and whole[y0:y1, x0:x1].any()


def test_track_matrix_aligns_the_median_face_of_the_usable_frames() -> None:
    from facskit.align import track_matrix

    rng = np.random.default_rng(0)
    face = MEAN_FACE_256 * 0.8 + np.array([40.0, 30.0])  # (68, 2) a face somewhere in a frame
    frames = np.stack([face + rng.normal(0, 0.5, face.shape) for _ in range(9)])  # (9, 68, 2)
    frames[3] = np.nan  # a frame without landmarks does not count
    frames[5] += 500.0  # nor does one wild frame move the median far
    matrix = track_matrix(frames)
    np.testing.assert_allclose(matrix, alignment_matrix(np.median(frames[[0, 1, 2, 4, 5, 6, 7, 8]], 0)))
    # the clean face lands within a pixel of where its own alignment puts it
    assert np.abs(points_to_crop(face, matrix) - points_to_crop(face, alignment_matrix(face))).max() < 1.0
    with pytest.raises(ValueError, match="no frame"):
        track_matrix(np.full((2, 68, 2), np.nan))
    with pytest.raises(ValueError, match="shape"):
        track_matrix(face)
