"""``facskit analyze``: per-frame AU intensities for images and videos, one result file per input.

    facskit analyze interview.mp4 photos/ --out results/
    facskit analyze clips/*.mp4 --out results/ --model my.ckpt --faces largest --format parquet --smooth 5

Rerunning with the same ``--out`` skips inputs finished by the same file and options and resumes an
interrupted video after its last written chunk. ``--backend``/``--precision`` left at ``auto`` take the
ones the folder's results were made with, so a resumed file is never half one backend and half another;
other explicit ones are refused. One run writes a folder at a time (a second is refused). Exit code 0 when
every input was analysed, 1 when some could not be (the others are kept).
"""

from __future__ import annotations

import argparse
import sys

from facskit.aus import OCCURRENCE_THRESHOLD
from facskit.cli import add_deprecated_alias
from facskit.errors import UsageError


def _threshold(text: str) -> float | dict[str, float]:
    """``2`` or ``AU06=1.5,AU12=2.5`` (unlisted AUs keep :data:`facskit.aus.OCCURRENCE_THRESHOLD`)."""
    if "=" not in text:
        return float(text)
    out: dict[str, float] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = float(value)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="images, videos, folders or glob patterns")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created; reused to resume)"
    )
    parser.add_argument(
        "--model",
        default="default",
        help="'default', a checkpoint, an exported .onnx file or a registry name",
    )
    parser.add_argument(
        "--faces", choices=("all", "largest"), default="all", help="all faces or the largest one"
    )
    parser.add_argument(
        "--detect-every",
        type=int,
        default=5,
        metavar="N",
        help="run the face detector every N analysed frames (near the tracked faces; over the whole frame "
        "every 3N), track landmarks between (default 5)",
    )
    add_deprecated_alias(parser, "--every", "--detect-every", type=int)
    parser.add_argument(
        "--frame-step", type=int, default=1, metavar="N", help="analyse every N-th frame only (default 1)"
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop each video after N frames")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="result file format")
    parser.add_argument(
        "--openface-columns",
        action="store_true",
        help="OpenFace 2.0 column names (frame from 1, confidence, success, AU06_r, AU06_c)",
    )
    parser.add_argument(
        "--overlay-video", action="store_true", help="write <name>.overlay.mp4 with AU heatmaps"
    )
    parser.add_argument(
        "--overlay-aus", default=None, help="AUs blended into the overlay, e.g. 6,12 (default all)"
    )
    parser.add_argument(
        "--save-heatmaps", action="store_true", help="store raw heatmaps (float16 .npz per chunk)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available, else the CPU; default), cpu or cuda[:N]"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="faces per network call (no effect on results)"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="inference runtime; auto: the fastest one that passes the accuracy check on this machine",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="auto: the fastest path whose AUs stay within 0.05 mean / 0.25 max of fp32 (checked, cached)",
    )
    parser.add_argument(
        "--serial", action="store_true", help="run decode, tracking and the network in one thread (debugging)"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="fan files and time chunks of long videos out over a Ray cluster (ADDRESS, or a local one)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Ray tasks in flight (default: cluster CPUs / task CPUs)"
    )
    parser.add_argument(
        "--cpus-per-task",
        type=int,
        default=1,
        help="CPUs Ray reserves per task; its threads are capped to them (2+ runs the pipelined engine)",
    )
    parser.add_argument(
        "--smooth", type=int, default=0, help="centred moving median over N frames per face (off)"
    )
    parser.add_argument(
        "--calibrate", action="store_true", help="subtract each face's 5th-percentile intensity per AU (off)"
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=OCCURRENCE_THRESHOLD,
        help=f"occurrence threshold: {OCCURRENCE_THRESHOLD:g} or AU06=1.5,AU12=2.5",
    )
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        help="frames per resumable chunk (default 500: ~20 s of video)",
    )
    parser.add_argument("--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace) -> int:
    import warnings
    from pathlib import Path

    from facskit.analyze.detector import Detector
    from facskit.analyze.model_source import concrete_device
    from facskit.analyze.pipeline import DEFAULT_CHUNK_FRAMES
    from facskit.analyze.runner import OutputOptions, RaySettings, analyze_to_dir
    from facskit.aus import parse_aus

    if args.chunk_frames is None:
        args.chunk_frames = DEFAULT_CHUNK_FRAMES
    if args.chunk_frames < 1 or (args.max_frames is not None and args.max_frames < 1):
        raise UsageError("--chunk-frames and --max-frames must be >= 1")
    if args.cpus_per_task < 1:  # checked before --ray starts a cluster
        raise UsageError(f"--cpus-per-task must be >= 1, not {args.cpus_per_task}")
    args.backend, args.precision = _folder_backend(args.out, args.backend, args.precision)
    if args.ray is not None:
        from facskit.analyze.distributed import start_ray
        from facskit.runtime.check import always_torch

        # Workers warm up meanwhile, with torch only where the options pin it (auto: usually ONNX Runtime).
        args.device = concrete_device(args.device, args.model)
        with_torch = not args.model.lower().endswith(".onnx") and always_torch(
            args.device, args.backend, args.precision
        )
        start_ray(args.ray, args.detect_every, args.cpus_per_task, args.workers, with_torch=with_torch)
    with warnings.catch_warnings():
        if args.quiet:
            warnings.simplefilter("ignore")
        detector = Detector(
            model=args.model,
            device=args.device,
            detect_every=args.detect_every,
            faces=args.faces,
            batch_size=args.batch_size,
            backend=args.backend,
            smoothing=args.smooth or None,
            threshold=args.threshold,
            calibration=True if args.calibrate else None,
            frame_step=args.frame_step,
            precision=args.precision,
            pipelined=not args.serial,
            quiet=args.quiet,
        )
    options = OutputOptions(
        fmt=args.format,
        openface_columns=args.openface_columns,
        overlay_video=args.overlay_video,
        overlay_aus=parse_aus(args.overlay_aus) if args.overlay_aus else None,
        save_heatmaps=args.save_heatmaps,
        max_frames=args.max_frames,
        chunk_frames=args.chunk_frames,
    )

    def log(message: str) -> None:
        if not args.quiet or "error" in message:
            print(message, file=sys.stderr)

    if args.ray is not None:
        from facskit.analyze.distributed import stop_ray

        ray = RaySettings(address=args.ray, workers=args.workers, cpus_per_task=args.cpus_per_task)
        try:
            report = analyze_to_dir(detector, args.inputs, Path(args.out), options, log=log, ray=ray)
        finally:
            stop_ray()
    else:
        report = analyze_to_dir(detector, args.inputs, Path(args.out), options, log=log)
    if not args.quiet:
        print(
            f"{len(report.written)} analysed, {len(report.skipped)} skipped, "
            f"{len(report.errors)} with errors; results in {args.out}",
            file=sys.stderr,
        )
    return report.exit_code


def _folder_backend(out: str, backend: str, precision: str) -> tuple[str, str]:
    """The folder's (backend, precision) where the user left them at ``auto`` and they agree with what was
    given: an auto choice made afresh (the fastest path on this machine) could differ from the one the
    folder's results and parts were made with, and the run would be refused for mixing them."""
    from facskit.analyze.outdir import recorded_backend

    if "auto" not in (backend, precision):
        return backend, precision
    found = recorded_backend(out)
    if found is None or backend not in ("auto", found[0]) or precision not in ("auto", found[1]):
        return backend, precision
    return found
