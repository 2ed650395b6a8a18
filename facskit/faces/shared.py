"""One face front end per process and detection interval, shared by every analysis, export check and int8
calibration that needs faces found in media."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from facskit.faces.stream import FaceFrontEnd


@functools.cache
def shared_front_end(detect_every: int) -> FaceFrontEnd:
    """dlib's models take seconds to load and are read-only: every user in a process shares them (a fresh
    tracker is still made per input, so no state leaks between inputs)."""
    from facskit.faces.stream import FaceFrontEnd

    return FaceFrontEnd(detect_every=detect_every)
