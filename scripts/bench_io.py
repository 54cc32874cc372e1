#!/usr/bin/env python
"""Benchmark trajectory I/O: XDATCAR reading, H5MD streamed writing, windowed H5MD reading.

Each measurement runs in a fresh (spawned) Python process so that its peak resident memory
(``ru_maxrss``) is its own; the baseline RSS after imports is reported beside it. Times come
from a pass without tracemalloc; the Python-heap peak (tracemalloc, which includes numpy
arrays) from a second pass.

    python scripts/bench_io.py                       # default: < 1 min on 2 cores
    python scripts/bench_io.py --frames 20000 --json bench_io.json

(a) read each 416-atom Li6PS5I XDATCAR (700 K, 1100 K) with ``phonion.md.io.vasp_xdatcar.read_xdatcar``;
(b) write a synthetic ATOMS x FRAMES run (positions, velocities, forces, energy, stress,
    temperature) with ``H5MDWriter`` in blocks, and one frame per ``append`` (the MD-driver
    pattern, buffered);
(c) read it back with ``H5MDReader.iter_chunks`` and random 10-frame windows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MB = 1e6


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _traced(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


# ---- workers (run in a spawned process) ------------------------------------------------
def _work_xdatcar(path: str) -> dict:
    from phonion.md.io.vasp_xdatcar import read_xdatcar

    base = _rss_mb()
    t0 = time.perf_counter()
    traj = read_xdatcar(path)
    seconds = time.perf_counter() - t0
    rss = _rss_mb()
    del traj
    peak = _traced(lambda: read_xdatcar(path))
    traj = read_xdatcar(path)
    return {"file": path, "n_frames": traj.n_frames, "n_atoms": traj.n_atoms, "seconds": seconds,
            "frames_per_s": traj.n_frames / seconds, "gz_MB": os.path.getsize(path) / MB,
            "positions_MB": traj.positions.nbytes / MB, "tracemalloc_peak_MB": peak,
            "rss_baseline_MB": base, "rss_peak_MB": rss}


def _synthetic_blocks(n_atoms: int, n_frames: int, block: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    cell = np.eye(3) * (n_atoms / 0.05) ** (1 / 3)  # ~0.05 atoms/Å³
    pos = rng.uniform(0, cell[0, 0], (n_atoms, 3))
    for a in range(0, n_frames, block):
        b = min(block, n_frames - a)
        steps = rng.normal(scale=0.02, size=(b, n_atoms, 3))
        p = pos + np.cumsum(steps, axis=0)
        pos = p[-1]
        yield dict(positions=p, cells=cell, velocities=steps / 2.0,
                   forces=rng.normal(scale=0.5, size=(b, n_atoms, 3)), energies=rng.normal(size=b),
                   stress=rng.normal(scale=1e-3, size=(b, 3, 3)),
                   temperatures_K=rng.normal(700, 20, size=b))


def _work_write(path: str, n_atoms: int, n_frames: int, block: int, compression) -> dict:
    from phonion.md.io.h5md import H5MDWriter

    def run():
        spent = 0.0
        w = H5MDWriter(path, ["Li"] * n_atoms, timestep_fs=2.0, stride=1, compression=compression)
        for data in _synthetic_blocks(n_atoms, n_frames, block):
            t0 = time.perf_counter()
            w.append(data.pop("positions"), data.pop("cells"), **data)
            spent += time.perf_counter() - t0
        t0 = time.perf_counter()
        w.close()
        return spent + time.perf_counter() - t0

    base = _rss_mb()
    seconds = run()
    rss = _rss_mb()
    peak = _traced(run)
    raw = n_frames * (3 * n_atoms * 3 + 1 + 9 + 1 + 9 + 2) * 8
    return {"n_atoms": n_atoms, "n_frames": n_frames, "block_frames": block, "compression": compression,
            "seconds": seconds, "frames_per_s": n_frames / seconds, "raw_MB_per_s": raw / MB / seconds,
            "raw_MB": raw / MB, "file_MB": os.path.getsize(path) / MB,
            "tracemalloc_peak_MB": peak, "rss_baseline_MB": base, "rss_peak_MB": rss}


def _work_append_single(path: str, n_atoms: int, n_frames: int) -> dict:
    from phonion.md.io.h5md import H5MDWriter

    frames = [d for d in _synthetic_blocks(n_atoms, n_frames, 1, seed=1)]
    t0 = time.perf_counter()
    with H5MDWriter(path, ["Li"] * n_atoms, timestep_fs=2.0) as w:
        for d in frames:
            w.append(d.pop("positions"), d.pop("cells"), **d)
    seconds = time.perf_counter() - t0
    return {"n_atoms": n_atoms, "n_frames": n_frames, "seconds": seconds,
            "ms_per_frame": 1e3 * seconds / n_frames, "buffer_frames": "default (one chunk)"}


def _work_read(path: str, chunk: int, n_windows: int) -> dict:
    import numpy as np

    from phonion.md.io.h5md import H5MDReader

    reader = H5MDReader(path)
    base = _rss_mb()

    def run():
        frames = 0
        for part in reader.iter_chunks(chunk):
            frames += part.n_frames
        return frames

    t0 = time.perf_counter()
    frames = run()
    seconds = time.perf_counter() - t0
    rss = _rss_mb()
    peak = _traced(run)
    per_frame = reader.n_atoms * 3 * 3 * 8 + (9 + 1 + 9 + 1 + 1) * 8  # what one frame delivers
    rng = np.random.default_rng(0)
    starts = rng.integers(0, reader.n_frames - 10, n_windows)
    t0 = time.perf_counter()
    for s in starts:
        reader.read(frames=slice(int(s), int(s) + 10))
    window_ms = 1e3 * (time.perf_counter() - t0) / n_windows
    win_peak = _traced(lambda: reader.read(frames=slice(int(starts[0]), int(starts[0]) + 10)))
    atoms = rng.choice(reader.n_atoms, 50, replace=False)
    t0 = time.perf_counter()
    reader.read(frames=slice(0, None, 10), atoms=atoms)
    sub_s = time.perf_counter() - t0
    return {"n_frames": frames, "chunk_frames": chunk, "seconds": seconds, "frames_per_s": frames / seconds,
            "MB_per_s": frames * per_frame / MB / seconds, "tracemalloc_peak_MB": peak,
            "full_arrays_MB": frames * per_frame / MB, "rss_baseline_MB": base, "rss_peak_MB": rss,
            "window10_ms": window_ms, "window10_tracemalloc_peak_MB": win_peak,
            "every10th_frame_50_atoms_s": sub_s}


def _in_child(fn, *args):
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


# ---- driver -----------------------------------------------------------------------------
def _xdatcar_paths(arg) -> list[Path]:
    if arg:
        return [Path(p) for p in arg]
    out = []
    for temp in ("700K", "1100K"):
        for base in (ROOT.parent / "shared/data/vasp", ROOT / "tests/data/vasp", ROOT / "tests/data"):
            p = base / "li6ps5i_aimd_xdatcar" / temp / "XDATCAR.gz"
            if p.exists():
                out.append(p)
                break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xdatcar", nargs="*", help="XDATCAR files (default: the two Li6PS5I runs)")
    ap.add_argument("--atoms", type=int, default=1000, help="atoms in the synthetic run")
    ap.add_argument("--frames", type=int, default=2000, help="frames in the synthetic run")
    ap.add_argument("--block", type=int, default=64, help="frames per append block")
    ap.add_argument("--single-frames", type=int, default=300, help="frames for the 1-frame-per-append test")
    ap.add_argument("--chunk", type=int, default=256, help="frames per iter_chunks window")
    ap.add_argument("--compression", default="gzip", help="gzip, lzf or none")
    ap.add_argument("--workdir", help="where to write the test file (default: a temp dir)")
    ap.add_argument("--json", help="write all numbers to this JSON file")
    args = ap.parse_args(argv)
    comp = None if args.compression.lower() == "none" else args.compression
    results: dict = {"xdatcar": [], "config": vars(args), "cpu_count": os.cpu_count()}

    print("(a) XDATCAR read")
    try:
        import phonion.md.io.vasp_xdatcar  # noqa: F401
        have = hasattr(phonion.md.io.vasp_xdatcar, "read_xdatcar")
    except ImportError:
        have = False
    if not have:
        print("    skipped: phonion.md.io.vasp_xdatcar.read_xdatcar is not there yet")
    elif not _xdatcar_paths(args.xdatcar):
        print("    skipped: no Li6PS5I XDATCAR found")
    else:
        print(f"    {'file':<44}{'frames':>7}{'s':>8}{'frames/s':>10}{'traced MB':>11}{'RSS MB':>15}")
        for p in _xdatcar_paths(args.xdatcar):
            r = _in_child(_work_xdatcar, str(p))
            results["xdatcar"].append(r)
            name = "/".join(Path(r["file"]).parts[-3:])
            print(f"    {name:<44}{r['n_frames']:>7}{r['seconds']:>8.2f}{r['frames_per_s']:>10.0f}"
                  f"{r['tracemalloc_peak_MB']:>11.1f}{r['rss_peak_MB']:>7.0f} (base {r['rss_baseline_MB']:.0f})")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        h5 = str(Path(tmp) / "bench.h5")
        print(f"(b) H5MD write: {args.atoms} atoms x {args.frames} frames, blocks of {args.block}, "
              f"compression={comp}")
        w = results["write"] = _in_child(_work_write, h5, args.atoms, args.frames, args.block, comp)
        print(f"    {w['seconds']:.2f} s  {w['frames_per_s']:.0f} frames/s  {w['raw_MB_per_s']:.0f} MB/s raw  "
              f"file {w['file_MB']:.0f} MB of {w['raw_MB']:.0f} MB  traced peak {w['tracemalloc_peak_MB']:.1f} MB  "
              f"RSS {w['rss_peak_MB']:.0f} MB (base {w['rss_baseline_MB']:.0f})")
        if comp is not None:
            u = results["write_uncompressed"] = _in_child(_work_write, str(Path(tmp) / "raw.h5"), args.atoms,
                                                          args.frames, args.block, None)
            print(f"    uncompressed: {u['seconds']:.2f} s  {u['frames_per_s']:.0f} frames/s  "
                  f"{u['raw_MB_per_s']:.0f} MB/s  file {u['file_MB']:.0f} MB")
        s = results["append_single"] = _in_child(_work_append_single, str(Path(tmp) / "single.h5"),
                                                 args.atoms, args.single_frames)
        print(f"    one frame per append (MD driver): {s['ms_per_frame']:.2f} ms/frame over {s['n_frames']} frames")
        print(f"(c) H5MD read: iter_chunks({args.chunk}) over the whole file, then windows")
        r = results["read"] = _in_child(_work_read, h5, args.chunk, 50)
        print(f"    {r['seconds']:.2f} s  {r['frames_per_s']:.0f} frames/s  {r['MB_per_s']:.0f} MB/s delivered  "
              f"traced peak {r['tracemalloc_peak_MB']:.1f} MB (whole run {r['full_arrays_MB']:.0f} MB)  "
              f"RSS {r['rss_peak_MB']:.0f} MB (base {r['rss_baseline_MB']:.0f})")
        print(f"    10-frame window: {r['window10_ms']:.1f} ms, traced peak "
              f"{r['window10_tracemalloc_peak_MB']:.2f} MB; every 10th frame of 50 atoms: "
              f"{r['every10th_frame_50_atoms_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
