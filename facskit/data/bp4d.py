"""BP4D / FERA 2015 intensity reader: image sequences plus one intensity file per AU and sequence.

Layout (DESIGN.md section 3, and the FERA 2015 release as public loaders read it)::

    ROOT/.../F001/T1/0001.jpg                         41 subjects (F001.., M001..), tasks T1..T8
    ROOT/.../AU06/F001_T1_AU06.csv                    lines "frame,intensity", no header, 9 = unknown

The frames folder and the label folder may sit at any depth below ROOT (the release ships them as e.g.
``BP4D-training/`` and ``AU-Intensity-Codes3.0/`` or ``AU Intensity Codes3.0/``), so ROOT is walked once and
both are found by name: a folder ``T<n>`` inside a folder ``F001``/``M001`` holding images is a sequence,
a file ``<subject>_<task>_AU<nn>.csv`` is a label file wherever it lies. Frame numbers in the label files
are the numbers in the image names (``0001.jpg`` is frame 1; zero padding does not matter). A header line,
if present, is skipped. Occurrence files (``F001_T1.csv`` without ``_AU``) are not intensity labels and are
ignored.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from facskit.aus import BP4D_AUS
from facskit.data.index import (
    MAX_FRAME_NUMBER,
    DatasetIndex,
    Problem,
    concat_sequences,
    join_labels,
    read_intensity_file,
    sequence_table,
)
from facskit.errors import DatasetError
from facskit.io.media import IMAGE_EXTENSIONS

# FERA 2015 codes frames it could not rate with 9.
UNKNOWN_CODE = 9.0

_SUBJECT = re.compile(r"^[FM]\d{3}$", re.IGNORECASE)
_TASK = re.compile(r"^T\d+$", re.IGNORECASE)
_LABEL = re.compile(r"^([FM]\d{3})_(T\d+)_AU(\d+)\.csv$", re.IGNORECASE)


def read_bp4d(root: str | Path, aus: tuple[int, ...] = BP4D_AUS) -> DatasetIndex:
    """Index a BP4D / FERA 2015 copy: one sequence per subject and task, one row per image.

    Problems listed (the rest is indexed): label files with junk lines, duplicate frames, frames with no
    image, missing AU files, sequences or subjects with no labels, labels without images, image names
    without a frame number, empty image files. Raises :class:`DatasetError` when nothing BP4D-like is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    problems: list[Problem] = []
    images: dict[tuple[str, str], list[Path]] = defaultdict(list)
    labels: dict[tuple[str, str], dict[int, Path]] = defaultdict(dict)
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(directory)
        if _TASK.match(here.name) and _SUBJECT.match(here.parent.name):
            key = (here.parent.name.upper(), here.name.upper())
            images[key].extend(
                here / f for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_EXTENSIONS
            )
        for name in sorted(filenames):
            match = _LABEL.match(name)
            if not match:
                continue
            key = (match.group(1).upper(), match.group(2).upper())
            code = int(match.group(3))
            if code in labels[key]:
                problems.append(
                    Problem(
                        str(here / name),
                        f"second label file for AU{code} (first: {labels[key][code]}); ignored",
                    )
                )
                continue
            labels[key][code] = here / name
    images = {k: v for k, v in images.items() if v}
    if not images and not labels:
        raise DatasetError(
            f"{root} is not a BP4D root: no F001/T1/*.jpg frames and no *_T1_AU06.csv labels found"
        )

    labelled_subjects = {s for (s, _), files in labels.items() if any(c in aus for c in files)}
    reported_subjects: set[str] = set()
    tables = []
    for key in sorted(set(images) | set(labels)):
        subject, task = key
        files = {c: p for c, p in labels.get(key, {}).items() if c in aus}
        paths = images.get(key)
        if not paths:
            if files:
                first = next(iter(files.values()))
                problems.append(
                    Problem(str(first), f"labels but no frames folder {subject}/{task}/; skipped")
                )
            continue
        if not files:
            if subject not in labelled_subjects:
                if subject not in reported_subjects:
                    reported_subjects.add(subject)
                    problems.append(
                        Problem(
                            str(paths[0].parent.parent),
                            "subject with no labels (no *_AUnn.csv files); skipped",
                        )
                    )
            else:
                problems.append(
                    Problem(str(paths[0].parent), f"sequence with no labels for {subject}_{task}; skipped")
                )
            continue
        numbered: dict[int, Path] = {}
        for path in paths:
            try:
                number = int(path.stem)
            except ValueError:
                problems.append(Problem(str(path), "image name is not a frame number; ignored"))
                continue
            if abs(number) > MAX_FRAME_NUMBER:
                problems.append(Problem(str(path), f"frame number beyond {MAX_FRAME_NUMBER}; ignored"))
                continue
            if number in numbered:
                problems.append(
                    Problem(str(path), f"duplicate frame {number} (also {numbered[number].name}); ignored")
                )
                continue
            numbered[number] = path
            if path.stat().st_size == 0:
                problems.append(Problem(str(path), "unreadable frame: empty file"))
        if not numbered:
            continue
        frames = np.array(sorted(numbered), dtype=np.int64)
        values: dict[int, np.ndarray] = {}
        for code in aus:
            path = files.get(code)
            if path is None:
                problems.append(
                    Problem(
                        str(_expected_label_path(labels, code, subject, task, root)),
                        f"missing AU file: AU{code} unknown for {subject}_{task}",
                    )
                )
                continue
            parsed = read_intensity_file(path, problems, unknown=(UNKNOWN_CODE,))
            if parsed is None:
                continue
            values[code] = join_labels(
                frames, parsed, path, problems, what=f"{len(frames)} images of {subject}/{task}"
            )
        sources = [str(numbered[f]) for f in frames.tolist()]
        tables.append(
            sequence_table(subject, task, frames, sources, np.zeros(len(frames), np.int64), values, aus)
        )
    return DatasetIndex("BP4D", root, tuple(aus), concat_sequences(tables, tuple(aus), False), problems)


def _expected_label_path(
    labels: dict[tuple[str, str], dict[int, Path]], code: int, subject: str, task: str, root: Path
) -> Path:
    """Where the missing file would be: beside this AU's other files if any, else beside this sequence's."""
    name = f"{subject}_{task}_AU{code:02d}.csv"
    for files in labels.values():
        if code in files:
            return files[code].parent / name
    for files in labels.get((subject, task), {}).values():
        return files.parent.parent / f"AU{code:02d}" / name
    return root / f"AU{code:02d}" / name
