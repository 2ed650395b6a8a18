"""Read dlib's serialised ``shape_predictor`` (.dat) into plain numpy arrays, without dlib.

Why: ``dlib.shape_predictor(path)`` decodes the 100 MB file number by number on every start (0.6-0.9 s
on a 2-core AMD EPYC) because dlib stores each value in a portable form. Decoded once into float32 arrays,
the same model maps into memory in milliseconds (facskit.faces.ert keeps the decoded copy in the cache).

The layout, from dlib's sources (``dlib/serialize.h``, ``dlib/float_details.h``, ``dlib/matrix/matrix.h``,
``dlib/image_processing/shape_predictor.h``):

* integer: a control byte (low 4 bits: number of value bytes; bit 0x80: negative; bits 0x70 always 0) then
  the absolute value, little-endian. Every number in the file is one such token.
* float: ``float_details`` of the value, i.e. two integers: a mantissa (int64) then an exponent (int16),
  value = ldexpf((float)mantissa, exponent). For a float32 the exponent is below 256 in magnitude, so its
  token is always 2 bytes.
* ``matrix<float,0,1>``: -rows, -cols (negative = the current format), then the elements.
* ``std::vector``: its size, then the elements.
* ``shape_predictor``: version (1), initial_shape (matrix), forests (vector of cascades, each a vector of
  regression trees: splits = vector of (idx1, idx2, thresh), leaf_values = vector of matrices), anchor_idx
  (vector of vectors of integers), deltas (vector of vectors of 2-D float points, x then y).

Decoding token by token in Python takes 11 s for the 33 M tokens (measured). Almost all of them are the
leaf-value matrices, each starting with the same 4 bytes (-rows, -1), so those bytes are searched for and
every matrix found is decoded in lock step with all the others (one numpy operation per float position
instead of one Python step per token). Then the trees are located, and each tree is checked (in lock step
over all trees) to hold its split count, splits and leaf count exactly up to its first leaf matrix, and
each leaf matrix to end where the next begins; a chance match of the 4 bytes elsewhere is never used (if
one breaks the quick walk, a token-by-token walk over the tree headers takes over). Anything that does not
fit the expected layout raises :class:`DlibFormatError`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facskit.errors import FacskitError

SHAPE_PREDICTOR_VERSION = 1  # the only version dlib's deserialize(shape_predictor&) accepts
_FLOAT_SPECIAL_EXPONENT = 32000  # float_details::is_inf; is_ninf and is_nan follow it
_MAX_FLOAT_BYTES = 18  # a float: mantissa token (at most 1 + 15 bytes read as a length) + 2-byte exponent
_BLOCK = 2048  # leaf matrices decoded in lock step at a time (see _leaf_blocks)


class DlibFormatError(FacskitError):
    """The file is not a dlib shape_predictor in the serialisation this reader knows."""


@dataclass(frozen=True)
class ShapePredictorArrays:
    """A dlib shape_predictor as arrays: P parts, C cascades of T trees with S splits and L = S + 1 leaves,
    F feature pixels per cascade. Shapes are in the unit square of the face box (dlib's normalised space)."""

    initial_shape: np.ndarray  # (P, 2) float32
    anchor_idx: np.ndarray  # (C, F) int32: the shape part each feature pixel hangs on
    deltas: np.ndarray  # (C, F, 2) float32: its offset from that part, in the initial shape's frame
    split_idx1: np.ndarray  # (C, T, S) int32: feature pixels compared at each split node
    split_idx2: np.ndarray  # (C, T, S) int32
    split_thresh: np.ndarray  # (C, T, S) float32: go left when pixel[idx1] - pixel[idx2] > thresh
    leaf_values: np.ndarray  # (C, T, L, 2P) float32: shape increments, x0 y0 x1 y1 ...

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays by field name (what the cache stores)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class _Tokens:
    """Sequential reader of the integer tokens (used for everything but the leaf matrices)."""

    def __init__(self, data: bytes | bytearray | memoryview, end: int) -> None:
        self.data = data
        self.end = end
        self.pos = 0

    def integer(self) -> int:
        data, pos = self.data, self.pos
        if pos >= self.end:
            raise DlibFormatError(f"file ends inside the model (byte {pos})")
        control = data[pos]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            raise DlibFormatError(f"byte {pos}: 0x{control:02x} is not an integer control byte")
        value = int.from_bytes(data[pos + 1 : pos + 1 + size], "little")
        self.pos = pos + 1 + size
        return -value if control & 0x80 else value

    def count(self, what: str, limit: int = 1 << 24) -> int:
        value = self.integer()
        if not 0 <= value <= limit:
            raise DlibFormatError(f"{what}: implausible size {value}")
        return value

    def skip_float(self) -> int:
        """Skip one float (mantissa and exponent tokens); returns where it started."""
        data, start = self.data, self.pos
        pos = start + 1 + (data[start] & 0x0F)
        self.pos = pos + 1 + (data[pos] & 0x0F)
        return start


def _decode_ints(b: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Integer tokens starting at byte offsets ``pos`` (any shape) -> int64 values."""
    control = b[pos]
    if np.any(control & 0x70):
        raise DlibFormatError("an integer token has a malformed control byte")
    size = control & 0x0F
    width = int(size.max(initial=0))
    if width > 8:
        raise DlibFormatError("an integer token is longer than 8 bytes")
    value = np.zeros(pos.shape, np.int64)
    for k in range(width):
        byte = b[pos + (1 + k)].astype(np.int64)
        value |= np.where(size > k, byte, 0) << (8 * k)
    return np.where(control >= 0x80, -value, value)


def _decode_floats(b: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Floats whose mantissa tokens start at ``pos`` -> (float32 values, byte length of each exponent token).

    ``ldexp(float32(mantissa), exponent)`` is float_details::convert_to_T<float> exactly."""
    mantissa = _decode_ints(b, pos)
    exponent_pos = pos + 1 + (b[pos] & 0x0F)
    exponent = _decode_ints(b, exponent_pos)
    if np.any(exponent >= _FLOAT_SPECIAL_EXPONENT):
        raise DlibFormatError("the model holds an infinite or NaN value")
    values = np.ldexp(mantissa.astype(np.float32), exponent.astype(np.int32))
    return values, 1 + (b[exponent_pos] & 0x0F)


def _float_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Look-up tables that decode a float from the 8 bytes at its start (see :func:`_leaf_blocks`), indexed
    by the mantissa's control byte (sign or NaN when it is not a 1-3 byte integer token; the shift to the
    exponent token; the mask of the mantissa bytes) and by the exponent token's 2 bytes (2**exponent, NaN
    unless it is a 1-byte integer token)."""
    control = np.arange(256)
    size = control & 0x0F
    valid = (control & 0x70 == 0) & (size >= 1) & (size <= 3)
    sign = np.where(valid, np.where(control >= 0x80, -1.0, 1.0), np.nan)
    size = np.minimum(size, 3)
    shift = (8 + 8 * size).astype(np.uint64)
    mask = ((1 << (8 * size)) - 1).astype(np.uint64)
    token = np.arange(1 << 16)
    exponent_control, magnitude = token & 0xFF, token >> 8
    power = np.where(exponent_control == 0x01, np.ldexp(1.0, magnitude), np.nan)
    power = np.where(exponent_control == 0x81, np.ldexp(1.0, -magnitude), power)
    return sign, shift, mask, power


def _leaf_blocks(raw: memoryview, starts: np.ndarray, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``n_values`` floats from each start, all starts in lock step -> (values (N, n_values), ends;
    an end is -1 where the bytes there were not ``n_values`` floats).

    A float32 takes 3 + mantissa-size bytes: its exponent token is 2 bytes and its mantissa at most 3 (a
    24-bit integer shifted right by whole zero bytes, float_details::convert_from_T). Each float is then
    decoded from the 8 bytes at its start with table look-ups: the value, mantissa * 2**exponent, is exact
    in float64 and its float32 rounding is ldexpf's. Blocks of 2048 matrices (~1.7 MB) are decoded at a
    time: measured fastest here (larger blocks miss the cache and TLB in the lock-step gathers)."""
    sign, shift, mask, power = _float_tables()
    b = np.frombuffer(raw, np.uint8)
    words = np.ndarray((len(raw) - 8,), dtype="<u8", buffer=raw, strides=(1,))  # 8 bytes at every offset
    values = np.empty((len(starts), n_values), np.float32)
    ends = np.empty(len(starts), np.int64)
    positions = np.empty((_BLOCK, n_values), np.int64)
    for first in range(0, len(starts), _BLOCK):
        pos = starts[first : first + _BLOCK].copy()
        block = positions[: len(pos)]
        for k in range(n_values):
            block[:, k] = pos
            pos += 3 + (b[pos] & 0x0F)
        word = words[block]
        control = (word & np.uint64(0xFF)).astype(np.intp)
        mantissa = (word >> np.uint64(8)) & mask[control]
        exponent = ((word >> shift[control]) & np.uint64(0xFFFF)).astype(np.intp)
        decoded = mantissa.view(np.int64).astype(np.float64)
        decoded *= sign[control]
        decoded *= power[exponent]
        values[first : first + len(pos)] = decoded
        ends[first : first + len(pos)] = np.where(np.isnan(decoded).any(axis=1), -1, pos)
    return values, ends


def read_shape_predictor(path: str | Path) -> ShapePredictorArrays:
    """Decode a dlib shape_predictor file (e.g. shape_predictor_68_face_landmarks.dat) into arrays.

    Raises OSError when the file cannot be read and :class:`DlibFormatError` when its content is not the
    layout described in the module docstring (an old text-float file, a different object, a damaged file).
    """
    path = Path(path)
    size = path.stat().st_size
    pad = 1 << 16  # lock-step decoding of a false match may read past the end: it reads zeros
    b = np.empty(size + pad, np.uint8)  # not bytearray(n), which first zeroes all 100 MB (~50 ms)
    b[size:] = 0
    raw = memoryview(b)  # indexing gives ints, as bytes does: fast in the Python walks
    with path.open("rb", buffering=0) as handle:
        if handle.readinto(raw[:size]) != size:
            raise DlibFormatError(f"{path}: the file changed while it was read")
    tokens = _Tokens(raw, size)

    if tokens.integer() != SHAPE_PREDICTOR_VERSION:
        raise DlibFormatError("not a dlib shape_predictor of serialisation version 1")
    marker_start = tokens.pos
    rows, cols = -tokens.integer(), -tokens.integer()
    if cols != 1 or rows <= 0 or rows % 2 or rows * _MAX_FLOAT_BYTES > pad:
        raise DlibFormatError(f"initial shape of {rows} x {cols} values is not a shape")
    marker = bytes(raw[marker_start : tokens.pos])  # -rows, -1: the head of every leaf matrix too
    initial_pos = np.array([tokens.skip_float() for _ in range(rows)], np.int64)

    # Every place the leaf-matrix head occurs, decoded speculatively in lock step.
    found = np.fromiter((m.start() for m in re.finditer(re.escape(marker), raw)), np.int64)
    leaf_values, leaf_ends = _leaf_blocks(raw, found + len(marker), rows)

    # Where each tree and its leaf matrices are: a quick walk that assumes the heads found are exactly the
    # leaf matrices (checked below, with everything else, in lock step over all trees), else an exact one.
    n_cascades = tokens.count("cascades")
    walk_start = tokens.pos
    layout = _quick_layout(tokens, found, leaf_ends, n_cascades)
    if layout is None or not _layout_holds(b, found, leaf_ends, *layout):
        tokens.pos = walk_start
        layout = _exact_layout(tokens, raw, found, leaf_ends, n_cascades)
        if not _layout_holds(b, found, leaf_ends, *layout):  # pragma: no cover - the walk checked each step
            raise DlibFormatError("the tree layout is inconsistent")
    tree_starts, leaf_rows, (n_trees, n_splits, n_leaves) = layout
    if n_leaves != n_splits + 1 or n_leaves & (n_leaves - 1):
        raise DlibFormatError("trees must be complete binary trees (leaves = splits + 1, a power of 2)")

    anchor_pos = _vectors_of(tokens, n_cascades, "anchor_idx", floats=False)
    delta_pos = _vectors_of(tokens, n_cascades, "deltas", floats=True)
    if tokens.pos != size:
        raise DlibFormatError(f"{size - tokens.pos} unexpected bytes after the model")

    split_pos = _split_positions(b, tree_starts, n_splits)[0]
    n_features = anchor_pos.shape[1]
    idx = _decode_ints(b, split_pos[:2])
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= n_features:
        raise DlibFormatError("a split compares a feature pixel that does not exist")
    thresh = _decode_floats(b, split_pos[2])[0]
    anchors = _decode_ints(b, anchor_pos)
    if anchors.min(initial=0) < 0 or anchors.max(initial=0) >= rows // 2:
        raise DlibFormatError("a feature pixel hangs on a shape part that does not exist")

    grid = (n_cascades, n_trees, n_splits)
    return ShapePredictorArrays(
        initial_shape=_decode_floats(b, initial_pos)[0].reshape(rows // 2, 2),
        anchor_idx=anchors.astype(np.int32),
        deltas=_decode_floats(b, delta_pos)[0].reshape(n_cascades, n_features, 2),
        split_idx1=idx[0].T.astype(np.int32).reshape(grid),
        split_idx2=idx[1].T.astype(np.int32).reshape(grid),
        split_thresh=thresh.T.reshape(grid),
        leaf_values=_rows(leaf_values, leaf_rows.ravel()).reshape(n_cascades, n_trees, n_leaves, rows),
    )


def _rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows], as a view when the rows are consecutive (no chance match of the leaf head inside the
    trees: always so far), which spares a 65 MB copy."""
    if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return values[rows[0] : rows[0] + len(rows)]
    return values[rows]


_Layout = tuple[np.ndarray, np.ndarray, tuple[int, int, int]]  # tree starts, leaf rows (trees, L), (T, S, L)


def _quick_layout(tokens: _Tokens, found: np.ndarray, ends: np.ndarray, n_cascades: int) -> _Layout | None:
    """Trees and leaf rows assuming each tree's first leaf matrix is the first head found after the tree's
    start and its L leaves are the next L heads (no chance match of the head bytes inside a tree): 7500
    Python steps instead of 450 000 (a token-by-token walk over every split took 0.3 s). None where the
    assumption visibly fails; :func:`_layout_holds` checks the rest."""
    try:
        return _quick_walk(tokens, found, ends, n_cascades)
    except (DlibFormatError, IndexError):  # misled by a chance match: the exact walk decides
        return None


def _quick_walk(tokens: _Tokens, found: np.ndarray, ends: np.ndarray, n_cascades: int) -> _Layout | None:
    walk_start = tokens.pos
    tokens.count("trees")
    n_splits = tokens.count("splits")  # the first tree's sizes; _layout_holds checks all the others
    for _ in range(4 * n_splits):
        tokens.integer()
    n_leaves = tokens.count("leaves")
    tokens.pos = walk_start
    heads, leaf_ends = found.tolist(), ends.tolist()
    tree_starts: list[int] = []
    firsts: list[int] = []
    n_trees = -1
    for cascade in range(n_cascades):
        count = tokens.count("trees")
        if cascade == 0:
            n_trees = count
        elif count != n_trees:
            return None
        pos = tokens.pos
        for _ in range(n_trees):
            first = bisect.bisect_left(heads, pos)
            if first + n_leaves > len(heads):
                return None
            tree_starts.append(pos)
            firsts.append(first)
            pos = leaf_ends[first + n_leaves - 1]
            if pos < 0:
                return None
        tokens.pos = pos
    leaf_rows = np.asarray(firsts, np.int64)[:, None] + np.arange(n_leaves)
    return np.asarray(tree_starts, np.int64), leaf_rows, (n_trees, n_splits, n_leaves)


def _exact_layout(
    tokens: _Tokens, raw: memoryview, found: np.ndarray, ends: np.ndarray, n_cascades: int
) -> _Layout:
    """Trees and leaf rows by walking every tree header token by token (the fallback of _quick_layout)."""
    where = {start: row for row, start in enumerate(found.tolist())}
    leaf_ends = ends.tolist()
    tree_starts: list[int] = []
    leaf_rows: list[int] = []
    shape: tuple[int, int, int] | None = None
    for _ in range(n_cascades):
        n_trees = tokens.count("trees")
        for _ in range(n_trees):
            tree_starts.append(tokens.pos)
            n_splits = tokens.count("splits")
            data, pos = raw, tokens.pos
            for _ in range(4 * n_splits):  # idx1, idx2, thresh (mantissa, exponent)
                pos += 1 + (data[pos] & 0x0F)
            tokens.pos = pos
            n_leaves = tokens.count("leaves")
            if shape is None:
                shape = (n_trees, n_splits, n_leaves)
            elif shape != (n_trees, n_splits, n_leaves):
                raise DlibFormatError("cascades or trees of different sizes are not supported")
            for _ in range(n_leaves):
                row = where.get(tokens.pos)
                if row is None or leaf_ends[row] < 0:
                    raise DlibFormatError(f"byte {tokens.pos}: expected a leaf matrix")
                leaf_rows.append(row)
                tokens.pos = leaf_ends[row]
    if shape is None:
        raise DlibFormatError("the model has no regression trees")
    rows = np.asarray(leaf_rows, np.int64).reshape(len(tree_starts), shape[2])
    return np.asarray(tree_starts, np.int64), rows, shape


def _split_positions(b: np.ndarray, tree_starts: np.ndarray, n_splits: int) -> tuple[np.ndarray, np.ndarray]:
    """Token positions of every split's (idx1, idx2, thresh) -> (3, S, trees), and of each tree's leaf
    count, parsed in lock step over all trees from their starts (which hold the split count)."""
    split_pos = np.empty((3, n_splits, len(tree_starts)), np.int64)
    pos = tree_starts + 1 + (b[tree_starts] & 0x0F)
    for s in range(n_splits):
        for field in range(2):
            split_pos[field, s] = pos
            pos += 1 + (b[pos] & 0x0F)
        split_pos[2, s] = pos
        pos += 1 + (b[pos] & 0x0F)
        pos += 1 + (b[pos] & 0x0F)
    return split_pos, pos


def _layout_holds(
    b: np.ndarray,
    found: np.ndarray,
    ends: np.ndarray,
    tree_starts: np.ndarray,
    leaf_rows: np.ndarray,
    shape: tuple[int, int, int],
) -> bool:
    """Every tree has S splits and L leaves, its first leaf matrix starts where its header ends, and each
    further one where the previous one ends (all checked at once)."""
    try:
        _, n_splits, n_leaves = shape
        if leaf_rows.shape != (len(tree_starts), n_leaves) or np.any(ends[leaf_rows] < 0):
            return False
        split_pos, leaves_pos = _split_positions(b, tree_starts, n_splits)
        with np.errstate(over="ignore"):
            counts_ok = np.all(_decode_ints_lenient(b, tree_starts) == n_splits) and np.all(
                _decode_ints_lenient(b, leaves_pos) == n_leaves
            )
        leaves_pos += 1 + (b[leaves_pos] & 0x0F)
        return bool(
            counts_ok
            and np.array_equal(found[leaf_rows[:, 0]], leaves_pos)
            and np.array_equal(found[leaf_rows[:, 1:]], ends[leaf_rows[:, :-1]])
        )
    except IndexError:  # tree starts that are not tree starts ran off the data
        return False


def _decode_ints_lenient(b: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """:func:`_decode_ints` where a malformed token gives -1 instead of an error."""
    control = b[pos]
    if np.any(control & 0x70) or int((control & 0x0F).max(initial=0)) > 8:
        return np.full(pos.shape, -1, np.int64)
    return _decode_ints(b, pos)


def _vectors_of(tokens: _Tokens, n_cascades: int, what: str, floats: bool) -> np.ndarray:
    """Token positions of a vector (one per cascade) of equally long vectors of integers or 2-D points."""
    if tokens.count(what) != n_cascades:
        raise DlibFormatError(f"{what}: one entry per cascade expected")
    rows = []
    for _ in range(n_cascades):
        n = tokens.count(what)
        if floats:
            rows.append([tokens.skip_float() for _ in range(2 * n)])
        else:
            row = []
            for _ in range(n):
                row.append(tokens.pos)
                tokens.integer()
            rows.append(row)
    if len({len(row) for row in rows}) != 1:
        raise DlibFormatError(f"{what}: cascades with different numbers of feature pixels")
    return np.asarray(rows, np.int64)
