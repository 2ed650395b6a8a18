"""facskit.analyze: per-frame AU intensities for media (``Detector``), the result table (``AUResult``,
``read_result``, ``write_result``), plots, the HTML report and the batch runner behind ``facskit analyze``.

Names are re-exported lazily (PEP 562), so importing the package loads neither torch nor dlib.
"""

from typing import TYPE_CHECKING

from facskit.lazy import lazy_exports

__all__ = ["AUResult", "Detector", "read_result", "write_result"]

_HOMES = {
    "Detector": "facskit.analyze.detector",
    "AUResult": "facskit.analyze.results",
    "read_result": "facskit.analyze.result_files",
    "write_result": "facskit.analyze.result_files",
}

if TYPE_CHECKING:  # pragma: no cover
    from facskit.analyze.detector import Detector
    from facskit.analyze.result_files import read_result, write_result
    from facskit.analyze.results import AUResult


__getattr__ = lazy_exports(__name__, _HOMES)
