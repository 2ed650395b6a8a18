"""dlib's shape predictor (Kazemi & Sullivan 2014, "One millisecond face alignment with an ensemble of
regression trees") in numpy, on the model decoded once into facskit's cache and memory-mapped.

Why: ``dlib.shape_predictor(path)`` spends 0.6-0.9 s on every start decoding the 100 MB model (2-core
AMD EPYC). Here the decoded float32 arrays (facskit.faces.dlib_format, ~1 s once per machine) are stored under
``cache_dir()/dlib/`` and memory-mapped in ~10 ms. Memory is the pages fits touch: nothing until the first
face, then, as the kernel maps the neighbours of each page read, nearly all 65 MB of leaf values (dlib's
own copy: 69 MB, measured).

:class:`ErtShapePredictor` follows ``dlib::shape_predictor::operator()`` (dlib/image_processing/
shape_predictor.h) step by step, with dlib's float32/float64 choices, so that it returns the same integer
points: per cascade, the similarity transform from the initial shape to the current one
(find_tform_between_shapes, cast to float), each feature pixel = transform * delta + its anchor part, mapped
into the box and rounded like dlib::point (floor(x + 0.5)), 0 outside the image; then each tree's leaf is
added to the shape in tree order, in float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facskit.errors import FacskitError
from facskit.faces.dlib_format import ShapePredictorArrays, read_shape_predictor
from facskit.faces.models import cache_dir

log = logging.getLogger(__name__)

#: Layout of the converted cache; bump it when the arrays or their meaning change (old copies are ignored).
FORMAT_VERSION = 1
ARRAY_NAMES = tuple(ShapePredictorArrays.__dataclass_fields__)
_MANIFEST = "manifest.json"


def converted_dir(model_path: str | Path) -> Path:
    """Cache folder of the arrays converted from ``model_path``, keyed by the model file's path, size and
    modification time and by FORMAT_VERSION (a reinstalled or edited model gets a fresh conversion)."""
    path = Path(model_path).resolve()
    stat = path.stat()
    key = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{FORMAT_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "dlib" / f"{path.stem}.ert{FORMAT_VERSION}-{digest}"


def load_arrays(model_path: str | Path) -> dict[str, np.ndarray]:
    """The model's arrays, memory-mapped from the cache; converted and stored first if no intact copy is
    there. Raises OSError if the model cannot be read, DlibFormatError if it is not a shape predictor."""
    folder = converted_dir(model_path)
    arrays = _read_cache(folder)
    if arrays is not None:
        return arrays
    started = time.perf_counter()
    converted = read_shape_predictor(model_path)
    seconds = time.perf_counter() - started
    log.info("converted %s for facskit's landmark predictor in %.1f s (once)", model_path, seconds)
    try:
        _write_cache(folder, converted, Path(model_path))
    except (OSError, FacskitError) as error:  # read-only cache: convert again next time
        log.info("cannot cache the converted landmark model in %s: %s", folder, error)
        return converted.as_dict()
    _remove_stale(folder)
    return _read_cache(folder) or converted.as_dict()


def _write_cache(folder: Path, arrays: ShapePredictorArrays, source: Path) -> None:
    """Each array as ``<name>.npy`` then the manifest, every file written atomically: a reader sees a
    manifest only once all the arrays it lists are complete (a concurrent writer writes identical bytes).
    The manifest names the source model, so that a copy whose model has changed can be recognised."""
    from facskit.io.atomic import atomic_write_json, atomic_write_npy

    folder.mkdir(parents=True, exist_ok=True)
    listed = {}
    for name, array in arrays.as_dict().items():
        file = folder / f"{name}.npy"
        atomic_write_npy(file, array)
        listed[name] = {"bytes": file.stat().st_size, "shape": list(array.shape), "dtype": array.dtype.str}
    stat = source.stat()
    manifest = {
        "format": FORMAT_VERSION,
        "source": {"path": str(source.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "arrays": listed,
    }
    atomic_write_json(folder / _MANIFEST, manifest)


def _remove_stale(current: Path) -> None:
    """Remove the other conversions of the same model file whose source has since changed or gone (a
    reinstalled package): their key can never match again, and each holds 65 MB. Copies of other, still
    present model files (another environment sharing the cache) are kept."""
    import shutil

    for folder in current.parent.glob(current.name.rsplit("-", 1)[0] + "-*"):
        if folder == current:
            continue
        try:
            source = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))["source"]
            path, size, mtime_ns = str(source["path"]), source["bytes"], source["mtime_ns"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no manifest yet (being written) or not ours to judge
        try:
            stat = os.stat(path)
            if (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns):
                continue
        except FileNotFoundError:
            pass  # the model is gone
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _read_cache(folder: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an intact cached conversion (manifest present, every file of the listed size, shape
    and type), memory-mapped; None otherwise (missing, damaged, half written, another format)."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION or set(manifest["arrays"]) != set(ARRAY_NAMES):
            return None
        arrays = {}
        for name, listed in manifest["arrays"].items():
            file = folder / f"{name}.npy"
            if os.stat(file).st_size != listed["bytes"]:
                return None
            array = np.load(file, mmap_mode="r", allow_pickle=False)
            if list(array.shape) != listed["shape"] or array.dtype.str != listed["dtype"]:
                return None
            arrays[name] = array
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return arrays


class ErtShapePredictor:
    """``predict(gray, left, top, right, bottom) -> (P, 2) int64`` points, equal to dlib's
    ``shape_predictor(gray, dlib.rectangle(left, top, right, bottom)).parts()``.

    ``arrays``: from :func:`load_arrays` (or ``ShapePredictorArrays.as_dict()``). Raises ValueError for
    arrays that do not form a model (a damaged conversion).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        initial = np.asarray(arrays["initial_shape"], np.float32)
        leaves = arrays["leaf_values"]
        n_cascades, n_trees, n_leaves, n_values = leaves.shape
        n_splits = n_leaves - 1
        n_features = arrays["anchor_idx"].shape[1]
        grid = (n_cascades, n_trees, n_splits)
        expected = {
            "initial_shape": (n_values // 2, 2),
            "anchor_idx": (n_cascades, n_features),
            "deltas": (n_cascades, n_features, 2),
            "split_idx1": grid,
            "split_idx2": grid,
            "split_thresh": grid,
        }
        if any(arrays[name].shape != shape for name, shape in expected.items()):
            raise ValueError("the landmark model's arrays do not fit together")
        if n_leaves & n_splits:  # dlib requires complete trees: leaves a power of two, splits = leaves - 1
            raise ValueError("the landmark model's trees are not complete binary trees")
        self.n_parts = n_values // 2
        self._initial = initial.ravel()
        # Similarity transform initial -> current (dlib find_similarity_transform, Umeyama's closed form
        # for 2-D): scale*rotation = [[a, -b], [b, a]] with a = sum(to . from_c) / sum|from_c|^2 and
        # b = sum(to x from_c) / sum|from_c|^2, from_c the initial shape minus its mean (so the current
        # shape's mean cancels). Equal to dlib's SVD route up to double rounding, far below float32's.
        # Rows give (m00, m10, m01, m11) = (a, b, -b, a) in one product. No matmul anywhere here: it calls
        # OpenBLAS, whose threads then spin against the analysis pipeline's (measured: a video analysis 3.4
        # times as slow and 700 MB larger).
        centred = initial.astype(np.float64) - initial.astype(np.float64).mean(axis=0)
        cross = np.stack([-centred[:, 1], centred[:, 0]], axis=1).ravel()
        along = centred.ravel()
        self._similarity = np.stack([along, cross, -cross, along]) / float((centred**2).sum())
        self._anchor = np.asarray(arrays["anchor_idx"], np.intp)  # (C, F)
        if self._anchor.min(initial=0) < 0 or self._anchor.max(initial=0) >= self.n_parts:
            raise ValueError("the landmark model's feature anchors are out of range")
        # Feature pixels are computed as (x row, y row) x F: numpy loops fastest over the long axis.
        self._deltas = np.ascontiguousarray(np.asarray(arrays["deltas"], np.float32).transpose(0, 2, 1))
        self._anchor_xy = np.stack([2 * self._anchor, 2 * self._anchor + 1], axis=1)  # (C, 2, F) into shape
        idx1 = np.asarray(arrays["split_idx1"], np.intp).reshape(n_cascades, -1)
        idx2 = np.asarray(arrays["split_idx2"], np.intp).reshape(n_cascades, -1)
        if min(idx1.min(initial=0), idx2.min(initial=0)) < 0 or max(idx1.max(), idx2.max()) >= n_features:
            raise ValueError("the landmark model's splits compare pixels that do not exist")
        # dlib goes left when (float)pixel1 - (float)pixel2 > thresh; the difference of two 8-bit pixels is
        # an integer, so that is difference >= floor(thresh) + 1, compared in int16 (exact, and faster).
        thresh = np.asarray(arrays["split_thresh"], np.float32).reshape(n_cascades, n_trees, n_splits)
        thresh = (np.floor(np.clip(thresh, -300, 300)) + 1).astype(np.int16)
        idx12 = np.stack([idx1, idx2], axis=1).reshape(n_cascades, 2, n_trees, n_splits)
        # Each tree's split outcomes are packed into one 8- or 16-bit number that indexes a table of leaves:
        # trees padded with splits that never go left (threshold above any pixel difference).
        self._code_bits = 8 if n_splits <= 8 else 16 if n_splits <= _MAX_TABLE_SPLITS else 0
        if self._code_bits:
            padding = self._code_bits - n_splits
            idx12 = np.pad(idx12, ((0, 0), (0, 0), (0, 0), (0, padding)))
            thresh = np.pad(thresh, ((0, 0), (0, 0), (0, padding)), constant_values=np.iinfo(np.int16).max)
            self._leaf_of = _leaf_table(n_splits, self._code_bits)
        self._idx12 = idx12.reshape(n_cascades, 2, -1)  # one gather fetches both pixels of every split
        self._thresh = thresh.reshape(n_cascades, -1)
        # One plain-ndarray view of the memory map per cascade: indexing an np.memmap makes a new memmap
        # through its Python-level __getitem__ / __array_finalize__ every time, which made the leaf gather,
        # the largest step, take 74 instead of ~30 us per cascade (line profile, Wolfgang clip).
        table = np.asarray(leaves).reshape(n_cascades, n_trees * n_leaves, n_values)
        self._leaves = [table[cascade] for cascade in range(n_cascades)]
        self._leaf_base = np.arange(n_trees) * n_leaves  # row of each tree's first leaf
        self._n_trees, self._n_splits = n_trees, n_splits
        self._buffers = threading.local()

    def predict(self, gray: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
        """Fit the shape in the box [left, right] x [top, bottom] (dlib.rectangle's corners) on a (H, W)
        uint8 grey image."""
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"expected a (H, W) uint8 grey image, got {gray.dtype} {gray.shape}")
        height, width = gray.shape
        pixels = np.ascontiguousarray(gray).reshape(-1)
        # unnormalizing_tform(rect) maps (0, 0) to (left, top) and (1, 1) to (right, bottom); dlib::point
        # rounds with floor(x + 0.5). (right - left) * x is exact in float64 for a float32 x, as in dlib.
        scale = np.array([[right - left], [bottom - top]], np.float64)
        # x + 0.5 plus one more: truncation toward zero is then floor wherever the result can be inside the
        # image, and one less than it is negative wherever floor(x + 0.5) is.
        shifted = np.array([[left + 1.5], [top + 1.5]], np.float64)
        size = np.array([[width], [height]], np.uintp)
        shape = self._initial.copy()
        buffer = self._increments_buffer()
        for cascade in range(len(self._leaves)):
            # extract_feature_pixel_values: float32 tform * delta + the anchor part, in float32 like dlib
            # (x row and y row, F long: numpy loops fastest over the long axis).
            m00_m10_m01_m11 = np.multiply(self._similarity, shape).sum(axis=1).astype(np.float32)[:, None]
            deltas = self._deltas[cascade]
            points = m00_m10_m01_m11[:2] * deltas[0]
            points += m00_m10_m01_m11[2:] * deltas[1]
            points += shape.take(self._anchor_xy[cascade])
            image_points = np.multiply(points, scale, dtype=np.float64)
            image_points += shifted
            at = image_points.astype(np.intp)
            at -= 1  # (column, row) = floor(x + 0.5); dlib reads 0 where that is outside the image
            inside = at.view(np.uintp) < size  # negatives wrap round to huge
            inside = inside[0] & inside[1]
            index = at[1] * width
            index += at[0]
            values = np.multiply(pixels.take(index, mode="clip"), inside, dtype=np.int16)
            # Every split of every tree at once, then each tree's leaf from its outcomes.
            compared = values.take(self._idx12[cascade])
            goes_left = (compared[0] - compared[1]) >= self._thresh[cascade]
            rows = self._leaf_index(goes_left)
            rows += self._leaf_base
            increments = self._leaves[cascade].take(rows, axis=0, out=buffer, mode="clip")
            increments[0] += shape
            shape = _sum_in_order(increments)
        return np.floor(shape.reshape(-1, 2) * scale.T + (shifted.T - 1.0)).astype(np.int64)

    def _increments_buffer(self) -> np.ndarray:
        """This thread's (T, 2P) float32 buffer for the trees' leaf rows. A fresh 272 kB array per cascade
        comes from mmap and is paged in each time: the gather took 32 instead of 15 us (measured). mode="clip"
        in the gather (the rows are in range) keeps numpy from buffering the output."""
        buffer = getattr(self._buffers, "increments", None)
        if buffer is None:
            buffer = self._buffers.increments = np.empty((self._n_trees, 2 * self.n_parts), np.float32)
        return buffer

    def _leaf_index(self, goes_left: np.ndarray) -> np.ndarray:
        """Each tree's leaf (0 .. L-1) from its split outcomes (tree by tree): dlib's walk from node 0 to the
        left child 2i+1 when a split goes left, else to the right child 2i+2."""
        if self._code_bits:
            codes = np.packbits(goes_left, bitorder="little").view(f"<u{self._code_bits // 8}")
            return self._leaf_of.take(codes)
        node = np.zeros(self._n_trees, np.intp)
        base = np.arange(self._n_trees) * self._n_splits
        while node[0] < self._n_splits:  # complete trees: every path has the same length
            node = 2 * node + 2 - goes_left.take(base + node)
        return node - self._n_splits


_MAX_TABLE_SPLITS = 16  # a table of 2**16 leaves at most; deeper trees walk level by level


def _leaf_table(n_splits: int, code_bits: int) -> np.ndarray:
    """Leaf reached for each of the 2**code_bits combinations of split outcomes (bit s set: split s goes
    left), by dlib's walk."""
    outcomes = np.arange(1 << code_bits)
    node = np.zeros_like(outcomes)
    while node[0] < n_splits:
        node = 2 * node + 2 - ((outcomes >> node) & 1)
    return (node - n_splits).astype(np.intp)


def _sum_in_order(rows: np.ndarray) -> np.ndarray:
    """rows[0] + rows[1] + ... in this order, in float32, as dlib adds the trees' leaves one after the
    other. einsum's 'ij->j' adds row by row (checked against that loop in the tests); it is 1.4 times as
    fast as sum(axis=0), which also does, and unlike a matrix product it keeps the order and precision."""
    return np.einsum("ij->j", rows)


def ert_predictor(model_path: str | Path) -> ErtShapePredictor:
    """The predictor for a dlib shape_predictor file, converting it into the cache the first time. A cached
    copy that loads but does not form a model is converted again. Raises OSError, DlibFormatError or
    ValueError when the model itself cannot be converted."""
    try:
        return ErtShapePredictor(load_arrays(model_path))
    except ValueError:
        converted = read_shape_predictor(model_path)
        with contextlib.suppress(OSError, FacskitError):
            _write_cache(converted_dir(model_path), converted, Path(model_path))
        return ErtShapePredictor(converted.as_dict())
