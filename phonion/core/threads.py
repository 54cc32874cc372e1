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

__all__ = ["THREAD_ENV_VARS", "limit_threads", "threads", "worker_init", "available_cores", "busy_cores", "plan_threads",
           "current_threads"]

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
    """Process-pool initialiser: :func:`limit_threads`, warnings on one line in the CLI's format, stdout
    sent to stderr, and exit if the parent dies (no orphan keeps writing)."""
    import threading
    import warnings

    from phonion.core.paths import format_warning, ignore_library_noise

    limit_threads(n_threads)
    warnings.formatwarning = format_warning
    ignore_library_noise()
    # a worker's stdout is nobody's output (results come back through the pool): library banners
    # ("CHGNet v0.3.0 initialized ...", mace's "cuequivariance ... not available") go to stderr,
    # so the parent's stdout keeps only what phonion prints (its JSON with --json)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's or a SLURM job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(sample_s: float = 0.3) -> float:
    """Cores other processes keep busy right now: the machine's CPU use over ``sample_s`` seconds
    (psutil when installed, else the kernel's /proc/stat, else the 1-minute load average)."""
    try:
        import psutil

        return psutil.cpu_percent(interval=sample_s) / 100.0 * (os.cpu_count() or 1)
    except ImportError:
        pass

    def stat():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = stat()
        time.sleep(sample_s)
        t1, i1 = stat()
        return (1.0 - (i1 - i0) / max(t1 - t0, 1)) * (os.cpu_count() or 1)
    except (OSError, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def plan_threads(workers: int, requested: int | None = None, *, cores: int | None = None,
                 busy: float | None = None) -> dict:
    """torch / OpenMP threads per worker process: ``requested``, or the free cores divided among the workers.

    Never more threads than cores in total (a request that would oversubscribe is refused: torch's
    OpenMP threads spin-wait, and two of them on one core ran 23× slower than one thread in
    measurements on this project's 2-core machine). Cores busy with other processes when the sweep
    starts are not counted as free. Returns ``{"threads", "workers", "cores", "busy_cores", "how"}``.
    """
    cores = available_cores() if cores is None else int(cores)
    if requested is not None:
        requested = int(requested)
        if requested < 1:
            raise ValueError(f"threads must be ≥ 1, got {requested}")
        if requested * workers > cores:
            raise ValueError(f"{requested} threads × {workers} worker(s) = {requested * workers} threads on {cores} "
                             f"core(s): more threads than cores slows every run down; use --threads "
                             f"{max(1, cores // max(workers, 1))} or fewer workers")
        return {"threads": requested, "workers": workers, "cores": cores, "busy_cores": None, "how": "requested"}
    busy = busy_cores() if busy is None else float(busy)
    free = max(1, cores - int(round(busy)))
    n = max(1, free // max(workers, 1))
    how = (f"{free} free of {cores} cores ({busy:.1f} busy with other processes) divided among {workers} "
           f"worker(s)")
    return {"threads": n, "workers": workers, "cores": cores, "busy_cores": round(busy, 2), "how": how}


def current_threads() -> int | None:
    """torch's intra-op thread count in this process (OMP_NUM_THREADS when torch is not loaded; None if unset)."""
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() else None
