"""Thread capping, in one place: torch / OpenMP / MKL / OpenBLAS threads of this process and its children.

:func:`limit_threads` caps them for good (a worker process); :func:`threads` caps them inside a block
and restores them afterwards; :func:`worker_init` is the process-pool initialiser of phonion's pools.
torch is never imported just to be capped where it is not loaded yet (an EMT worker should not pay for
it): the environment variables cap it when it is imported later.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

__all__ = ["THREAD_ENV_VARS", "limit_threads", "threads", "worker_init"]

#: read by OpenMP, MKL and OpenBLAS when they start (and inherited by child processes)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Cap OpenMP / MKL / OpenBLAS / torch threads in this process (and the processes it starts) to ``n``.

    torch reads ``OMP_NUM_THREADS`` when it is imported; if it already is, it is told directly.
    """
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@contextlib.contextmanager
def threads(n: int | None, *, env: bool = True):
    """Cap torch threads to ``n`` inside the block (``n`` falsy: no cap), restored afterwards.

    With ``env`` (default) the ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` variables are set for the
    block too (processes started inside inherit the cap) and restored. If torch is loaded when the block
    starts, its thread count is restored on exit even without a cap.
    """
    torch = sys.modules.get("torch")
    if n:
        import torch
    old = torch.get_num_threads() if torch is not None else None
    old_env = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} if n and env else {}
    if n:
        torch.set_num_threads(int(n))
        os.environ.update({v: str(n) for v in old_env})
    try:
        yield
    finally:
        if old is not None:
            torch.set_num_threads(old)
        for var, value in old_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def worker_init(n_threads: int, parent_pid: int) -> None:
    """Process-pool initialiser: :func:`limit_threads`, warnings on one line in the CLI's format, and exit
    if the parent dies (no orphan keeps writing)."""
    import threading
    import warnings

    from phonion.core.paths import format_warning

    limit_threads(n_threads)
    warnings.formatwarning = format_warning

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
