"""``facskit teach INPUTS... --out CACHE``: label real faces with the blendshape teacher for training.

Examples::

    facskit teach photos/ clips/*.mp4 --out cache/real --frame-step 3
    facskit train default-model --data cache/synth data.extra_caches='[cache/real]' --out runs/mixed

Every face of every image and of every ``--frame-step``-th video frame is found by facskit's own front end,
aligned as ``facskit prepare`` aligns it, and labelled with AU pseudo-intensities mapped from MediaPipe's
blendshapes (facskit/teacher/au_map.py says which AUs and how; the AUs the teacher cannot see are left
unknown, so training ignores them there). Needs the ``teach`` extra: ``pip install -e ".[teach]"``.
Interrupt and rerun the same command to resume: finished files are kept. Exit code 0 when every input was
read, 1 when some could not be.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="images, videos, folders or glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="cache folder to create or resume")
    parser.add_argument(
        "--frame-step", type=int, default=1, help="use every N-th video frame (default 1: every frame)"
    )
    parser.add_argument(
        "--detect-every", type=int, default=5, help="run the face detector every N frames, track between"
    )
    parser.add_argument("--aus", help="AU columns of the cache, e.g. 1,2,4,12 (default: the default model's)")
    parser.add_argument(
        "--au-map", help="blendshape -> AU map (JSON, tools/fit_teacher_map.py); default: the shipped one"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line; summary only")


def run(args: argparse.Namespace) -> int:
    from facskit.aus import parse_aus
    from facskit.teacher.au_map import load_au_map
    from facskit.teacher.teach import teach

    aus = parse_aus(args.aus) if args.aus else None
    summary = teach(
        args.inputs, args.out, frame_step=args.frame_step, aus=aus, detect_every=args.detect_every,
        au_map=load_au_map(args.au_map) if args.au_map else None,
        progress=not args.quiet,
    )  # fmt: skip
    if args.quiet:
        print(f"teach: {summary.text()}", file=sys.stderr)
    return 1 if summary.problems else 0
