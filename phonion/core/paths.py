"""Paths: those written into phonion's JSON and HTML outputs, relative to the output directory (so a result
directory can be moved, archived or shared without dangling absolute paths), and whether a file is phonion's
own (the one test used to tell phonion's warnings from third-party ones)."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["relative_paths", "from_phonion", "format_warning", "ignore_library_noise", "require_free_space", "MIN_FREE_BYTES"]

_PACKAGE = Path(__file__).resolve().parents[1]


def from_phonion(filename) -> bool:
    """Whether ``filename`` (a warning's or a frame's origin) is a file of the phonion package."""
    try:
        return Path(str(filename)).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


#: bytes phonion keeps free on a filesystem it writes to: what a run must still be able to write after
#: its last check (the H5MD buffer of one chunk ≤ 4 MiB, a checkpoint, run.json, the sweep summary).
#: HDF5 does not survive running out of space (a real full disk ended `phonion md` in a segmentation
#: fault and left run.json "running"), so phonion stops before the disk is full instead.
MIN_FREE_BYTES = 16 * 2 ** 20


def require_free_space(path, need_bytes: int = 0, what: str = "") -> None:
    """OSError (ENOSPC, one readable line naming the directory) unless ``need_bytes`` plus
    ``MIN_FREE_BYTES`` are free on the filesystem holding ``path`` (or its nearest existing parent)."""
    import errno
    import shutil

    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return  # cannot tell: let the write itself say
    if free < need_bytes + MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"{p}: {free / 2**20:.1f} MB free on its filesystem, phonion needs "
                                    f"{(need_bytes + MIN_FREE_BYTES) / 2**20:.1f} MB{' for ' + what if what else ''} "
                                    "(it stops before the disk is full); free space or write elsewhere")


#: library deprecation notices a phonion user cannot act on (message regexes): torch 2.13 deprecates
#: ``torch.jit.load``, which mace/e3nn call on every model load — 86 identical lines in the quick demo
LIBRARY_NOISE = (r".*`torch\.jit\.load` is deprecated",)


def ignore_library_noise() -> None:
    """Hide :data:`LIBRARY_NOISE` (DeprecationWarning only; every other warning is still shown)."""
    import warnings

    for pattern in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=pattern, category=DeprecationWarning)


def format_warning(message, category, filename, lineno, line=None) -> str:
    """One line per warning: ``phonion: warning: <message>`` for phonion's own UserWarnings; any other
    (third-party, or a category other than UserWarning) also names its category and origin. Installed
    by the CLI and in every worker process phonion starts (``phonion.core.threads.worker_init``)."""
    text = " ".join(str(message).split())
    if from_phonion(filename) and issubclass(category, UserWarning):
        return f"phonion: warning: {text}\n"
    return f"phonion: warning: {category.__name__} from {filename}:{lineno}: {text}\n"


def relative_paths(value, out):
    """A copy of ``value`` in which every path inside the directory holding ``out`` (the demo / project
    directory: its reference runs, MLIP runs, model and ``out`` itself) is written relative to ``out``;
    paths elsewhere (a shared model, the bundled structure) stay absolute."""
    out = Path(out).resolve()
    root = str(out.parent)
    if root == os.sep:
        return value
    pattern = re.compile(re.escape(root) + r"(?=/|$)[^\s,;'\"()]*")

    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str) and root in v:
            return pattern.sub(lambda m: os.path.relpath(m.group(0), out), v)
        return v

    return fix(value)
