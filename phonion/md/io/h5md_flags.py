"""Clearing the superblock flags a killed SWMR writer leaves (``h5clear -s``), without the HDF5 tools.

``phonion.md.io.h5md`` re-exports :func:`clear_consistency_flags`.
"""

from __future__ import annotations

from pathlib import Path

from phonion.md.trajectory import TrajectoryError


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (initval 0): HDF5's metadata checksum."""
    m, n, i = 0xFFFFFFFF, len(data), 0
    a = b = c = (0xDEADBEEF + n) & m
    while n - i > 12:
        w = [int.from_bytes(data[i + 4 * j:i + 4 * j + 4], "little") for j in range(3)]
        a, b, c = (a + w[0]) & m, (b + w[1]) & m, (c + w[2]) & m
        a = (a - c) & m; a ^= _rot(c, 4); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rot(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rot(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= _rot(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rot(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rot(b, 4); b = (b + a) & m  # noqa: E702
        i += 12
    if n == i:
        return c
    tail = data[i:] + bytes(12 - (n - i))
    w = [int.from_bytes(tail[4 * j:4 * j + 4], "little") for j in range(3)]
    a, b, c = (a + w[0]) & m, (b + w[1]) & m, (c + w[2]) & m
    for x, y, k in (("c", "b", 14), ("a", "c", 11), ("b", "a", 25), ("c", "b", 16), ("a", "c", 4),
                    ("b", "a", 14), ("c", "b", 24)):
        v = {"a": a, "b": b, "c": c}
        v[x] = ((v[x] ^ v[y]) - _rot(v[y], k)) & m
        a, b, c = v["a"], v["b"], v["c"]
    return c


def clear_consistency_flags(path: Path) -> int:
    """Reset the superblock's 'open for write' flags that a killed SWMR writer leaves (= ``h5clear -s``).

    Only superblock versions 2 and 3 at offset 0 carry the flags; the stored checksum must
    match before anything is rewritten, so an unexpected layout is left untouched.
    Returns the superblock version (SWMR needs 3; -1: no superblock at offset 0).
    """
    with open(path, "r+b") as fh:
        head = fh.read(48)
        if head[:8] != b"\x89HDF\r\n\x1a\n":
            return -1
        if head[8] not in (2, 3) or head[11] == 0:
            return head[8]
        end = 12 + 4 * head[9]
        if int.from_bytes(head[end:end + 4], "little") != _lookup3(head[:end]):
            raise TrajectoryError(f"{path}: file consistency flags are set and the superblock is not "
                                  "as expected; run `h5clear -s` on it before appending")
        fixed = head[:11] + b"\x00" + head[12:end]
        fh.seek(0)
        fh.write(fixed + _lookup3(fixed).to_bytes(4, "little"))
    return head[8]
