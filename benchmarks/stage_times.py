"""Where each frame's time goes in ``facskit analyze``: every stage timed alone, then the pipelined engine.

    python benchmarks/stage_times.py [VIDEO] [--model default] [--backend auto] [--precision auto]

Part 1 runs the stages one after another on one thread (so their times add up and do not overlap) with
wrappers timing dlib's HOG detection, the landmark fit (dlib's ERT model run in numpy), the head pose, the
BMVC alignment, the network (batch 16) and the readout + rows. Part 2 runs the real pipelined engine
(``Detector.iter_chunks``) and reports its wall time, the process's CPU seconds over it (2.0 on 2 cores =
both busy) and frames/s. The load average is printed with both, because other work on the machine slows
every stage.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "WolfgangLanger_Pexels.mp4"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(totals: dict[str, float], name: str, function: Any) -> Any:
    """``function`` wrapped to add its wall time to ``totals[name]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return wrapper


def serial_stages(detector: Any, video: Path) -> tuple[dict[str, float], int]:
    """Seconds per stage over the whole video, each stage run on this thread only."""
    import numpy as np

    import facskit.faces.track as track_module
    from facskit.align import AlignSpec, align_faces
    from facskit.faces import FaceTracker
    from facskit.faces.detect import FaceDetector
    from facskit.faces.landmarks import LandmarkPredictor
    from facskit.io import iter_frames
    from facskit.targets import intensity_from_heatmaps

    totals: dict[str, float] = defaultdict(float)
    front = detector.front_end
    originals = (
        FaceDetector.candidates,
        FaceDetector.candidates_near,
        LandmarkPredictor.predict,
        track_module.head_pose,
    )
    detect = "detect (HOG every 5th frame: near the face, the whole frame every 3rd time)"
    FaceDetector.candidates = timed(totals, detect, FaceDetector.candidates)
    FaceDetector.candidates_near = timed(totals, detect, FaceDetector.candidates_near)
    LandmarkPredictor.predict = timed(totals, "landmarks (68 points, ERT)", LandmarkPredictor.predict)
    track_module.head_pose = timed(totals, "head pose (solvePnP)", track_module.head_pose)
    try:
        tracker = FaceTracker(
            detect_every=front.detect_every, detector=front.video_detector, predictor=front.predictor
        )
        spec = detector.backend.spec
        align = AlignSpec(kind=spec.alignment, size=spec.crop_size)  # type: ignore[arg-type]
        crops: list[np.ndarray] = []
        frames = 0
        decoded = iter_frames(video)
        while True:
            start = time.perf_counter()
            frame = next(decoded, None)
            totals["decode (PyAV)"] += time.perf_counter() - start
            if frame is None:
                break
            frames += 1
            start = time.perf_counter()
            faces = [f for f in tracker.update(frame.image) if f.success]
            totals["track (all of it)"] += time.perf_counter() - start
            if faces:
                start = time.perf_counter()
                batch, _, _ = align_faces(frame.image, np.stack([f.landmarks for f in faces]), align)
                totals["align (warpAffine)"] += time.perf_counter() - start
                crops.extend(batch)
        for first in range(0, len(crops), 16):
            batch = np.stack(crops[first : first + 16])
            start = time.perf_counter()
            maps = detector.backend.heatmaps(batch)
            totals[f"network ({detector.backend.name} {detector.backend.precision}, batch 16)"] += (
                time.perf_counter() - start
            )
            start = time.perf_counter()
            intensity_from_heatmaps(maps, spec.convention)
            totals["readout"] += time.perf_counter() - start
    finally:
        (
            FaceDetector.candidates,
            FaceDetector.candidates_near,
            LandmarkPredictor.predict,
            track_module.head_pose,
        ) = originals
    return dict(totals), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=VIDEO)
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    from facskit import Detector
    from facskit.device import cpu_model

    detector = Detector(model=args.model, backend=args.backend, precision=args.precision, quiet=True)
    detector.front_end.video_detector  # noqa: B018 - loaded before any timing
    print(f"# {cpu_model()}, {len(os.sched_getaffinity(0))} CPUs; {args.video.name}; {args.model}")
    print(f"load average at start: {loadavg()}")
    totals, frames = serial_stages(detector, args.video)
    tracked = totals.pop("track (all of it)")
    inside = sum(v for k, v in totals.items() if k.startswith(("detect", "landmarks", "head pose")))
    totals["tracking bookkeeping (association, grey copy, scene cuts)"] = tracked - inside
    print("\n| stage (serial, one thread) | ms per frame | share |\n|---|---|---|")
    whole = sum(totals.values())
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {name} | {1000 * seconds / frames:.2f} | {100 * seconds / whole:.0f}% |")
    print(
        f"| **sum** | **{1000 * whole / frames:.2f}** | {frames} frames, "
        f"{frames / whole:.1f} frames/s serial |"
    )
    print(f"\nload average after part 1: {loadavg()}")
    cpu, start = cpu_seconds(), time.perf_counter()
    rows = sum(len(chunk) for chunk in detector.iter_chunks(str(args.video)))
    wall, used = time.perf_counter() - start, cpu_seconds() - cpu
    print(
        f"pipelined engine: {rows} frames in {wall:.2f} s = {rows / wall:.1f} frames/s; "
        f"{used:.2f} CPU-s = {used / wall:.2f} cores busy on average; load average {loadavg()}"
    )


if __name__ == "__main__":
    main()
