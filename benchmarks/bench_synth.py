"""Benchmark facskit.synth: frames/s, dlib detection rate and landmark error (mean % of IOD).

Run: python benchmarks/bench_synth.py [--frames 60] [--out benchmarks/results/synth.md]
Synthetic: frames with |yaw| <= 20 degrees from random sequences; texture mode: WolfgangLanger_Pexels.mp4.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from facskit.synth import FaceRenderer
from facskit.synth.sequence import random_aus, random_still
from facskit.synth.texture import animate_face, dlib_models, iter_texture_faces
from facskit.synth.writers import write_dataset

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def dlib_scores(images: list[np.ndarray], truths: list[np.ndarray]) -> tuple[float, float]:
    """Detection rate and mean landmark error (% IOD, outer eye corners) of dlib on the frames it finds."""
    import dlib

    detector, predictor = dlib_models()
    found, errors = 0, []
    for image, truth in zip(images, truths, strict=True):
        faces = detector(image, 0)
        if not faces:
            continue
        found += 1
        shape = predictor(image, max(faces, key=lambda r: r.area()))
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)
        iod = np.linalg.norm(truth[45] - truth[36])
        errors.append(float(np.linalg.norm(points - truth, axis=1).mean() / iod * 100))
    del dlib
    return found / max(len(images), 1), float(np.mean(errors)) if errors else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synth.md"))
    args = parser.parse_args()
    lines = []
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?"
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_dataset(Path(tmp) / "p", "bp4d", subjects=2, frames=args.frames // 2, seed=0, quiet=True)
        fps_param = args.frames / (time.perf_counter() - start)
        sources = Path(tmp) / "sources"
        sources.mkdir()
        (sources / "WolfgangLanger_Pexels.mp4").symlink_to(MEDIA / "WolfgangLanger_Pexels.mp4")
        start = time.perf_counter()
        write_dataset(
            Path(tmp) / "t", "bp4d", subjects=1, frames=args.frames // 2, seed=0, textures=sources, quiet=True
        )
        fps_texture = (args.frames // 2) / (time.perf_counter() - start)
    renderer = FaceRenderer(256)
    rng = np.random.default_rng(123)
    images, truths = [], []
    for i in range(args.frames):
        image, lm = random_still(renderer, rng, i, 40)
        images.append(image)
        truths.append(lm.astype(np.float64))
    rate_s, err_s = dlib_scores(images, truths)
    images, truths = [], []
    faces = iter_texture_faces(MEDIA / "WolfgangLanger_Pexels.mp4", 256)
    for i in range(args.frames):
        crop, base = next(faces)
        image, lm = animate_face(crop, base, random_aus(rng, 40), seed=i)
        images.append(image)
        truths.append(lm.astype(np.float64))
    rate_t, err_t = dlib_scores(images, truths)
    lines += [
        "# facskit.synth benchmark",
        "",
        f"CPU: {model} ({cores} cores visible); "
        "other jobs may share the machine, so frames/s are lower bounds.",
        "",
        f"Command: `python benchmarks/bench_synth.py --frames {args.frames}`",
        "",
        "| measure | parametric face | --textures (WolfgangLanger_Pexels.mp4) |",
        "|---|---|---|",
        f"| generator frames/s at 256 px (bp4d writer, JPEG) | {fps_param:.1f} | {fps_texture:.1f} |",
        f"| dlib HOG detection rate (upsample 0) | {rate_s:.1%} (abs(yaw) <= 20) | {rate_t:.1%} |",
        f"| dlib 68-point error vs ground truth, mean % IOD | {err_s:.2f} | {err_t:.2f} |",
        "",
        "Texture ground truth is dlib's own landmarks on the source plus the AU displacement, so its error",
        "measures what the warp and the cues do to dlib, not absolute accuracy.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
