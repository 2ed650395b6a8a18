"""facskit.data: dataset readers, the prepared cache, ``facskit prepare`` and subject-exclusive folds.

Readers turn a dataset copy into a :class:`DatasetIndex` (frames, labels, problems); ``prepare_dataset``
turns an index into a :class:`PreparedCache` on disk; ``subject_folds`` and ``fold_split`` make the
papers' subject-exclusive protocols. Importing this package loads numpy and pandas only.
"""

from facskit.data.bp4d import read_bp4d
from facskit.data.cache import PreparedCache
from facskit.data.disfa import read_disfa
from facskit.data.folder import read_folder
from facskit.data.folds import (
    FERA2015_DEVEL_SUBJECTS,
    FERA2015_TRAIN_SUBJECTS,
    fera2015_split,
    fold_split,
    subject_folds,
)
from facskit.data.index import DatasetIndex, Problem
from facskit.data.prepare import PrepareSummary, prepare_dataset

__all__ = [
    "FERA2015_DEVEL_SUBJECTS",
    "FERA2015_TRAIN_SUBJECTS",
    "DatasetIndex",
    "PrepareSummary",
    "PreparedCache",
    "Problem",
    "fera2015_split",
    "fold_split",
    "prepare_dataset",
    "read_bp4d",
    "read_dataset",
    "read_disfa",
    "read_folder",
    "subject_folds",
]

# Dataset formats by the name the CLI and configs use.
READERS = {"disfa": read_disfa, "bp4d": read_bp4d, "fera2015": read_bp4d, "folder": read_folder}


def read_dataset(format: str, root: str) -> DatasetIndex:
    """Read ``root`` with the reader for ``format`` (``disfa``, ``bp4d``/``fera2015`` or ``folder``)."""
    from facskit.errors import UsageError

    reader = READERS.get(format.lower())
    if reader is None:
        raise UsageError(f"unknown dataset format {format!r}; choose from: {', '.join(READERS)}")
    return reader(root)
