"""Block-averaging standard error of σ_A (issue 16): known answers on synthetic force series.

σ_A = sqrt(Σ_t n_t / Σ_t d_t) with n_t = Σ_i |ΔF_i(t)|², d_t = Σ_i |F_i(t)|². Frames are drawn as Gaussian forces
whose residual is 0.3 × an independent Gaussian field, each component an AR(1) process in time with coefficient ρ
(ρ = 0: i.i.d. frames). Known answers: (a) i.i.d. frames: the error equals the delta-method value
SE(R)/(2√R), SE(R)² = Var(n − R d)/(F d̄²), within 20 %, and the scatter of σ_A over independent replicas within
20 %; (b) correlated frames: the error grows with ρ and still matches the replica scatter within 25 % (it is found
at a block length > 1); (c) each block's value is the ratio of that block's sums, not a mean of frame ratios.
"""

import numpy as np
import pytest

from phonion.mdma.anharmonicity import sigma_a, sigma_a_error, sigma_a_sums


def _ar1(rng, shape, rho):
    x = rng.normal(size=shape)
    if rho == 0:
        return x
    y = np.empty_like(x)
    y[0] = x[0]
    c = np.sqrt(1 - rho ** 2)
    for t in range(1, len(x)):
        y[t] = rho * y[t - 1] + c * x[t]
    return y


def _series(rng, n_frames=2000, n_atoms=10, rho=0.0):
    forces = _ar1(rng, (n_frames, n_atoms, 3), rho)
    harmonic = forces - 0.3 * _ar1(rng, (n_frames, n_atoms, 3), rho)
    return forces, harmonic


def _replicas(rho, n=120, seed=0, **kw):
    rng = np.random.default_rng(seed)
    values, errors = [], []
    for _ in range(n):
        f, h = _series(rng, rho=rho, **kw)
        values.append(sigma_a(f, h))
        errors.append(sigma_a_error(*sigma_a_sums(f, h)))
    return np.array(values), errors


def test_iid_frames_error_is_the_delta_method_value():
    f, h = _series(np.random.default_rng(1), n_frames=4000)
    num, den = sigma_a_sums(f, h)
    r = num.sum() / den.sum()
    analytic = np.sqrt(np.var(num - r * den, ddof=1) / (len(num) * den.mean() ** 2)) / (2 * np.sqrt(r))
    e = sigma_a_error(num, den)
    assert e["error"] == pytest.approx(analytic, rel=0.2)
    assert e["plateau"] and e["block_frames"] <= 4                # no correlation to block away


def test_iid_frames_error_is_the_scatter_over_replicas():
    values, errors = _replicas(0.0)
    assert np.mean([e["error"] for e in errors]) == pytest.approx(values.std(ddof=1), rel=0.2)


def test_error_grows_with_correlation_and_matches_replica_scatter():
    v0, e0 = _replicas(0.0, n=60, seed=2)
    v8, e8 = _replicas(0.8, n=60, seed=3)
    mean0, mean8 = np.mean([e["error"] for e in e0]), np.mean([e["error"] for e in e8])
    assert mean8 > 1.5 * mean0                                    # (1+ρ²)/(1−ρ²) ≈ 4.6 in variance: ≈ 2.1×
    assert mean8 == pytest.approx(v8.std(ddof=1), rel=0.25)
    assert np.median([e["block_frames"] for e in e8]) >= 4


def test_block_values_are_ratios_of_block_sums():
    rng = np.random.default_rng(4)
    num = rng.uniform(0.0, 1.0, 64) * np.tile([1.0, 100.0], 32)   # frames of very different force scales
    den = np.tile([1.0, 100.0], 32) * 4.0
    e = sigma_a_error(num, den, min_blocks=16)
    b, nb, se = e["levels"][1]                                    # blocks of 2 frames
    vals = np.sqrt(num.reshape(nb, b).sum(1) / den.reshape(nb, b).sum(1))
    assert se == pytest.approx(vals.std(ddof=1) / np.sqrt(nb), rel=1e-12)
    frame_mean = np.sqrt(num.reshape(nb, b) / den.reshape(nb, b)).mean(1)
    assert not np.allclose(vals, frame_mean)                      # the two definitions differ on this series


def test_too_few_frames_give_no_error():
    e = sigma_a_error(np.ones(10), np.ones(10))
    assert e["error"] is None and not e["plateau"]
