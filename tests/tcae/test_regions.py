"""facskit.tcae.regions: where a displacement field lies on a face (issue #7's grid criterion in numbers)."""

import numpy as np
import pytest

from facskit.align import MEAN_FACE_256
from facskit.tcae.regions import REGIONS, face_regions, field_shares


def _faces(size: int = 64) -> np.ndarray:
    """The mean face at ``size`` px, and the same face shifted right by a tenth of the crop."""
    face = np.asarray(MEAN_FACE_256, dtype=np.float64) * size / 256.0
    return np.stack([face, face + [size / 10.0, 0.0]])


def test_regions_are_disjoint_cover_the_image_and_follow_the_landmarks() -> None:
    regions = face_regions(_faces(), 64)
    assert regions.shape == (2, len(REGIONS), 64, 64)
    assert (regions.sum(axis=1) == 1).all()  # every pixel in exactly one region
    face = _faces()[0]
    mobile, rest, outside = regions[0]
    for point in (face[48], face[54], face[19], face[37]):  # mouth corners, a brow, an eye
        assert mobile[int(point[1]), int(point[0])]
    assert rest[int((face[2, 1] + face[31, 1]) / 2), int((face[2, 0] + face[31, 0]) / 2)]  # mid cheek
    assert outside[0, 0] and outside[-1, -1]
    # the shifted face's regions are the first face's, shifted (up to the hull's rasterisation)
    shifted = np.roll(regions[0], 6, axis=-1)
    assert (shifted[0] != regions[1][0]).mean() < 0.02
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        face_regions(face, 64)


def test_field_shares_measure_where_a_field_moves() -> None:
    regions = face_regions(_faces(), 64)
    uniform = np.ones((2, 64, 64))
    share, area = field_shares(uniform, regions)
    assert np.allclose(share, area) and np.allclose(area.sum(axis=1), 1.0)
    only_mobile = regions[:, 0].astype(float) * 2.5
    share, _ = field_shares(only_mobile, regions)
    assert np.allclose(share, [[1.0, 0.0, 0.0]] * 2)
    share, _ = field_shares(np.zeros((2, 64, 64)), regions)  # no motion anywhere: no share
    assert np.isnan(share).all()
