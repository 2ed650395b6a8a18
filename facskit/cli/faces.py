"""``facskit faces PATH... --out FILE.csv``: faces, 68 landmarks and head pose, one CSV row per face per
frame (the columns are `facskit.faces.FACE_COLUMNS`). A bad input costs one line on stderr and exit code
1; the other inputs are still processed. The CSV appears atomically when the run ends."""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from facskit.cli import add_deprecated_alias
from facskit.errors import FacskitError, UsageError

# Decimal places per column: sub-pixel landmarks, microsecond timestamps; keeps the CSV small.
DECIMALS = {"timestamp": 6, "score": 4, "yaw": 3, "pitch": 3, "roll": 3}
COORDINATE_DECIMALS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images, videos, folders or glob patterns")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="CSV file to write (replaced atomically)"
    )
    parser.add_argument(
        "--frame-step", type=int, default=1, metavar="N", help="process every N-th video frame"
    )
    add_deprecated_alias(parser, "--every", "--frame-step", type=int)
    parser.add_argument(
        "--detect-every",
        type=int,
        default=5,
        metavar="N",
        help="run the face detector every N processed frames (near the tracked faces; over the whole "
        "frame every 3N)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _cell(column: str, value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return round(value, DECIMALS.get(column, COORDINATE_DECIMALS))
    return value


def _report(error: FacskitError) -> None:
    print(f"facskit faces: error: {error}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.frame_step < 1 or args.detect_every < 1:
        raise UsageError("--frame-step and --detect-every must be at least 1")
    out: Path = args.out
    if not out.parent.resolve().is_dir():
        raise UsageError(f"{out}: output folder {out.parent} does not exist")

    from facskit.faces import FACE_COLUMNS, FaceFrontEnd, face_rows
    from facskit.io import MediaFile, Progress, expand_path, probe

    failures = 0
    media: list[MediaFile] = []
    seen: set[Path] = set()
    for path in args.paths:
        try:
            for item in expand_path(path):
                if item.path.resolve() not in seen:
                    seen.add(item.path.resolve())
                    media.append(item)
        except FacskitError as error:
            _report(error)
            failures += 1
    if not media:
        raise UsageError("no readable input paths")

    total = 0
    for item in media:
        try:
            frames = probe(item).frame_count
        except FacskitError:
            frames = 1  # reported when it is processed
        total += math.ceil((frames or 0) / args.frame_step)

    front_end = FaceFrontEnd(detect_every=args.detect_every)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with (
            os.fdopen(handle, "w", newline="") as stream,
            Progress(total or None, quiet=args.quiet) as progress,
        ):
            writer = csv.DictWriter(stream, fieldnames=FACE_COLUMNS)
            writer.writeheader()
            for item in media:
                name = str(item.path)
                try:
                    for frame, faces in front_end.iter_faces(item, frame_step=args.frame_step):
                        for row in face_rows(name, frame.index, frame.timestamp, faces):
                            writer.writerow({column: _cell(column, value) for column, value in row.items()})
                        progress.update()
                except FacskitError as error:
                    _report(error)
                    failures += 1
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return 1 if failures else 0
