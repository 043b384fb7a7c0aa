"""realdiff.metrics on synthetic depth where the right answer is known."""

import numpy as np
import pytest
from scipy import ndimage

from realdiff import metrics as M


def scene(n=8, h=96, w=128, seed=0):
    """Clean depth: tilted planes around 1.2 m with three nearer boxes per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        d = (
            1.2
            + rng.uniform(-0.3, 0.3)
            + (yy - 0.5) * rng.uniform(-0.5, 0.5)
            + (xx - 0.5) * rng.uniform(-0.5, 0.5)
        )
        for _ in range(3):
            y0, x0 = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
            bh, bw = rng.integers(h // 8, h // 3), rng.integers(w // 8, w // 3)
            d[y0 : y0 + bh, x0 : x0 + bw] -= rng.uniform(0.1, 0.5)
        out[i] = d
    return out


def sensor(clean, seed=0, k=1.0, hole=0.02, flat=False):
    """A noise process: Gaussian noise growing with depth (k times ~2 mm at 1.2 m; with flat, k times
    2 mm at every depth) and random holes."""
    rng = np.random.default_rng(seed)
    sigma = k * (0.002 if flat else 0.0012 + 0.0019 * (clean - 0.4) ** 2)
    z = clean + sigma * rng.standard_normal(clean.shape)
    z[rng.random(clean.shape) < hole] = 0
    return z.astype(np.float32)


def test_identical_gen_scores_perfectly():
    clean = scene()
    real = sensor(clean, seed=1)
    out = M.score(clean, real, real.copy(), two_sample=False)
    assert set(out) == M.FAST_METRICS
    assert M.ALL_METRICS == M.FAST_METRICS | {"two_sample_acc", "two_sample_strong_acc"}
    assert out == {
        "residual_w1_mm": 0.0,
        "hole_f1": 1.0,
        "hole_rate_abs_diff": 0.0,
        "noise_depth_rmse_mm": 0.0,
        "spectrum_dist": 0.0,
        "edge_rmse": 0.0,
    }


def test_residuals_only_where_both_read():
    clean = np.array([[[1.0, 2.0, 0.0, 3.0]]], np.float32)
    noisy = np.array([[[1.5, 0.0, 4.0, 2.0]]], np.float32)
    np.testing.assert_allclose(M.residuals(clean, noisy), [0.5, -1.0])


def test_constant_shift_gives_w1_of_the_shift():
    clean = scene()
    real = sensor(clean, seed=1)
    gen = np.where(real > 0, real + 0.005, 0).astype(np.float32)
    assert M.residual_w1_mm(clean, real, gen) == pytest.approx(5.0, abs=0.1)
    # deterministic subsampling (equal sizes) gives the same answer, twice
    sub = M.residual_w1_mm(clean, real, gen, max_samples=20_000, seed=3)
    assert sub == pytest.approx(5.0, abs=0.1) and sub == M.residual_w1_mm(
        clean, real, gen, max_samples=20_000, seed=3
    )
    # gross outliers (|residual| > 0.5 m) are ignored, not counted as residuals
    flying = gen.copy()
    flying[:, ::7, ::7] += 1.0
    assert M.residual_w1_mm(clean, real, flying) == pytest.approx(5.0, abs=0.1)


def test_noise_vs_depth_recovers_known_stds():
    rng = np.random.default_rng(0)
    depths = [0.625, 1.125, 1.875, 2.625]  # bin centres of 0.25 m bins 2, 4, 7, 10
    sigmas = np.array([0.001, 0.002, 0.004, 0.008])
    clean = np.repeat(np.array(depths, np.float32), 25)[None, :, None] * np.ones((2, 1, 100), np.float32)
    clean[0, -1, :50] = 3.375  # 50 samples in bin 13: too few, NaN
    sigma = np.interp(clean, depths, sigmas)
    real = (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)
    centres, stds = M.noise_vs_depth(clean, real)
    assert len(centres) == 20 and centres[0] == pytest.approx(0.125) and centres[-1] == pytest.approx(4.875)
    bins = [2, 4, 7, 10]
    np.testing.assert_allclose(stds[bins], sigmas, rtol=0.05)
    assert np.isnan(np.delete(stds, bins)).all()
    gen = (clean + 2 * sigma * rng.standard_normal(clean.shape)).astype(np.float32)
    expect_mm = 1000 * np.sqrt(np.mean(sigmas**2))  # the curves differ by sigma in each bin
    assert M.noise_vs_depth_rmse(clean, real, gen) == pytest.approx(expect_mm, rel=0.05)


def test_hole_f1_by_hand():
    clean = np.ones((2, 20, 20), np.float32)
    clean[:, :, -1] = 0  # no clean depth: ignored whatever the noisy depths say
    real, gen = clean.copy(), clean.copy()
    real[0, :5] = 0  # frame 0: 95 real holes
    gen[0, :10] = 0  # the same 95 plus 95 wrong ones: precision 0.5, recall 1, F1 2/3
    gen[1, :, -1] = 0  # frame 1: no holes in either (only where clean has none): F1 1
    out = M.hole_scores(clean, real, gen)
    assert out["hole_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["hole_rate_real"] == pytest.approx(95 / 760) and out["hole_rate_gen"] == pytest.approx(
        190 / 760
    )
    assert out["hole_rate_abs_diff"] == pytest.approx(95 / 760)
    half = clean.copy()
    half[0, :2, :10] = 0  # 20 of real's 95 holes, none wrong: precision 1, recall 20/95
    assert M.hole_f1(clean[:1], real[:1], half[:1]) == pytest.approx(2 * 20 / (2 * 20 + 75))


def test_edge_profile_holes_only_on_edges():
    clean = np.full((3, 64, 96), 2.0, np.float32)
    clean[:, 20:40, 30:70] = 1.0  # a box 1 m nearer
    edges = np.zeros(clean.shape, bool)  # by hand: both sides of each 4-neighbour jump
    edges[:, [19, 20, 39, 40], 30:70] = True
    edges[:, 20:40, [29, 30, 69, 70]] = True
    assert (M.depth_edges(clean) == edges).all()
    real = np.where(edges, 0, clean).astype(np.float32)
    dist, rate = M.edge_profile(clean, real)
    assert list(dist) == list(range(11))
    assert rate[0] == 1.0 and (rate[1:] == 0).all()
    # against a gen without holes the profiles differ by 1 in bin 0 only
    assert M.edge_profile_rmse(clean, real, clean) == pytest.approx(np.sqrt(1 / 11))
    assert M.edge_profile_rmse(clean, real, real) == 0.0
    # a hole in the clean depth is a discontinuity too
    holed = clean.copy()
    holed[:, 50, 10] = 0
    assert M.depth_edges(holed)[0, 49, 10] and M.depth_edges(holed)[0, 50, 11]


def test_edge_swaps_find_a_grown_and_a_shrunk_box():
    clean = np.full((2, 80, 120), 2.0, np.float32)
    clean[:, 30:50, 40:80] = 1.0  # a box 1 m nearer
    dist, grown, shrunk = M.edge_swaps(clean, clean)
    assert list(dist) == list(range(1, 9)) and (grown == 0).all() and (shrunk == 0).all()
    big = np.full_like(clean, 2.0)
    big[:, 27:53, 37:83] = 1.0  # the box grown by 3 px on every side (its corners lie up to 4 px out)
    _, grown, shrunk = M.edge_swaps(clean, big)
    assert (grown[:3] > 0.9).all() and grown[3] < 0.15 and (grown[4:] == 0).all() and (shrunk == 0).all()
    small = np.full_like(clean, 2.0)
    small[:, 32:48, 42:78] = 1.0  # shrunk by 2 px: the rim of the box reads the background
    _, grown, shrunk = M.edge_swaps(clean, small)
    assert (grown == 0).all() and (shrunk[:2] > 0.9).all() and shrunk[2] < 0.15 and (shrunk[3:] == 0).all()
    # holes are not readings: a box rim of holes swaps nothing
    holed = np.where(big != clean, 0, clean).astype(np.float32)
    _, grown, _ = M.edge_swaps(clean, holed)
    assert (np.nan_to_num(grown) == 0).all()


def test_spectrum_flat_for_white_noise_falls_for_smoothed_noise():
    rng = np.random.default_rng(0)
    clean = np.ones((8, 128, 128), np.float32)
    white = clean + 0.002 * rng.standard_normal(clean.shape)
    freqs, white_lp = M.radial_spectrum(clean, white)
    assert freqs[0] > 0 and freqs[-1] < 0.5 and np.isfinite(white_lp).all()
    assert np.ptp(white_lp) < 0.2 and white_lp.mean() == pytest.approx(np.log10(0.002**2), abs=0.05)
    holes = np.where(rng.random(clean.shape) < 0.3, 0, white)  # holes do not change the level
    assert M.spectrum_dist(white_lp, M.radial_spectrum(clean, holes)[1]) < 0.05
    smooth = clean + ndimage.gaussian_filter(0.002 * rng.standard_normal(clean.shape), (0, 2, 2))
    smooth_lp = M.radial_spectrum(clean, smooth)[1]
    assert smooth_lp[0] > smooth_lp[4] > smooth_lp[8] > smooth_lp[12] and smooth_lp[0] - smooth_lp[-1] > 2
    other = clean + 0.002 * rng.standard_normal(clean.shape)
    assert M.spectrum_distance(clean, white, other) < 0.05 < 1 < M.spectrum_distance(clean, white, smooth)


def test_two_sample_accuracy():
    clean = scene(10)
    real = sensor(clean, seed=1, hole=0)
    kw = dict(n_patches=2000, steps=200)
    same = M.two_sample_accuracy(clean, real, sensor(clean, seed=2, hole=0), **kw)
    assert 0.35 < same < 0.65
    assert M.two_sample_accuracy(clean, real, clean, **kw) > 0.9  # no noise (and no holes to give it away)
    quick = dict(n_patches=300, steps=20, seed=5)
    assert M.two_sample_accuracy(clean, real, clean, **quick) == M.two_sample_accuracy(
        clean, real, clean, **quick
    )
    # patch by patch: the same test, its locations in whole held-out frames
    t = M.two_sample_test(clean, real, clean, **quick)
    hits = (t["real_logit"] > 0).sum() + (t["gen_logit"] <= 0).sum()
    assert hits / (2 * len(t["frame"])) == M.two_sample_accuracy(clean, real, clean, **quick)
    assert len(set(t["frame"].tolist())) == 2 and (t["y"] <= clean.shape[1] - 32).all()  # 20 % of 10 frames


def test_strong_patches_add_hole_mask_and_clean_gradients():
    clean = np.tile(np.float32(1.0) + 0.01 * np.arange(8, dtype=np.float32), (2, 8, 1))  # x slope
    clean[0, 5, 2] = 0  # no clean depth: no gradient into or out of it, not a hole
    noisy = clean + np.float32(0.002)
    noisy[0, 1, 1] = 0  # a hole
    at = np.array([0]), np.array([0]), np.array([0])
    base = M._patches(clean, noisy, *at, 8)
    geo, res, ok, hole, gx, gy = M._patches(clean, noisy, *at, 8, strong=True)
    for a, b in zip(base, (geo, res, ok), strict=True):
        np.testing.assert_array_equal(a, b)  # the first three channels are the quick test's
    expect_hole = np.zeros((1, 8, 8), bool)
    expect_hole[0, 1, 1] = True
    np.testing.assert_array_equal(hole, expect_hole)
    m = clean[0][clean[0] > 0].mean()
    expect_gx = np.full((1, 8, 8), 0.01 / m)
    expect_gx[0, :, -1] = 0  # the last column has no right neighbour
    expect_gx[0, 5, 1:3] = 0  # beside the pixel without clean depth
    np.testing.assert_allclose(gx, expect_gx, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(gy, 0, atol=1e-7)


@pytest.mark.slow
def test_two_sample_strong_accuracy():
    clean = scene(10)
    real = sensor(clean, seed=1)  # Gaussian noise and 2 % random holes
    kw = dict(n_patches=1000, steps=100, threads=1)  # 1 thread: 2 crawl on a shared 2-core machine
    same = M.two_sample_strong_accuracy(clean, real, sensor(clean, seed=2), **kw)
    assert 0.35 < same < 0.65  # a second draw of the same process
    assert M.two_sample_strong_accuracy(clean, real, clean, **kw) > 0.95  # no noise, no holes
    quick = dict(n_patches=300, steps=20, seed=5, threads=1)
    acc = M.two_sample_strong_accuracy(clean, real, clean, **quick)
    assert acc == M.two_sample_strong_accuracy(clean, real, clean, **quick)  # seeded, deterministic
    t = M.two_sample_test(clean, real, clean, patch=64, strong=True, **quick)
    hits = (t["real_logit"] > 0).sum() + (t["gen_logit"] <= 0).sum()
    assert hits / (2 * len(t["frame"])) == acc
    assert len(set(t["frame"].tolist())) == 2 and (t["y"] <= clean.shape[1] - 64).all()  # whole frames
    with pytest.raises(ValueError, match="64x64"):
        M.two_sample_strong_accuracy(clean[:, :60], real[:, :60], clean[:, :60], **quick)


def test_score_keys_and_cached_real_stats(monkeypatch):
    clean = scene()
    real, gen = sensor(clean, seed=1), sensor(clean, seed=2, k=2)
    monkeypatch.setattr(M, "two_sample_accuracy", lambda *a, **k: 0.5)
    monkeypatch.setattr(M, "two_sample_strong_accuracy", lambda *a, **k: 0.75)
    out = M.score(clean, real, gen)
    assert set(out) == M.ALL_METRICS and out["two_sample_acc"] == 0.5 and out["two_sample_strong_acc"] == 0.75
    cached = M.score(clean, real, gen, two_sample=False, real_stats=M.set_stats(clean, real))
    assert cached == {k: v for k, v in out.items() if k not in M.TWO_SAMPLE_METRICS}


def test_floor_of_homogeneous_set_is_small():
    clean = scene(20, seed=3)  # the halves' scenes differ, so the noise must not depend on depth
    real = sensor(clean, seed=1, flat=True)
    fl = M.floor(clean, real)
    assert set(fl) == set(M.SET_METRICS)
    assert fl["residual_w1_mm"] < 0.1 and fl["hole_rate_abs_diff"] < 0.005 and fl["noise_depth_rmse_mm"] < 0.2
    assert fl["spectrum_dist"] < 0.05 and fl["edge_rmse"] < 0.05
    worse = M.score(clean, real, sensor(clean, seed=2, k=2, hole=0.1), two_sample=False)
    assert all(worse[k] > 5 * fl[k] for k in M.SET_METRICS)
