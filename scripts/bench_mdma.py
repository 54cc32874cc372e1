"""Benchmark the exact MDMA: cross-spectral all-pairs vs a per-pair FFT loop, and the streamed binned path.

1. 80-atom cell (240 modes) × 20,000 frames, synthetic velocities and a random orthonormal basis:
   - ``mdma_matrix``: one FFT per mode, one weighted matrix product for all 57,600 pairs;
   - the same with a per-pair loop (FFT of every mode once, then one product + inverse FFT per pair,
     i.e. already faster than a notebook-style loop that redoes the forward FFTs for every pair);
   - ``run_mdma`` end to end (4 blocks, errors, sum rule).
2. 10,000-atom cell (30,000 modes), 100 frequency bins, fewer frames: ``mdma_binned`` streams the
   eigenvector columns in blocks from a callable (here the orthonormal DCT-II basis, generated on the
   fly: 30,000 × 30,000 × 8 B = 7.2 GB could not be stored) and never forms a 3N × 3N matrix.

3. The issue's case: 160 atoms × 20,000 frames, the full 480 × 480 D_{n,n'} (target ≤ 3 s on 2 CPU cores)
   against the straightforward per-pair way (every pair its own zero-padded forward FFTs, product, inverse
   FFT), timed on a random sample of pairs and extrapolated to all 230,400; the sampled pairs must agree with
   the matrix to 1e-10. Matrix timings are the best of ``--repeats`` (the machine may be shared; the median
   and the load average are recorded too).

Peak memory: tracemalloc peak of numpy allocations per case and the process's max RSS.
Writes scripts/results/mdma_bench.json (cases not run keep their previous entries).
Usage: python scripts/bench_mdma.py [--cases 240 binned issue] [--frames-large 400] [--pair-sample 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import fft as sfft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phonion.mdma.mdma import mdma_binned, run_mdma  # noqa: E402
from phonion.mdma.mdma_core import (lag_weights, mdma_matrix, modal_velocities, mobile_vectors,  # noqa: E402
                            padded_length, projection_weights, CONVENTIONS, A2_PER_FS_TO_CM2_PER_S)


def measured(fn, *args, **kwargs):
    """(result, seconds, tracemalloc peak MiB)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return out, dt, peak


def synthetic_cell(rng, n_atoms, n_li, n_frames):
    masses = np.concatenate([np.full(n_li, 6.94), rng.choice([16.0, 27.0, 69.7, 79.0], n_atoms - n_li)])
    symbols = ["Li"] * n_li + ["X"] * (n_atoms - n_li)
    v = rng.normal(size=(n_frames, n_atoms, 3)) * 0.01 / np.sqrt(masses / 7.0)[None, :, None]
    return symbols, masses, v


def pair_loop(qdot, s, n_lags, dt, prefactor, rows):
    """D_{n,n'} row by row: one product and inverse FFT per pair (forward FFTs done once)."""
    F, M = qdot.shape
    L = padded_length(F)
    a = lag_weights(F, n_lags, dt)
    X = sfft.rfft(qdot, n=L, axis=0)
    D = np.zeros((len(rows), M))
    for r, n in enumerate(rows):
        for m in range(M):
            D[r, m] = a @ sfft.irfft(X[:, n] * np.conj(X[:, m]), n=L)[: n_lags + 1]
    return prefactor * 0.1 * (s[rows] @ s.T) * D


def per_pair_fft(qdot, s, n_lags, dt, prefactor, pairs):
    """D_{n,m} for the given pairs, the straightforward way: each pair its own FFTs (reference)."""
    F = len(qdot)
    L = padded_length(F)
    a = lag_weights(F, n_lags, dt)
    out = np.empty(len(pairs))
    for r, (n, m) in enumerate(pairs):
        xn = sfft.rfft(qdot[:, n], n=L)
        xm = sfft.rfft(qdot[:, m], n=L)
        corr = sfft.irfft(xn * np.conj(xm), n=L)[: n_lags + 1]
        out[r] = prefactor * A2_PER_FS_TO_CM2_PER_S * (s[n] @ s[m]) * (a @ corr)
    return out


def issue_case(args, rng, report):
    """160 atoms × 20,000 frames: the full 480 × 480 matrix vs the per-pair FFT way (sampled)."""
    n_atoms, n_li, dt = 160, 16, 1.0
    symbols, masses, v = synthetic_cell(rng, n_atoms, n_li, args.frames)
    M = 3 * n_atoms
    E, _ = np.linalg.qr(rng.normal(size=(M, M)))
    w, u, pref = projection_weights(masses, np.arange(n_li), CONVENTIONS["gordiz"])
    k = int(round(2.0 * 1000 / dt))  # τmax = 2 ps
    qdot, t_proj, _ = measured(modal_velocities, v, E, w)
    s = mobile_vectors(E, u)
    times, D, mem = [], None, 0.0
    for _ in range(args.repeats):
        D, t, mem = measured(mdma_matrix, qdot, s, k, dt, pref)
        times.append(t)
    pairs = rng.integers(0, M, size=(args.pair_sample, 2))
    ref, t_pairs, _ = measured(per_pair_fft, qdot, s, k, dt, pref, pairs)
    t_pair_all = t_pairs * M * M / len(pairs)
    t_matrix = min(times)
    scale = np.abs(D).max()
    out = {
        "n_atoms": n_atoms, "n_modes": M, "n_pairs": M * M, "n_frames": args.frames, "tau_max_ps": k * dt / 1000,
        "projection_s": t_proj,
        "matrix_s": t_matrix, "matrix_s_median": float(np.median(times)), "matrix_s_all": times,
        "matrix_peak_MiB": mem, "matrix_plus_projection_s": t_matrix + t_proj,
        "per_pair_fft_pairs_timed": int(len(pairs)), "per_pair_fft_s_per_pair": t_pairs / len(pairs),
        "per_pair_fft_extrapolated_s": t_pair_all,
        "speedup_vs_per_pair_fft": t_pair_all / t_matrix,
        "max_abs_difference_relative": float(np.abs(ref - D[pairs[:, 0], pairs[:, 1]]).max() / scale),
        "target_matrix_s": 3.0, "target_speedup": 100.0,
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    report["issue_160_atoms_480_modes"] = out
    print(json.dumps(out, indent=1), flush=True)


def dct_columns(n_dof):
    """Columns a:b of the orthonormal DCT-II matrix (n_dof × n_dof), generated on demand."""
    i = np.arange(n_dof)[:, None] + 0.5

    def cols(a, b):
        n = np.arange(a, b)[None, :]
        out = np.sqrt(2.0 / n_dof) * np.cos(np.pi * i * n / n_dof)
        out[:, n[0] == 0] = np.sqrt(1.0 / n_dof)
        return out
    return cols


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--frames-large", type=int, default=400)
    p.add_argument("--atoms-large", type=int, default=10000)
    p.add_argument("--bins", type=int, default=100)
    p.add_argument("--pair-rows", type=int, default=240,
                   help="rows of the per-pair loop to time (≤ 240; fewer: extrapolated)")
    p.add_argument("--cases", nargs="+", default=["240", "binned", "issue"], choices=["240", "binned", "issue"])
    p.add_argument("--repeats", type=int, default=3, help="issue case: matrix timings (best is reported)")
    p.add_argument("--pair-sample", type=int, default=300, help="issue case: pairs timed the per-pair way")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "mdma_bench.json"))
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    dt, tau_ps = 1.0, 2.0
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report["machine"] = {"python": platform.python_version(), "numpy": np.__version__,
                         "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))}
    if "issue" in args.cases:
        issue_case(args, np.random.default_rng(1), report)
    if "240" in args.cases:
        case_240(args, rng, report, dt, tau_ps)
    if "binned" in args.cases:
        case_binned(args, rng, report, dt)
    report["process_max_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


def case_240(args, rng, report, dt, tau_ps):
    # ---- 1. 240 modes × 20,000 frames -------------------------------------------------------------
    n_atoms, n_li = 80, 8
    symbols, masses, v = synthetic_cell(rng, n_atoms, n_li, args.frames)
    E, _ = np.linalg.qr(rng.normal(size=(3 * n_atoms, 3 * n_atoms)))
    freq = np.linspace(0.0, 24.0, 3 * n_atoms)
    conv = CONVENTIONS["gordiz"]
    w, u, pref = projection_weights(masses, np.arange(n_li), conv)
    tau_ps = min(tau_ps, args.frames // 8 * dt / 1000)  # at most half a block of run_mdma
    k = int(round(tau_ps * 1000 / dt))
    qdot, t_proj, _ = measured(modal_velocities, v, E, w)
    s = mobile_vectors(E, u)
    D, t_cs, mem_cs = measured(mdma_matrix, qdot, s, k, dt, pref)
    rows = np.arange(min(args.pair_rows, 3 * n_atoms))
    Dp, t_pair, mem_pair = measured(pair_loop, qdot, s, k, dt, pref, rows)
    t_pair_all = t_pair * (3 * n_atoms) / len(rows)
    res, t_run, mem_run = measured(run_mdma, v, masses, symbols, freq, E, dt, 300.0, tau_max_ps=tau_ps,
                                   n_blocks=4)
    report["all_pairs_240_modes"] = {
        "n_atoms": n_atoms, "n_modes": 3 * n_atoms, "n_frames": args.frames, "tau_max_ps": tau_ps,
        "projection_s": t_proj,
        "cross_spectral_matrix_s": t_cs, "cross_spectral_peak_MiB": mem_cs,
        "per_pair_fft_loop_s": t_pair_all, "per_pair_rows_timed": int(len(rows)),
        "per_pair_extrapolated": bool(len(rows) < 3 * n_atoms), "per_pair_peak_MiB": mem_pair,
        "speedup": t_pair_all / t_cs,
        "max_abs_difference_relative": float(np.abs(Dp - D[rows]).max() / np.abs(D).max()),
        "run_mdma_s": t_run, "run_mdma_peak_MiB": mem_run,
        "run_mdma_sum_rule_relative_error": res.sum_rule_relative_error,
    }
    print(json.dumps(report["all_pairs_240_modes"], indent=1), flush=True)


def case_binned(args, rng, report, dt):
    # ---- 2. 30,000 modes, 100 bins, streamed ------------------------------------------------------
    n_atoms, n_li = args.atoms_large, args.atoms_large // 10
    symbols, masses, v = synthetic_cell(rng, n_atoms, n_li, args.frames_large)
    n_dof = 3 * n_atoms
    freq = np.linspace(0.0, 24.0, n_dof)
    edges = np.linspace(-0.01, 24.01, args.bins + 1)
    tau_large = 0.1
    binned, t_bin, mem_bin = measured(mdma_binned, v, masses, symbols, freq, dct_columns(n_dof), edges, dt,
                                      tau_max_ps=tau_large)
    t0 = time.perf_counter()
    _ = dct_columns(n_dof)(0, 1000)
    t_gen = (time.perf_counter() - t0) * n_dof / 1000
    report["binned_30000_modes"] = {
        "n_atoms": n_atoms, "n_modes": n_dof, "n_mobile": n_li, "n_frames": args.frames_large,
        "n_bins": args.bins, "tau_max_ps": tau_large, "mdma_binned_s": t_bin,
        "of_which_eigenvector_generation_s_estimate": t_gen, "peak_MiB": mem_bin,
        "velocities_MiB": v.nbytes / 2 ** 20,
        "full_eigenvector_matrix_would_be_GiB": n_dof ** 2 * 8 / 2 ** 30,
        "sum_rule_relative_error": binned.sum_rule_relative_error,
        "completeness_relative_error": binned.completeness_relative_error,
        "projection_flops": 2.0 * args.frames_large * n_dof * n_dof,
    }
    print(json.dumps(report["binned_30000_modes"], indent=1), flush=True)


if __name__ == "__main__":
    main()
