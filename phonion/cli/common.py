"""Options and output helpers shared by several ``phonion`` subcommands (defined once, read from the layers below).

With ``--json`` stdout carries the JSON object alone: :func:`json_stdout` (entered by ``phonion.cli.main.main``)
points file descriptor 1 and ``sys.stdout`` at stderr while the command runs, so banners that libraries print
while loading models (CHGNet, mace, cuequivariance; Python or C level, or child processes) go to stderr; the
command's JSON reaches the real stdout through :func:`emit_json` — or through a plain
``print(json.dumps(...))``, which the sieve recognises as one whole JSON document.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

from phonion.md.io import FORMATS

__all__ = ["add_time_options", "emit_json", "json_stdout", "stdout_to_stderr"]

_REAL = []  # stack of _Sieve objects while --json commands run


def add_time_options(p) -> None:
    """``--timestep-fs``, ``--file-stride`` and ``--format`` (choices: the reader registry's FORMATS)."""
    p.add_argument("--timestep-fs", type=float, default=None,
                   help="MD timestep in fs, for files that do not record it (XDATCAR); frame interval = "
                        "timestep × file stride")
    p.add_argument("--file-stride", type=int, default=None, metavar="K",
                   help="integrator steps between the file's saved frames, when the file does not say")
    p.add_argument("--format", dest="fmt", default=None, choices=list(FORMATS),
                   help="trajectory format (none: from the file name)")


def _is_json_document(text: str) -> bool:
    stripped = text.strip()
    if stripped[:1] not in ("{", "["):
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


class _Sieve(io.TextIOBase):
    """``sys.stdout`` during a ``--json`` command: one write that is a whole JSON document (and the newline
    ``print`` adds after it) goes to the real stdout; everything else goes to stderr."""

    def __init__(self, real, saved_fd: int | None):
        self.real, self.saved_fd, self._last_real = real, saved_fd, False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if s.strip():
            self._last_real = _is_json_document(s)
        if self._last_real:
            self.write_real(s)
        else:
            sys.stderr.write(s)
        return len(s)

    def write_real(self, s: str) -> None:
        """Write ``s`` to the real stdout, with file descriptor 1 pointed back at it for the write."""
        if self.saved_fd is None:
            self.real.write(s)
            self.real.flush()
            return
        sys.stderr.flush()
        os.dup2(self.saved_fd, 1)
        try:
            self.real.write(s)
            self.real.flush()
        finally:
            os.dup2(2, 1)

    def flush(self) -> None:
        sys.stderr.flush()

    def fileno(self) -> int:  # file descriptor 1 points at stderr meanwhile
        return 1 if self.saved_fd is not None else sys.stderr.fileno()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    @property
    def encoding(self):
        return getattr(sys.stderr, "encoding", None) or "utf-8"


def _dup_stdout() -> int | None:
    try:
        return os.dup(1)
    except OSError:  # no file descriptor 1 (closed): Python-level redirection only
        return None


@contextlib.contextmanager
def json_stdout():
    """Inside the block, fd 1 and ``sys.stdout`` point at stderr; :func:`emit_json` (or a whole JSON document
    printed in one write) reaches the real stdout."""
    real = sys.stdout
    real.flush()
    saved = _dup_stdout()
    sieve = _Sieve(real, saved)
    _REAL.append(sieve)
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sieve):
            yield sieve
    finally:
        _REAL.remove(sieve)
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def emit_json(obj, **kwargs) -> None:
    """Print ``obj`` as JSON (``json.dumps`` keyword arguments; indent 2 unless given) on the real stdout."""
    kwargs.setdefault("indent", 2)
    text = json.dumps(obj, **kwargs) + "\n"
    if _REAL:
        _REAL[-1].write_real(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout — by this process *and* by child processes that inherit
    file descriptor 1 (model banners, worker output) — to stderr inside the block."""
    sys.stdout.flush()
    saved = _dup_stdout()
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
