"""Source/target frame pairs for TCAE: same face track, same clip, a frame gap that widens with training.

Two sources:

* a prepared cache (:class:`facskit.data.PreparedCache`): every ``(subject, sequence)`` is one track; pairs
  are drawn by frame number, so missing frames do not distort the gap (:func:`tracks_from_index`,
  :class:`PairSampler`, :class:`CachePairDataset`);
* a folder of raw videos streamed through the face pipeline (:class:`VideoPairStream`): frames are decoded,
  tracked and cropped once, and a ring buffer per face track of the last ``max_gap`` crops gives pairs, so
  memory stays constant in the video length. The crops are either aligned per frame or, by default, held
  fixed along the track (:class:`SegmentCrop`, the streamed form of ``prepare --crop track``) so the head's
  motion stays in the pixels for the pose branch.

Curriculum (paper sec. 3.3, "easy pairs first"): close frames differ little, so the warps are small and the
decoders learn the easy part first. :class:`PairCurriculum` ramps the largest gap linearly from
``start_max_gap`` to ``end_max_gap`` over ``ramp_epochs``; the loss window of
:func:`facskit.tcae.losses.reduce_terms` ramps alongside it.

Mining (``PairCurriculum.mine_factor`` k > 1): each pair is the one of k candidate pairs that differ most
(tournament selection), by thumbnail difference (:class:`FrameDifference`) or by the landmark motion an
affine map does not explain (:class:`LandmarkResidual`). Why: on faces that keep still, most pairs a few
frames apart differ by almost nothing, so the warps get no signal to start from. Measured on a synthetic set
with AU motion only (lite model, AU decoder alone): with uniform pairs the AU field stayed at zero for 2560
steps; with k = 4 it removed ~21% of the frame difference after 1024 steps (optical flow removes 19%) and its
embedding's AU probe F1 rose from 0.084 to 0.229 (random encoder 0.095; benchmarks/results/tcae.md). It
needs no labels.

Pairs of an epoch are a pure function of ``(seed, epoch)``, so a resumed run continues with the very same
pairs from the saved batch position, and DDP ranks take disjoint strided slices of the same list.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from facskit.align import AlignSpec

__all__ = [
    "CachePairDataset",
    "FrameDifference",
    "LandmarkResidual",
    "PairCurriculum",
    "PairSampler",
    "SegmentCrop",
    "Track",
    "VideoPairStream",
    "image_to_tensor",
    "sample_pairs",
    "tracks_from_index",
]


@dataclass(frozen=True)
class PairCurriculum:
    """Frame gap (in frames) between source and target, ramping from easy to hard."""

    min_gap: int = 1  # smallest |frame_t - frame_s|; 1 excludes identical frames
    start_max_gap: int = 4  # largest gap in the first epoch (easy: nearly identical frames)
    end_max_gap: int = 60  # largest gap once the ramp is done (3 s at 20 fps)
    ramp_epochs: int = 5  # epochs over which the largest gap (and the loss window) move to their end values
    start_window: tuple[float, float] = (0.0, 1.0)  # kept loss-rank window of a batch in the first epoch
    end_window: tuple[float, float] = (0.0, 1.0)  # ... and after the ramp; reference: (0, .5) -> (.4, .9)
    mine_factor: int = 1  # each pair: the most different of this many candidates (1: uniform, as the paper)

    def __post_init__(self) -> None:
        if self.mine_factor < 1:
            raise ValueError(f"mine_factor must be >= 1, got {self.mine_factor}")
        if not 1 <= self.min_gap <= self.start_max_gap <= self.end_max_gap:
            raise ValueError(
                "need 1 <= min_gap <= start_max_gap <= end_max_gap, got "
                f"{self.min_gap}, {self.start_max_gap}, {self.end_max_gap}"
            )
        for window in (self.start_window, self.end_window):
            if not 0.0 <= window[0] < window[1] <= 1.0:
                raise ValueError(f"a loss window must satisfy 0 <= lo < hi <= 1, got {window}")

    def progress(self, epoch: int) -> float:
        """0 at epoch 0, 1 once ``epoch >= ramp_epochs - 1`` (linear in between)."""
        if self.ramp_epochs <= 1:
            return 1.0
        return min(1.0, max(0.0, epoch / (self.ramp_epochs - 1)))

    def max_gap(self, epoch: int) -> int:
        t = self.progress(epoch)
        return int(round(self.start_max_gap + t * (self.end_max_gap - self.start_max_gap)))

    def window(self, epoch: int) -> tuple[float, float]:
        t = self.progress(epoch)
        lo = self.start_window[0] + t * (self.end_window[0] - self.start_window[0])
        hi = self.start_window[1] + t * (self.end_window[1] - self.start_window[1])
        return float(lo), float(hi)


@dataclass(frozen=True)
class Track:
    """One face track of one clip: dataset row positions and their frame numbers, sorted by frame."""

    key: str
    rows: np.ndarray  # (n,) int64 row positions in the dataset
    frames: np.ndarray  # (n,) int64 frame numbers, strictly increasing


def tracks_from_index(index: pd.DataFrame, min_length: int = 2) -> list[Track]:
    """Group a cache index by ``(subject, sequence)`` into tracks; row position = the cache's ``[i]``."""
    positions = np.arange(len(index))
    tracks: list[Track] = []
    for (subject, sequence), group in index.assign(_row=positions).groupby(
        ["subject", "sequence"], sort=True
    ):
        group = group.sort_values("frame").drop_duplicates("frame")
        if len(group) >= min_length:
            tracks.append(
                Track(
                    key=f"{subject}/{sequence}",
                    rows=group["_row"].to_numpy(np.int64),
                    frames=group["frame"].to_numpy(np.int64),
                )
            )
    return tracks


def sample_pairs(
    tracks: Sequence[Track], count: int, min_gap: int, max_gap: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` pairs ``(count, 2)`` of row positions (source, target) within one track each.

    A track is chosen with probability proportional to its length, then a source frame uniformly, then a
    target uniformly among the frames whose gap ``|f_t - f_s|`` is in ``[min_gap, max_gap]`` (either
    direction, so the model sees both signs of every motion). Sources without such a neighbour are redrawn.
    """
    if not tracks:
        raise ValueError("no track has two frames: nothing to pair")
    lengths = np.array([len(t.rows) for t in tracks], dtype=np.float64)
    pairs = np.empty((count, 2), dtype=np.int64)
    filled = 0
    attempts = 0
    while filled < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"no two frames of any track are {min_gap}..{max_gap} frames apart")
        track = tracks[rng.choice(len(tracks), p=lengths / lengths.sum())]
        i = int(rng.integers(len(track.frames)))
        f = track.frames[i]
        after = np.searchsorted(track.frames, [f + min_gap, f + max_gap + 1])
        before = np.searchsorted(track.frames, [f - max_gap, f - min_gap + 1])
        n_after, n_before = after[1] - after[0], before[1] - before[0]
        if n_after + n_before == 0:
            continue
        k = int(rng.integers(n_after + n_before))
        j = after[0] + k if k < n_after else before[0] + (k - n_after)
        pairs[filled] = (track.rows[i], track.rows[j])
        filled += 1
    return pairs


class FrameDifference:
    """Mean absolute difference of two frames' thumbnails, for pair mining: ``(pairs (P, 2)) -> (P,)``.

    Thumbnails are uint8 ``(N, s, s, 3)`` (a :class:`CachePairDataset`'s preloaded images, or made once at
    ``size``: 12 kB a frame at 64), so scoring an epoch's candidates costs milliseconds, not a decode.
    """

    def __init__(self, thumbnails: np.ndarray) -> None:
        self.thumbnails = thumbnails

    @classmethod
    def of(cls, images: CachePairDataset, size: int = 64) -> FrameDifference:
        if images.images is not None and images.size <= size:
            return cls(images.images)
        return cls(CachePairDataset(images.cache, min(size, images.size), preload=True).images)

    def __call__(self, pairs: np.ndarray, chunk: int = 1024) -> np.ndarray:
        out = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            a = self.thumbnails[part[:, 0]].astype(np.int16)
            b = self.thumbnails[part[:, 1]].astype(np.int16)
            out[start : start + chunk] = np.abs(a - b).reshape(len(part), -1).mean(axis=1)
        return out


class LandmarkResidual:
    """Non-rigid landmark motion of a pair, for pair mining: ``(pairs (P, 2)) -> (P,)`` mean distance (px)
    between the source's landmarks and the target's mapped onto them by their best affine fit.

    What an affine map explains is head motion (and the crop's own shifts); what is left is the face
    changing shape - AU motion, plus some perspective of a turning head. Scoring pairs by it picks pairs
    for the AU branch rather than for the pose branch, which a frame difference, dominated by head motion
    where the head moves, does not. It uses the cache's aligned landmarks (the face pipeline's output), no
    labels.
    """

    def __init__(self, landmarks: np.ndarray) -> None:
        self.landmarks = np.asarray(landmarks, dtype=np.float64)  # (N, L, 2)

    @classmethod
    def of_index(cls, index: pd.DataFrame) -> LandmarkResidual:
        columns = [c for c in index.columns if c.startswith("lx_")]
        if not columns:
            raise ValueError("the cache index has no landmark columns (lx_*, ly_*)")
        count = len(columns)
        xs = index[[f"lx_{i}" for i in range(count)]].to_numpy(np.float64)
        ys = index[[f"ly_{i}" for i in range(count)]].to_numpy(np.float64)
        return cls(np.stack((xs, ys), axis=-1))

    def nonrigid(self, pairs: np.ndarray) -> np.ndarray:
        """``(P, L, 2)``: each source landmark minus the target's landmarks mapped onto the source by their
        least-squares affine fit, i.e. the part of the motion no affine map explains."""
        source, target = self.landmarks[pairs[:, 0]], self.landmarks[pairs[:, 1]]  # (P, L, 2)
        design = np.concatenate((target, np.ones_like(target[..., :1])), axis=-1)  # (P, L, 3)
        gram = design.transpose(0, 2, 1) @ design  # (P, 3, 3)
        coef = np.linalg.solve(gram + 1e-9 * np.eye(3), design.transpose(0, 2, 1) @ source)  # (P, 3, 2)
        return source - design @ coef

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        residual = np.linalg.norm(self.nonrigid(pairs), axis=-1)  # (P, L)
        return np.nan_to_num(residual.mean(axis=1), nan=0.0)


class PairSampler:
    """Deterministic pairs per epoch for a cache, sharded across DDP ranks, resumable at any batch.

    ``pairs(epoch)`` is the whole epoch's ``(pairs_per_epoch, 2)`` list (same on every rank);
    ``batches(epoch, batch_size, start)`` yields this rank's batches from batch ``start`` on. With the
    curriculum's ``mine_factor`` k > 1, ``difference`` (a :class:`FrameDifference` or
    :class:`LandmarkResidual`) scores k candidates per pair and the most different one is kept.
    """

    def __init__(
        self,
        tracks: Sequence[Track],
        pairs_per_epoch: int,
        curriculum: PairCurriculum,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        difference: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if curriculum.mine_factor > 1 and difference is None:
            raise ValueError("pair mining (mine_factor > 1) needs a frame difference to rank candidates")
        self.tracks = list(tracks)
        self.pairs_per_epoch = pairs_per_epoch
        self.curriculum = curriculum
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.difference = difference

    def pairs(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        k, gaps = self.curriculum.mine_factor, (self.curriculum.min_gap, self.curriculum.max_gap(epoch))
        candidates = sample_pairs(self.tracks, self.pairs_per_epoch * k, *gaps, rng)
        if k == 1:
            return candidates
        assert self.difference is not None
        scores = self.difference(candidates).reshape(self.pairs_per_epoch, k)  # k consecutive = one pair
        best = scores.argmax(axis=1)  # first of equals: deterministic
        return candidates.reshape(self.pairs_per_epoch, k, 2)[np.arange(self.pairs_per_epoch), best]

    def batches_per_epoch(self, batch_size: int) -> int:
        return (self.pairs_per_epoch // self.world_size) // batch_size

    def batches(self, epoch: int, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        """This rank's full batches ``(batch_size, 2)`` of ``epoch`` from batch number ``start``."""
        mine = self.pairs(epoch)[self.rank :: self.world_size]
        for b in range(start, self.batches_per_epoch(batch_size)):
            yield mine[b * batch_size : (b + 1) * batch_size]


def image_to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, 3) uint8`` RGB -> ``(3, size, size) float32`` in [0, 1] (area resampling when shrinking)."""
    if image.shape[0] != size or image.shape[1] != size:
        interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class CachePairDataset(torch.utils.data.Dataset):
    """Images of a prepared cache at the model's input size; ``[i] -> (3, S, S)``.

    With ``preload=True`` every frame is resized once into one uint8 array (S*S*3 bytes a frame, 12 kB at
    64x64), which makes the lite preset compute-bound instead of decode-bound.
    """

    def __init__(self, cache, size: int, preload: bool = False) -> None:
        self.cache = cache
        self.size = size
        self.images: np.ndarray | None = None
        if preload:
            self.images = np.stack([self._resized(i) for i in range(len(cache))])  # (N, S, S, 3)

    def _resized(self, i: int) -> np.ndarray:
        # PreparedCache.image reads only the crop (no landmark/label copies); any [i] -> dict works too
        image = self.cache.image(i) if hasattr(self.cache, "image") else self.cache[i]["image"]
        if image.shape[0] != self.size:
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return image

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i] if self.images is not None else self._resized(int(i))
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)

    def batch(self, pairs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``pairs (B, 2)`` -> ``(source (B, 3, S, S), target (B, 3, S, S))``."""
        return (
            torch.stack([self[int(i)] for i in pairs[:, 0]]),
            torch.stack([self[int(j)] for j in pairs[:, 1]]),
        )


# An aligner turns one decoded RGB frame into a list of (key, crop (S, S, 3) uint8); pairs are drawn only
# between crops of one key (a face track, or a segment of one with one crop matrix).
FrameAligner = Callable[[np.ndarray], list[tuple[Hashable, np.ndarray]]]

# Crop modes of raw videos (TCAEDataConfig.crop): per-frame alignment, or one matrix per track segment.
VIDEO_CROPS = ("aligned", "track")


class VideoPairStream:
    """Pairs from raw videos, streamed: ``(source (B, 3, S, S), target (B, 3, S, S))`` batches.

    Each video is decoded once, frame by frame; ``aligner`` (built by :func:`default_aligner` from
    facskit.faces + facskit.align) gives the crops of the tracked faces, each with its pairing key. For
    every key a ring buffer holds its last ``max_gap`` crops; each new crop becomes a target with
    probability ``pairs_per_frame`` (several pairs for values > 1), its source drawn from the buffer with a
    gap in ``[min_gap, max_gap]`` (with ``mine_factor`` k > 1, the most different of k such draws). A
    buffer whose newest crop is more than ``max_gap`` frames old can give no source any more and is
    dropped (ended tracks, old segments). Memory: ``max_gap`` crop tensors per live key plus one batch.
    Videos are split across DDP ranks (``rank::world_size``); ``start_video`` resumes at a video boundary.
    """

    def __init__(
        self,
        videos: Sequence[Path],
        aligner_factory: Callable[[], FrameAligner],
        size: int,
        batch_size: int,
        curriculum: PairCurriculum,
        epoch: int,
        seed: int = 0,
        pairs_per_frame: float = 1.0,
        rank: int = 0,
        world_size: int = 1,
        mine_factor: int = 1,
    ) -> None:
        if mine_factor < 1:
            raise ValueError(f"mine_factor must be >= 1, got {mine_factor}")
        self.mine_factor = mine_factor
        self.videos = list(videos)[rank::world_size]
        self.aligner_factory = aligner_factory
        self.size = size
        self.batch_size = batch_size
        self.min_gap = curriculum.min_gap
        self.max_gap = curriculum.max_gap(epoch)
        self.rng = np.random.default_rng([seed, epoch, rank])
        self.pairs_per_frame = pairs_per_frame

    def batches(self, start_video: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yields ``(video position, source batch, target batch)``; a partial batch at the end is dropped."""
        from facskit.io import iter_frames

        sources: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        for position in range(start_video, len(self.videos)):
            aligner = self.aligner_factory()  # fresh tracker per clip: tracks never span two clips
            buffers: dict[Hashable, deque[tuple[int, torch.Tensor]]] = {}
            for frame in iter_frames(self.videos[position]):
                for key in [k for k, b in buffers.items() if frame.index - b[-1][0] > self.max_gap]:
                    del buffers[key]
                for key, crop in aligner(frame.image):
                    tensor = image_to_tensor(crop, self.size)
                    buffer = buffers.setdefault(key, deque(maxlen=self.max_gap))
                    n_pairs = math.floor(self.pairs_per_frame + self.rng.random())
                    candidates = [t for f, t in buffer if self.min_gap <= frame.index - f <= self.max_gap]
                    for _ in range(n_pairs if candidates else 0):
                        sources.append(self._source(candidates, tensor))
                        targets.append(tensor)
                        if len(sources) == self.batch_size:
                            yield position, torch.stack(sources), torch.stack(targets)
                            sources, targets = [], []
                    buffer.append((frame.index, tensor))

    def _source(self, candidates: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """A source for ``target``: uniform among ``candidates``, or with ``mine_factor`` k > 1 the most
        different (mean absolute difference of the crops as the network sees them) of k uniform draws -
        the streamed form of the cache path's mining (:class:`FrameDifference`)."""
        draws = self.rng.integers(len(candidates), size=self.mine_factor)
        if self.mine_factor == 1:
            return candidates[int(draws[0])]
        scores = [float((candidates[int(d)] - target).abs().mean()) for d in draws]
        return candidates[int(draws[int(np.argmax(scores))])]


class SegmentCrop:
    """One crop matrix per segment of a face track, for streamed video: ``prepare --crop track`` in one pass.

    ``prepare --crop track`` aligns the per-point median landmarks of a whole sequence, which needs the
    whole sequence first. Streamed, the first frame of a track sets the matrix (its own alignment) and
    later frames are cropped through it, so the head's motion stays in the crops, until the face drifts:
    when the landmarks, mapped through the matrix, are on average more than ``max_drift`` of the crop size
    away from where the segment's first frame put them (a walk across the room, a turn, a zoom), the
    frame starts a new segment with its own alignment. Pairs are drawn within a segment only, so both
    crops of a pair always share one matrix. On the synthetic DISFA-layout set with head motion (``hm1``)
    no frame is further than 0.11 of the crop from its sequence's first, so the default 0.15 gives one
    segment per sequence there, as ``--crop track`` does.
    """

    def __init__(self, spec: AlignSpec, max_drift: float = 0.15) -> None:
        if not max_drift > 0:
            raise ValueError(f"max_drift must be > 0 (a fraction of the crop size), got {max_drift}")
        self.spec = spec
        self.max_drift = max_drift
        self._anchors: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # id -> (segment, M, points)

    def __call__(self, face_id: int, landmarks: np.ndarray) -> tuple[int, np.ndarray]:
        """``(segment number, (2, 3) matrix)`` for this face's frame with ``landmarks`` (68, 2)."""
        from facskit.align import alignment_matrix, points_to_crop

        anchor = self._anchors.get(face_id)
        if anchor is not None:
            segment, matrix, points = anchor
            drift = np.linalg.norm(points_to_crop(landmarks, matrix) - points, axis=1).mean()
            if drift <= self.max_drift * self.spec.size:
                return segment, matrix
        matrix = alignment_matrix(landmarks, self.spec)
        segment = anchor[0] + 1 if anchor is not None else 0
        self._anchors[face_id] = (segment, matrix, points_to_crop(landmarks, matrix))
        return segment, matrix


def default_aligner(
    size: int = 256, detect_every: int = 5, crop: str = "track", max_drift: float = 0.15
) -> FrameAligner:
    """Face tracking (dlib, detection every ``detect_every`` frames) + BMVC alignment, as in analysis.

    ``crop="aligned"`` aligns every frame on its own landmarks (key: the face id); ``"track"`` crops each
    frame through its track segment's matrix (:class:`SegmentCrop`; key: (face id, segment)).
    """
    from facskit.align import AlignSpec, align_face
    from facskit.faces import FaceTracker

    if crop not in VIDEO_CROPS:
        raise ValueError(f"unknown crop mode {crop!r}; choose from: {', '.join(VIDEO_CROPS)}")
    tracker = FaceTracker(detect_every=detect_every)
    spec = AlignSpec(kind="bmvc", size=size)
    segments = SegmentCrop(spec, max_drift) if crop == "track" else None

    def aligner(image: np.ndarray) -> list[tuple[Hashable, np.ndarray]]:
        out: list[tuple[Hashable, np.ndarray]] = []
        for face in tracker.update(image):
            if not getattr(face, "success", True):
                continue
            if segments is None:
                out.append((face.face_id, align_face(image, face.landmarks, spec).crop))
            else:
                segment, matrix = segments(face.face_id, face.landmarks)
                crop_image = align_face(image, face.landmarks, spec, matrix=matrix).crop
                out.append(((face.face_id, segment), crop_image))
        return out

    return aligner
