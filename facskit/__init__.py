"""facskit: facial Action Unit (FACS) analysis with heatmap regression.

Importing facskit has no side effects and imports nothing heavy: torch, dlib and PyAV load on first use,
so ``facskit --help`` stays instant.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "Detector"]

if TYPE_CHECKING:  # pragma: no cover
    from facskit.analyze.detector import Detector


def __getattr__(name: str) -> Any:
    # Lazy re-export (PEP 562): `from facskit import Detector` works without importing torch up front.
    if name == "Detector":
        return import_module("facskit.analyze.detector").Detector
    raise AttributeError(f"module 'facskit' has no attribute {name!r}")
