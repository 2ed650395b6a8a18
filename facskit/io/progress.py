"""A tiny progress line on stderr: count, rate and ETA, redrawn at most a few times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_INTERVAL = 0.5  # seconds between redraws: often enough to look alive, rare enough to cost nothing


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


class Progress:
    """Count work units and show `label 120/472 frames 143.2 frames/s ETA 0:02` on stderr.

    `total` may be None (unknown length: no ETA) and may grow with `add_total` as more files are probed.
    With quiet=True nothing is ever written. Use as a context manager or call `close()` for the final line.
    """

    def __init__(
        self,
        total: int | None = None,
        unit: str = "frames",
        quiet: bool = False,
        label: str = "",
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.unit = unit
        self.quiet = quiet
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._closed = False

    def add_total(self, extra: int) -> None:
        self.total = (self.total or 0) + extra

    @property
    def rate(self) -> float:
        """Units per second since the start."""
        elapsed = time.perf_counter() - self._start
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        text = f"{done} {self.unit} {rate:.1f} {self.unit}/s"
        if self.total and rate > 0 and self.count <= self.total:
            text += f" ETA {_duration((self.total - self.count) / rate)}"
        return f"{self.label} {text}" if self.label else text

    def update(self, count: int = 1) -> None:
        self.count += count
        now = time.perf_counter()
        # Non-interactive streams (logs) get a line every 10 s instead of a carriage-return redraw.
        interval = REDRAW_INTERVAL if self._interactive else 10.0
        if not self.quiet and now - self._last_draw >= interval:
            self._last_draw = now
            self._draw(final=False)

    def _draw(self, final: bool) -> None:
        end = "\n" if final or not self._interactive else ""
        prefix = "\r\033[K" if self._interactive else ""
        self.stream.write(f"{prefix}{self.line()}{end}")
        self.stream.flush()

    def close(self) -> None:
        if not self._closed and not self.quiet:
            self._draw(final=True)
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
