"""A one-line progress display for long work: count, rate, ETA and named figures; quiet when disabled."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Progress:
    """Redraws one line on a terminal (at most 10 times a second); elsewhere prints a line every 10%."""

    def __init__(self, total: int, label: str, unit: str = "it", enabled: bool = True, stream: TextIO | None = None):
        self.total, self.label, self.unit, self.enabled = total, label, unit, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.fields: dict[str, str] = {}
        self.start = self._last = time.monotonic()
        self._last_decile = -1

    def update(self, n: int = 1, **fields: float | str) -> None:
        """Advance by n and set the figures shown after the count (floats get 4 significant digits)."""
        self.done += n
        self.fields.update({k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in fields.items()})
        if not self.enabled:
            return
        now = time.monotonic()
        decile = 10 * self.done // max(self.total, 1)
        if self.tty and (now - self._last >= 0.1 or self.done >= self.total):
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()
            self._last = now
        elif not self.tty and decile != self._last_decile:
            self.stream.write(self.line() + "\n")
            self._last_decile = decile

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        figures = " ".join(f"{k} {v}" for k, v in self.fields.items())
        return (
            f"{self.label} {self.done}/{self.total} {figures} | {rate:.3g} {self.unit}/s "
            f"| {_clock(elapsed)} elapsed, ETA {_clock(eta)}"
        ).replace("  ", " ")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
