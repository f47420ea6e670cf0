"""Console progress and the run log: steps, loss, accuracy and ETA; `--quiet` silences the console only."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Reporter:
    """Writes messages to the console (unless quiet) and to `log.txt` of the run (always)."""

    def __init__(self, log_path: str | Path | None = None, quiet: bool = False, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed in close()
        self._live = False

    def info(self, message: str) -> None:
        """A line for the log and the console."""
        self._clear_live()
        if self._log:
            self._log.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    def live(self, message: str) -> None:
        """A status line that replaces itself on a terminal; skipped when not a terminal or quiet."""
        if self.quiet or not self.tty:
            return
        self.stream.write("\r\033[K" + message)
        self.stream.flush()
        self._live = True

    def _clear_live(self) -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self._live = False

    def close(self) -> None:
        self._clear_live()
        if self._log:
            self._log.close()
            self._log = None


class ETA:
    """Remaining time from the average pace so far."""

    def __init__(self, total: int, done: int = 0):
        self.total, self.start_done, self.start = total, done, time.perf_counter()

    def remaining(self, done: int) -> float | None:
        progressed = done - self.start_done
        if progressed <= 0:
            return None
        return (time.perf_counter() - self.start) / progressed * (self.total - done)
