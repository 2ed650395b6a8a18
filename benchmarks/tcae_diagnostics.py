"""What a TCAE can learn from a prepared cache, and what a trained one did learn (issue #7 diagnostics).

    python benchmarks/tcae_diagnostics.py ceiling CACHE            # what the data offers
    python benchmarks/tcae_diagnostics.py fields RUN CACHE         # what a pretrain-tcae run learnt

``ceiling`` answers two questions before any training:

* How much of a frame pair's difference is *motion* at all? Farneback optical flow (OpenCV) from the target
  back to the source, applied with facskit's own :func:`facskit.models.tcae.warp`, is the best a dense warp
  can do per pair; "after flow" is the L1 left over as a fraction of the L1 between the raw frames. Whatever
  flow cannot remove (wrinkles, teeth, shading) a warp-based objective never has to encode.
* Could a purely geometric code detect the AUs? The same linear probe as ``facskit probe`` (3
  subject-exclusive folds, occurrence = intensity >= 2, balanced logistic regression on standardised
  features) on the cache's aligned 68 landmarks, raw and minus each subject's mean. An AU embedding that
  captured the face's geometry would score near this; a random encoder is the floor ``facskit probe``
  prints.

``fields`` evaluates a run on 256 fixed same-sequence pairs per frame gap, BatchNorm in eval mode:
reconstruction ratio (L1 of tau(I_s) - I_t over L1 of I_s - I_t; 1 = the identity warp), the same for the
AU-changed and pose-changed faces, mean field sizes in pixels, and the landmark test: the fields sampled
at the target's landmarks against the true backward displacement (source landmark - target landmark).
"nonrigid" is that displacement minus its best affine fit (AU motion plus perspective), the part the AU
branch should carry; each end-point error (EPE, px) is printed next to the zero field's ("none"), so a
field that learnt nothing prints the same number twice. "shares" are where each field's magnitude lies
(facskit.tcae.regions: mobile parts / rest of face / outside the face, from the target's landmarks) next
to those regions' shares of the area: the grid criterion in numbers.

Scripts like these lived in scratch folders in earlier sessions and were lost with their machines; this
one is kept with the repository so every number in benchmarks/results/tcae.md can be recomputed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facskit.data.cache import PreparedCache
from facskit.data.folds import subject_folds
from facskit.models.warping import warp
from facskit.tcae.pairs import CachePairDataset, LandmarkResidual
from facskit.tcae.pretrain import load_tcae
from facskit.tcae.probe import OCCURRENCE, _linear_f1, centre_by_subject
from facskit.tcae.regions import REGIONS, face_regions, field_shares
from facskit.tcae.show import share_fields

GAPS = (5, 20, 40)
CACHE_CROP = 256  # prepared caches store 256 px crops; landmark columns are in crop pixels


def _landmarks(cache: PreparedCache) -> np.ndarray:
    """``(N, 68, 2)`` aligned landmarks in crop pixels."""
    return LandmarkResidual.of_index(cache.index).landmarks


def _pairs(cache: PreparedCache, gap: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random ``(i, i + gap)`` row pairs of the same subject and sequence, ``gap`` frames apart
    (rows ``gap`` apart whose frame numbers are not, in a cache with missing frames, are redrawn)."""
    subject = cache.index["subject"].astype(str).to_numpy()
    sequence = cache.index["sequence"].astype(str).to_numpy()
    frame = cache.index["frame"].to_numpy()
    pairs: list[tuple[int, int]] = []
    for _ in range(200 * count):
        i = int(rng.integers(len(subject) - gap))
        j = i + gap
        if subject[i] == subject[j] and sequence[i] == sequence[j] and frame[j] - frame[i] == gap:
            pairs.append((i, j))
            if len(pairs) == count:
                return np.array(pairs)
    raise SystemExit(f"fewer than {count} same-sequence pairs {gap} frames apart in this cache")


def _grey(image: torch.Tensor) -> np.ndarray:
    return cv2.cvtColor((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)


def flow_ceiling(cache: PreparedCache, size: int, pairs_per_gap: int = 128) -> None:
    images = CachePairDataset(cache, size)
    rng = np.random.default_rng(0)
    for gap in GAPS:
        source, target = images.batch(_pairs(cache, gap, pairs_per_gap, rng))
        fields = []
        for s, t in zip(source, target, strict=True):
            # target(p) ~ source(p + flow(p)): the backward field warp() takes, in pixels
            flow = cv2.calcOpticalFlowFarneback(_grey(t), _grey(s), None, 0.5, 3, 9, 5, 5, 1.1, 0)
            fields.append(torch.from_numpy(flow).permute(2, 0, 1) * 2 / (size - 1))
        warped = warp(source, torch.stack(fields).float())
        raw = (source - target).abs().mean().item()
        left = (warped - target).abs().mean().item() / raw
        print(f"  {size} px, gap {gap:2d}: mean |I_s - I_t| {raw:.4f}, after flow {left:.3f}")


def landmark_ceiling(cache: PreparedCache) -> None:
    index = cache.index
    aus = [c for c in index.columns if c.startswith("AU")]
    subjects = index["subject"].astype(str).to_numpy()
    labels = (index[aus].to_numpy(np.float64) >= OCCURRENCE).astype(np.float64)
    points = _landmarks(cache).reshape(len(index), -1)
    for name, x in (("landmarks", points), ("landmarks - subject mean", centre_by_subject(points, subjects))):
        scores = []
        for held_out in subject_folds(subjects, k=3, seed=0):
            test = np.isin(subjects, held_out)
            train = ~test
            scores.append(
                [_linear_f1(x[train], labels[train, a], x[test], labels[test, a]) for a in range(len(aus))]
            )
        per_au = np.nanmean(np.array(scores), axis=0)
        detail = " ".join(f"{a}:{v:.2f}" for a, v in zip(aus, per_au, strict=True))
        print(f"  linear probe on {name}: mean F1 {np.nanmean(per_au):.3f} ({detail})")


def _sample(field: torch.Tensor, points: np.ndarray, size: int) -> np.ndarray:
    """``field (B, 2, S, S)`` (normalised) at ``points (B, 68, 2)`` (px) -> ``(B, 68, 2)`` px."""
    grid = torch.from_numpy(points / (size - 1) * 2 - 1).float()[:, :, None, :]
    values = F.grid_sample(field, grid, mode="bilinear", align_corners=True)[..., 0].permute(0, 2, 1)
    return values.numpy() * (size - 1) / 2


def fields(run: Path, cache: PreparedCache, epoch: int | None) -> None:
    torch.set_num_threads(1)
    model, info = load_tcae(run, epoch)
    size = model.spec.input_size
    images = CachePairDataset(cache, size)
    landmarks = _landmarks(cache) * (size / CACHE_CROP)
    rng = np.random.default_rng(0)
    print(f"{info['path']}: step {info.get('step', '?')}, spec {model.spec.to_dict()}")

    def epe(field: np.ndarray, truth: np.ndarray) -> float:
        return float(np.linalg.norm(field - truth, axis=-1).mean())

    for gap in GAPS:
        pairs = _pairs(cache, gap, 256, rng)
        source, target = images.batch(pairs)
        with torch.no_grad():
            out = model(source, target)
        raw = (source - target).abs().mean().item()

        def ratio(image: torch.Tensor) -> float:
            return (image - target).abs().mean().item() / raw  # noqa: B023 (used inside this iteration)

        def pixels(field: torch.Tensor) -> float:
            return field.norm(dim=1).mean().item() * (size - 1) / 2  # noqa: B023

        at_source, at_target = landmarks[pairs[:, 0]], landmarks[pairs[:, 1]]
        truth = at_source - at_target
        nonrigid = LandmarkResidual(landmarks).nonrigid(pairs)
        named = share_fields(out)  # tau_A, alpha_A tau_A, tau_P, as tcae-show reports them
        gated_au = named["gated AU"]
        mouth = slice(48, 68)
        au_at, pose_at = _sample(gated_au, at_target, size), _sample(out.field_pose, at_target, size)
        print(
            f"  gap {gap:2d}: rec {ratio(out.reconstruction):.3f}, AU-only {ratio(out.au_changed):.3f}, "
            f"pose-only {ratio(out.pose_changed):.3f} | |tau_A| {pixels(out.field_au):.2f} px, "
            f"|alpha_A tau_A| {pixels(gated_au):.3f} px, |tau_P| {pixels(out.field_pose):.2f} px"
        )
        print(
            f"          EPE tau {epe(_sample(out.field, at_target, size), truth):.3f}"
            f" (none {epe(0 * truth, truth):.3f})"
            f" | nonrigid: gated AU {epe(au_at, nonrigid):.3f} (none {epe(0 * nonrigid, nonrigid):.3f}),"
            f" mouth: gated AU {epe(au_at[:, mouth], nonrigid[:, mouth]):.3f},"
            f" pose {epe(pose_at[:, mouth], nonrigid[:, mouth]):.3f}"
            f" (none {epe(0 * nonrigid[:, mouth], nonrigid[:, mouth]):.3f})"
        )
        regions = face_regions(at_target, size)
        parts = []
        for name, field in named.items():
            share, area = field_shares(field.norm(dim=1).numpy(), regions)
            parts.append(f"{name} " + "/".join(f"{v:.2f}" for v in np.nanmean(share, axis=0)))
        area_text = "/".join(f"{v:.2f}" for v in area.mean(axis=0))
        print(f"          shares ({'/'.join(REGIONS)}): area {area_text} | " + " | ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ceiling = commands.add_parser("ceiling", help="flow and landmark ceilings of a prepared cache")
    ceiling.add_argument("cache", type=Path)
    ceiling.add_argument("--sizes", default="64,128", help="input sizes for the flow ceiling")
    trained = commands.add_parser("fields", help="field diagnostics of a pretrain-tcae run")
    trained.add_argument("run", type=Path)
    trained.add_argument("cache", type=Path)
    trained.add_argument("--epoch", type=int, default=None)
    args = parser.parse_args(argv)
    cache = PreparedCache(args.cache)
    if args.command == "ceiling":
        print(f"{args.cache}: {len(cache.index)} frames, {cache.index['subject'].nunique()} subjects")
        for size in (int(s) for s in args.sizes.split(",")):
            flow_ceiling(cache, size)
        landmark_ceiling(cache)
    else:
        fields(args.run, cache, args.epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
