"""A background thread that prints a status line every few seconds while a block runs.

The chain's stages use it for their progress lines (``phonion chain: <stage>: ..., ETA ...``): the
work itself may run in other processes, so the line is read from files the work writes, on a timer.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["Ticker"]


class Ticker:
    """Context manager: every ``every_s`` seconds print ``prefix + self.status(elapsed_s)`` to stderr
    (nothing when ``status`` returns None); subclasses implement :meth:`status` and may override
    :meth:`start` (called once, before the first tick) for a first message."""

    prefix = ""

    def __init__(self, every_s: float, enabled: bool = True):
        self.every_s, self.enabled = float(every_s), enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def status(self, elapsed_s: float) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> None:
        """Called in the caller's thread when the block starts (default: nothing)."""

    def _loop(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.every_s):
            text = self.status(time.monotonic() - t0)
            if text:
                print(f"{self.prefix}{text}", file=sys.stderr, flush=True)

    def __enter__(self):
        if self.enabled:
            self.start()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
