"""facskit's numpy shape predictor (facskit.faces.ert) against dlib's: the converter of dlib's model format,
the converted-model cache, and point-for-point equality of the fitted landmarks."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facskit.errors import FacskitError
from facskit.faces import FaceDetector, LandmarkPredictor, dlib_format, ert, to_gray
from facskit.faces.dlib_format import DlibFormatError, ShapePredictorArrays, read_shape_predictor
from facskit.faces.ert import ErtShapePredictor, ert_predictor, load_arrays
from facskit.faces.geometry import Box
from facskit.faces.models import SHAPE_PREDICTOR_68, model_file
from facskit.io import read_image

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FACE = REPO / "facskit" / "assets" / "sample_face.jpg"
REAL_FACES = REPO.parent / "shared" / "realfaces"
REAL_FACE_IMAGES = (
    "webmorphR.stim/london_neutral/001_03.jpg",
    "congress_pd_gray/A000014.jpg",
    "pexels_rodnae_mpcloud/pexels-rodnae-productions-6129034.jpg",
    "skimage_pd/astronaut.png",
)


# --- a dlib-format writer (dlib/serialize.h, float_details.h, shape_predictor.h), for synthetic models ---


def _int(value: int) -> bytes:
    """dlib's integer token: control byte (length, 0x80 if negative), then |value| little-endian."""
    magnitude, payload = abs(value), bytearray()
    while True:
        payload.append(magnitude & 0xFF)
        magnitude >>= 8
        if not magnitude:
            break
    return bytes([len(payload) | (0x80 if value < 0 else 0)]) + bytes(payload)


def _float(value: float) -> bytes:
    """float_details of a float: mantissa = frexp * 2**24, exponent - 24, low zero bytes shifted off."""
    fraction, exponent = math.frexp(float(np.float32(value)))
    mantissa, exponent = int(fraction * (1 << 24)), exponent - 24
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return _int(mantissa) + _int(exponent)


def _column(values: np.ndarray) -> bytes:
    return _int(-len(values)) + _int(-1) + b"".join(_float(v) for v in values)


def serialize(model: ShapePredictorArrays) -> bytes:
    """The model as dlib's serialize(shape_predictor) writes it."""
    out = [_int(1), _column(model.initial_shape.ravel()), _int(len(model.leaf_values))]
    for c, cascade in enumerate(model.leaf_values):
        out.append(_int(len(cascade)))
        for t, leaves in enumerate(cascade):
            splits = zip(
                model.split_idx1[c, t], model.split_idx2[c, t], model.split_thresh[c, t], strict=True
            )
            out.append(_int(len(model.split_idx1[c, t])))
            out += [_int(int(i1)) + _int(int(i2)) + _float(th) for i1, i2, th in splits]
            out.append(_int(len(leaves)))
            out += [_column(leaf) for leaf in leaves]
    out.append(_int(len(model.anchor_idx)))
    out += [_int(len(row)) + b"".join(_int(int(i)) for i in row) for row in model.anchor_idx]
    out.append(_int(len(model.deltas)))
    out += [_int(len(row)) + b"".join(_float(v) for v in row.ravel()) for row in model.deltas]
    return b"".join(out)


def synthetic_model(
    seed: int = 0, cascades: int = 2, trees: int = 12, depth: int = 4
) -> ShapePredictorArrays:
    """A random 68-part model with the structure of the real one (random trees: only equality matters)."""
    rng = np.random.default_rng(seed)
    parts, features, splits = 68, 40, 2**depth - 1
    grid = (cascades, trees, splits)
    return ShapePredictorArrays(
        initial_shape=rng.uniform(0.1, 0.9, (parts, 2)).astype(np.float32),
        anchor_idx=rng.integers(0, parts, (cascades, features)).astype(np.int32),
        deltas=rng.normal(0, 0.08, (cascades, features, 2)).astype(np.float32),
        split_idx1=rng.integers(0, features, grid).astype(np.int32),
        split_idx2=rng.integers(0, features, grid).astype(np.int32),
        split_thresh=rng.uniform(-40, 40, grid).astype(np.float32),
        leaf_values=rng.normal(0, 0.02, (cascades, trees, splits + 1, 2 * parts)).astype(np.float32),
    )


def write_model(path: Path, model: ShapePredictorArrays) -> Path:
    path.write_bytes(serialize(model))
    return path


def assert_same_arrays(got: ShapePredictorArrays | dict, want: ShapePredictorArrays) -> None:
    got = got.as_dict() if isinstance(got, ShapePredictorArrays) else got
    for name, array in want.as_dict().items():
        assert got[name].shape == array.shape and np.array_equal(got[name], array), name


def dlib_points(predictor, gray: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    import dlib

    return np.array([(p.x, p.y) for p in predictor(gray, dlib.rectangle(*rect)).parts()])


def box_variants(gray: np.ndarray, rect: tuple[int, int, int, int]) -> Iterator[tuple[int, int, int, int]]:
    """The box, rescaled, shifted across each image edge and off the image, tiny, and inverted."""
    left, top, right, bottom = rect
    height, width = gray.shape
    w, h = right - left, bottom - top
    yield rect
    for scale in (0.5, 1.6):
        dx, dy = round(w * (scale - 1) / 2), round(h * (scale - 1) / 2)
        yield left - dx, top - dy, right + dx, bottom + dy
    for dx, dy in (
        (-left - w // 2, 0),
        (width - left - w // 2, 0),
        (0, -top - h // 2),
        (0, height - top - h // 2),
    ):
        yield left + dx, top + dy, right + dx, bottom + dy
    yield -3 * w, -3 * h, -2 * w, -2 * h  # wholly outside: every feature pixel reads 0
    yield width + 5, 0, width + 5 + w, h
    yield -w, -h, width + w, height + h  # larger than the image
    yield left, top, left + 1, top + 1
    yield right, bottom, left, top  # corners swapped
    yield left + 3, top - 7, right + 3, bottom + 11  # not square


# --- the converter ---


@pytest.mark.parametrize("seed", [0, 1])
def test_converter_round_trip(tmp_path: Path, seed: int) -> None:
    model = synthetic_model(seed, depth=4 if seed == 0 else 3)
    assert_same_arrays(read_shape_predictor(write_model(tmp_path / "model.dat", model)), model)


def test_converter_is_not_fooled_by_the_leaf_head_bytes_elsewhere(tmp_path: Path, monkeypatch) -> None:
    """-68.0 serialises as 81 88 81 01, the head of every 68-part leaf matrix: as a split threshold it puts
    a false head inside a tree, the quick walk's check fails and the token-by-token walk takes over."""
    model = synthetic_model(2)
    model.split_thresh[1, 3, 0] = -68.0
    model.leaf_values[0, 5, 2, 10] = -68.0  # and a false head inside a leaf matrix
    assert _float(-68.0) == _int(-136) + _int(-1)
    walks = []
    exact = dlib_format._exact_layout
    monkeypatch.setattr(dlib_format, "_exact_layout", lambda *args: walks.append(1) or exact(*args))
    assert_same_arrays(read_shape_predictor(write_model(tmp_path / "model.dat", model)), model)
    assert walks == [1]


def test_converter_rejects_what_is_not_a_shape_predictor(tmp_path: Path) -> None:
    good = serialize(synthetic_model())
    for name, data in {
        "empty": b"",
        "text": b"not a model at all",
        "version 2": _int(2) + good[2:],
        "truncated": good[: len(good) // 2],
        "trailing bytes": good + b"\x01\x00",
    }.items():
        with pytest.raises(DlibFormatError):
            path = tmp_path / f"{name}.dat"
            path.write_bytes(data)
            read_shape_predictor(path)


def test_synthetic_model_fits_like_dlib(tmp_path: Path) -> None:
    """dlib reads the written model (the format is dlib's) and fits the same integer points."""
    import dlib

    path = write_model(tmp_path / "model.dat", synthetic_model(3, cascades=3, trees=30))
    reference = dlib.shape_predictor(str(path))
    predictor = ErtShapePredictor(read_shape_predictor(path).as_dict())
    gray = to_gray(read_image(SAMPLE_FACE))
    for rect in box_variants(gray, _detected(gray)[0]):
        assert np.array_equal(predictor.predict(gray, *rect), dlib_points(reference, gray, rect)), rect


def test_predictions_in_threads_are_independent(tmp_path: Path) -> None:
    """Each thread has its own buffer for the leaf rows (a shared front end may be used by several)."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = ErtShapePredictor(synthetic_model(4, trees=40).as_dict())
    gray = to_gray(read_image(SAMPLE_FACE))
    rects = [(10 + i, 20 + 2 * i, 90 + 3 * i, 100 + i) for i in range(24)]
    alone = [predictor.predict(gray, *rect) for rect in rects]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda rect: predictor.predict(gray, *rect), rects * 3))
    assert all(np.array_equal(a, b) for a, b in zip(alone * 3, together, strict=True))


def test_sum_in_order_is_float32_left_to_right() -> None:
    rng = np.random.default_rng(0)
    rows = (rng.standard_normal((500, 136)) * 10.0 ** rng.integers(-7, 2, (500, 1))).astype(np.float32)
    total = rows[0].copy()
    for row in rows[1:]:
        total = total + row
    assert np.array_equal(ert._sum_in_order(rows), total)


# --- the cache of converted models ---


def test_converted_model_is_cached_and_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    model = synthetic_model()
    path = write_model(tmp_path / "model.dat", model)
    assert_same_arrays(load_arrays(path), model)
    [folder] = (tmp_path / "cache" / "dlib").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{name}.npy" for name in ert.ARRAY_NAMES] + ["manifest.json"]
    )

    def no_conversion(path):
        raise AssertionError("converted again")

    monkeypatch.setattr(ert, "read_shape_predictor", no_conversion)
    arrays = load_arrays(path)
    assert isinstance(arrays["leaf_values"], np.memmap)
    assert_same_arrays(arrays, model)


@pytest.mark.parametrize(
    "damage", ["truncated", "bad header", "bad manifest", "missing manifest", "wrong shape"]
)
def test_damaged_cache_is_converted_again(tmp_path: Path, monkeypatch, damage: str) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    model = synthetic_model()
    path = write_model(tmp_path / "model.dat", model)
    load_arrays(path)
    folder = ert.converted_dir(path)
    leaves = folder / "leaf_values.npy"
    if damage == "truncated":
        leaves.write_bytes(leaves.read_bytes()[:-100])
    elif damage == "bad header":
        leaves.write_bytes(b"\0" * leaves.stat().st_size)
    elif damage == "bad manifest":
        (folder / "manifest.json").write_text("{not json")
    elif damage == "missing manifest":
        (folder / "manifest.json").unlink()
    else:
        np.save(folder / "split_idx1.npy", np.zeros((1, 2, 3), np.int32))
    predictor = LandmarkPredictor(path)
    assert predictor.engine == "numpy"
    assert_same_arrays(load_arrays(path), model)


def test_cached_arrays_that_do_not_form_a_model_are_converted_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    path = write_model(tmp_path / "model.dat", synthetic_model())
    load_arrays(path)
    anchors = ert.converted_dir(path) / "anchor_idx.npy"
    with anchors.open("r+b") as handle:  # same size and header, anchors out of range
        handle.seek(-4, os.SEEK_END)
        handle.write(np.int32(999).tobytes())
    assert isinstance(ert_predictor(path), ErtShapePredictor)
    assert int(np.load(anchors).max()) < 68


def test_conversion_of_a_changed_model_replaces_the_old_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    path = write_model(tmp_path / "model.dat", synthetic_model(0))
    load_arrays(path)
    old = ert.converted_dir(path)
    write_model(path, synthetic_model(1))
    os.utime(path, ns=(1, 1))  # a reinstalled model: new modification time
    assert_same_arrays(load_arrays(path), synthetic_model(1))
    assert not old.exists() and ert.converted_dir(path).is_dir()


def test_unwritable_cache_still_predicts(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FACSKIT_CACHE", str(blocker))
    model = synthetic_model()
    assert_same_arrays(load_arrays(write_model(tmp_path / "model.dat", model)), model)


# --- LandmarkPredictor ---


def test_unconvertible_model_falls_back_to_dlib_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    import facskit.faces.landmarks as landmarks

    path = write_model(tmp_path / "model.dat", synthetic_model())

    def refuse(path):
        raise DlibFormatError("an unexpected layout")

    monkeypatch.setattr(landmarks, "ert_predictor", refuse)
    with caplog.at_level(logging.WARNING, logger="facskit.faces.landmarks"):
        predictor = LandmarkPredictor(path)
    assert predictor.engine == "dlib"
    assert "an unexpected layout" in caplog.text and "dlib" in caplog.text
    gray = to_gray(read_image(SAMPLE_FACE))
    assert predictor.predict(gray, Box(40, 40, 80, 80)).shape == (68, 2)


def test_engine_is_chosen_by_argument_or_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    path = write_model(tmp_path / "model.dat", synthetic_model())
    assert LandmarkPredictor(path).engine == "numpy"
    assert LandmarkPredictor(path, engine="dlib").engine == "dlib"
    monkeypatch.setenv("FACSKIT_LANDMARK_ENGINE", "dlib")
    assert LandmarkPredictor(path).engine == "dlib"
    with pytest.raises(FacskitError, match="engine"):
        LandmarkPredictor(path, engine="torch")
    with pytest.raises(FacskitError, match="not found"):
        LandmarkPredictor(tmp_path / "missing.dat")


def test_predictor_wants_a_grey_uint8_image(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    predictor = ert_predictor(write_model(tmp_path / "model.dat", synthetic_model()))
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((20, 20, 3), np.uint8), 0, 0, 10, 10)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((20, 20), np.float32), 0, 0, 10, 10)


# --- the real model: equality with dlib on real faces ---


@pytest.fixture(scope="module")
def real_predictors(tmp_path_factory) -> tuple[LandmarkPredictor, object]:
    """(numpy predictor, dlib's predictor) for the 68-point model, converted once into a fresh cache."""
    import dlib

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACSKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        numpy_predictor = LandmarkPredictor()
        assert numpy_predictor.engine == "numpy"
        assert list((Path(os.environ["FACSKIT_CACHE"]) / "dlib").iterdir())
    return numpy_predictor, dlib.shape_predictor(str(model_file(SHAPE_PREDICTOR_68)))


def _detected(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    boxes = [face.box for face in FaceDetector(verify_weak=False).detect(gray)]
    assert boxes, "no face detected"
    return [(round(b.x), round(b.y), round(b.x + b.w), round(b.y + b.h)) for b in boxes]


def _assert_fits_like_dlib(real_predictors, gray: np.ndarray, variants: bool = True) -> int:
    numpy_predictor, dlib_predictor = real_predictors
    checked = 0
    for detected in _detected(gray):
        for rect in box_variants(gray, detected) if variants else [detected]:
            box = Box(rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1])
            got = numpy_predictor.predict(gray, box)
            assert np.array_equal(got, dlib_points(dlib_predictor, gray, rect)), rect
            checked += 1
    return checked


def test_real_model_fits_the_sample_face_like_dlib(real_predictors) -> None:
    gray = to_gray(read_image(SAMPLE_FACE))
    assert _assert_fits_like_dlib(real_predictors, gray) == 13
    numpy_predictor, dlib_predictor = real_predictors
    [rect] = _detected(gray)
    box = Box(rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1])
    for angle in (-25, 90):  # the face turned inside the box: the cascades move far from the mean shape
        rotation = cv2.getRotationMatrix2D(((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2), angle, 1.0)
        rotated = cv2.warpAffine(gray, rotation, gray.shape[::-1])
        assert np.array_equal(
            numpy_predictor.predict(rotated, box), dlib_points(dlib_predictor, rotated, rect)
        )


def test_real_model_fits_the_shared_media_like_dlib(real_predictors, media_dir: Path) -> None:
    for name in ("single_face.jpg", "multi_face.jpg"):
        assert _assert_fits_like_dlib(real_predictors, to_gray(read_image(media_dir / name)), variants=False)
    frame = next(iter(_video_frames(media_dir / "WolfgangLanger_Pexels.mp4", 1)))
    assert _assert_fits_like_dlib(real_predictors, frame)


def test_real_model_fits_real_faces_like_dlib(real_predictors) -> None:
    paths = [REAL_FACES / name for name in REAL_FACE_IMAGES if (REAL_FACES / name).is_file()]
    if not paths:
        pytest.skip(f"the real-face pictures ({REAL_FACES}) are absent")
    for path in paths:
        _assert_fits_like_dlib(real_predictors, to_gray(read_image(path)), variants=False)


def _video_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        for _ in range(count):
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    finally:
        capture.release()
