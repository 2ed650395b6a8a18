"""What a run reports: the per-epoch ``metrics.csv``, TensorBoard events, and the progress line on stderr.

Only rank 0 constructs these with ``enabled=True``; on other ranks every method is a no-op, so the loop
calls them unconditionally.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from facskit.errors import FacskitError

__all__ = ["MetricsLog", "Progress"]


class MetricsLog:
    """``metrics.csv`` (one row per finished epoch, rewritten whole so a resumed run never duplicates an
    epoch) and TensorBoard scalars under ``tb/`` (skipped with a note when tensorboard is missing)."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, note: Callable[[str], None]) -> None:
        self.path = run_dir / "metrics.csv"
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self._writer: Any = None
        self._want_tensorboard = tensorboard and enabled
        self._note = note
        self._run_dir = run_dir

    def start(self, first_epoch: int, global_step: int) -> None:
        """Keep the rows of epochs before ``first_epoch`` (a resume) and open TensorBoard, dropping any
        events after ``global_step`` that an interrupted run wrote past its last checkpoint."""
        if not self.enabled:
            return
        if first_epoch > 0 and self.path.exists():
            self.history = [row for row in self._read_history() if int(row["epoch"]) <= first_epoch]
        if self._want_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._note("tensorboard is not installed; writing metrics.csv only")
            else:
                purge = global_step if global_step > 0 else None
                self._writer = SummaryWriter(str(self._run_dir / "tb"), purge_step=purge)

    def _read_history(self) -> list[dict[str, Any]]:
        """The rows of an existing ``metrics.csv``; a damaged one is named rather than a pandas traceback."""
        try:
            old = pd.read_csv(self.path)
            rows = old.to_dict("records")
            for row in rows:
                int(row["epoch"])
        except Exception as error:  # pandas raises many types (EmptyDataError, ParserError, KeyError)
            reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            raise FacskitError(
                f"{self.path}: unreadable metrics log ({type(error).__name__}: {reason}); delete it to "
                "resume (the checkpoint holds the run; only the earlier epochs' rows of the log are lost)"
            ) from None
        return rows

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.history.append(dict(row))
        tmp = self.path.with_suffix(".csv.tmp")
        pd.DataFrame(self.history).to_csv(tmp, index=False)
        tmp.replace(self.path)
        if self._writer is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, int | float):
                    group = "val" if key.startswith("val_") else "epoch"
                    self._writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """One stderr line per logged step: epoch, step, loss terms, items/s and ETA; silent when disabled.

    ``command`` prefixes notes (``facskit train: resuming ...``) and ``unit`` names what a step processes
    (images for the heatmap trainer, pairs for TCAE). :meth:`step` redraws at most every ``every_seconds``;
    :meth:`report` prints a line now (a trainer that logs every N steps).
    """

    def __init__(
        self, enabled: bool, every_seconds: float = 2.0, command: str = "facskit train", unit: str = "img"
    ) -> None:
        self.enabled = enabled
        self.every_seconds = every_seconds
        self.command = command
        self.unit = unit
        self._start = time.perf_counter()
        self._last_print = 0.0
        self._session_steps = 0
        self.total_steps = 0
        self._done = 0
        self._images_per_step = 0
        self._is_tty = sys.stderr.isatty()

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"{self.command}: {text}", file=sys.stderr, flush=True)

    def start(self, total_steps: int, done_steps: int, images_per_step: int) -> None:
        self._start = time.perf_counter()
        self.total_steps, self._done, self._images_per_step = total_steps, done_steps, images_per_step

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def advance(self) -> None:
        """Count one optimiser step (for the rate and the ETA)."""
        self._session_steps += 1
        self._done += 1

    def _line(self, epoch: int, epochs: int, step: int, steps: int, details: str) -> str:
        now = self.elapsed()
        rate = self._session_steps / max(now, 1e-9)  # steps/s in this session (resumes restart the clock)
        eta = (self.total_steps - self._done) / max(rate, 1e-9)
        return (
            f"epoch {epoch + 1}/{epochs} step {step}/{steps} {details} "
            f"{rate * self._images_per_step:.1f} {self.unit}/s ETA {_clock(eta)}"
        )

    def step(self, epoch: int, epochs: int, step: int, steps: int, loss: float, lr: float) -> None:
        self.advance()
        if not self.enabled:
            return
        now = self.elapsed()
        if now - self._last_print < self.every_seconds and step != steps:
            return
        self._last_print = now
        line = self._line(epoch, epochs, step, steps, f"loss {loss:.4g} lr {lr:.2g}")
        end = "\r" if self._is_tty and step != steps else "\n"
        print(line, end=end, file=sys.stderr, flush=True)

    def report(self, epoch: int, epochs: int, step: int, steps: int, terms: dict[str, float]) -> None:
        """Print the progress line with these loss ``terms`` now."""
        if self.enabled:
            details = " ".join(f"{k} {v:.4f}" for k, v in terms.items())
            print(self._line(epoch, epochs, step, steps, details), file=sys.stderr, flush=True)

    def epoch_summary(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {row['epoch']} done: train loss {row['train_loss']:.4g}"]
        if "val_icc" in row:
            parts.append(f"val loss {row['val_loss']:.4g} ICC {row['val_icc']:.3f} MAE {row['val_mae']:.3f}")
        parts.append(f"{_clock(row['seconds'])} elapsed")
        print(f"{self.command}: " + ", ".join(parts), file=sys.stderr, flush=True)
