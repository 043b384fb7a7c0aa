"""Realism metrics: how much does generated noisy depth look like real sensor depth?

Every metric compares two (clean, noisy) sets: `real`, the real sensor's depth for the views that
`clean` was rendered from (a digital twin), and `gen`, a noise model's output for the same `clean`.
Depth arrays are float32 (N, H, W) in metres with 0 = no reading (anything not > 0, NaN included,
counts as no reading). A *hole* is a pixel with a clean depth but no noisy reading; the *residual*
is noisy - clean where both have a reading.

Each set-level metric is a statistic of one set (`residuals`, `hole_rate`, `noise_vs_depth`,
`radial_spectrum`, `edge_profile`) plus a distance between two such statistics. `set_stats` gathers
the statistics of one set and `compare_stats` turns two of them into the `SET_METRICS`; `score`
(generated vs real on the same clean inputs) and `floor` (one half of the real set vs the other, the
best score a perfect noise model can expect) share that code. The real set's stats can be computed
once and reused. `score` adds the paired-frame metrics: the per-frame hole F1 and two two-sample
classifier tests, the slow ones that `FAST_METRICS` leaves out: `two_sample_accuracy` (small
patches, a short training) and `two_sample_strong_accuracy` (larger patches, more input channels, a
deeper network trained longer; about 2 minutes for 200 frames of 480x640 on 2 cores).

Residuals with |noisy - clean| > `OUTLIER_M` (0.5 m) are gross outliers (flying pixels, multipath,
mismatched twin geometry): `residuals` returns them, the residual statistics (W1, noise versus depth,
spectrum) ignore them, and they are not holes.
"""

import numpy as np
from scipy import ndimage, stats
from scipy.fft import rfft2

OUTLIER_M = 0.5  # |residual| above this is a gross outlier, left out of the residual statistics
MIN_SAMPLES = 100  # a curve bin with fewer samples is NaN
SPECTRUM_BINS = 32  # radial bins of normalised frequency in (0, 0.5] cycles/pixel
SPECTRUM_EPS = 1e-12  # m^2 (1 um noise), keeps log10 finite for a noise-free residual

SET_METRICS = ("residual_w1_mm", "hole_rate_abs_diff", "noise_depth_rmse_mm", "spectrum_dist", "edge_rmse")
FAST_METRICS = frozenset(SET_METRICS + ("hole_f1",))  # everything but the two-sample tests
TWO_SAMPLE_METRICS = ("two_sample_acc", "two_sample_strong_acc")
ALL_METRICS = FAST_METRICS | set(TWO_SAMPLE_METRICS)


def _frames(x):
    """float32 (N, H, W) view of a depth array (a single (H, W) image becomes one frame)."""
    x = np.asarray(x, dtype=np.float32)
    return x[None] if x.ndim == 2 else x


def _pair(clean, noisy):
    clean, noisy = _frames(clean), _frames(noisy)
    if clean.shape != noisy.shape or clean.ndim != 3:
        raise ValueError(f"clean {clean.shape} and noisy {noisy.shape} must both be (N, H, W)")
    return clean, noisy


def _residual_image(clean, noisy):
    """(noisy - clean as float64, mask of pixels valid in both and not gross outliers)."""
    r = noisy.astype(np.float64) - clean
    ok = (clean > 0) & (noisy > 0)
    ok &= np.abs(np.where(ok, r, 0.0)) <= OUTLIER_M
    return r, ok


def curve_rmse(a, b):
    """RMSE between two curves over the bins finite in both (NaN if there are none)."""
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[both] - b[both]) ** 2))) if both.any() else float("nan")


# --- 1. residual distribution ------------------------------------------------------------------


def residuals(clean, noisy):
    """1-D float64 array of noisy - clean over the pixels where both have a reading."""
    clean, noisy = _pair(clean, noisy)
    ok = (clean > 0) & (noisy > 0)
    return noisy[ok].astype(np.float64) - clean[ok]


def residual_sample(clean, noisy, max_samples=2_000_000, seed=0):
    """The residuals without gross outliers, subsampled (seeded, without replacement) to at most
    max_samples, sorted."""
    r = residuals(clean, noisy)
    r = r[np.abs(r) <= OUTLIER_M]
    if r.size > max_samples:
        r = r[np.random.default_rng(seed).choice(r.size, max_samples, replace=False)]
    return np.sort(r)


def w1_mm(res_a, res_b):
    """Wasserstein-1 distance between two residual samples (metres), in millimetres."""
    if res_a.size == 0 or res_b.size == 0:
        return float("nan")
    if res_a.size == res_b.size:  # the mean distance between matching quantiles; the same, faster
        return 1000.0 * float(np.mean(np.abs(np.sort(res_a) - np.sort(res_b))))
    return 1000.0 * float(stats.wasserstein_distance(res_a, res_b))


def residual_w1_mm(clean, real, gen, max_samples=2_000_000, seed=0):
    """W1 (mm) between the residual distributions of real and gen, gross outliers ignored."""
    return w1_mm(
        residual_sample(clean, real, max_samples, seed), residual_sample(clean, gen, max_samples, seed)
    )


# --- 2. holes ----------------------------------------------------------------------------------


def hole_rate(clean, noisy):
    """Fraction of the pixels with a clean depth that have no noisy reading (NaN if none)."""
    clean, noisy = _pair(clean, noisy)
    has = clean > 0
    return float(np.mean(~(noisy[has] > 0))) if has.any() else float("nan")


def hole_f1(clean, real, gen):
    """Mean over frames of the F1 of gen's holes against real's, over pixels with a clean depth.

    A frame where neither has a hole scores 1."""
    clean, real = _pair(clean, real)
    gen = _pair(clean, gen)[1]
    has = clean > 0
    true, pred = has & ~(real > 0), has & ~(gen > 0)
    tp = np.sum(true & pred, axis=(1, 2))
    wrong = np.sum(true ^ pred, axis=(1, 2))  # false positives + false negatives
    f1 = np.where(tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 1.0)
    return float(f1.mean())


def hole_scores(clean, real, gen):
    """{"hole_f1", "hole_rate_real", "hole_rate_gen", "hole_rate_abs_diff"} (see hole_f1, hole_rate)."""
    rate_real, rate_gen = hole_rate(clean, real), hole_rate(clean, gen)
    return {
        "hole_f1": hole_f1(clean, real, gen),
        "hole_rate_real": rate_real,
        "hole_rate_gen": rate_gen,
        "hole_rate_abs_diff": abs(rate_real - rate_gen),
    }


# --- 3. noise versus depth ---------------------------------------------------------------------


def noise_vs_depth(clean, noisy, bin_m=0.25, max_depth=5.0):
    """Std (m) of the residual in bins of clean depth [k*bin_m, (k+1)*bin_m) up to max_depth.

    Returns (bin_centres, stds); bins with fewer than MIN_SAMPLES residuals are NaN."""
    clean, noisy = _pair(clean, noisy)
    n_bins = int(round(max_depth / bin_m))
    centres = (np.arange(n_bins) + 0.5) * bin_m
    r, ok = _residual_image(clean, noisy)
    k = np.floor(clean[ok] / bin_m).astype(np.int64)
    r = r[ok][k < n_bins]
    k = k[k < n_bins]
    count = np.bincount(k, minlength=n_bins)
    mean = np.bincount(k, weights=r, minlength=n_bins) / np.maximum(count, 1)
    var = np.bincount(k, weights=(r - mean[k]) ** 2, minlength=n_bins) / np.maximum(count, 1)
    return centres, np.where(count >= MIN_SAMPLES, np.sqrt(var), np.nan)


def noise_vs_depth_rmse(clean, real, gen, bin_m=0.25, max_depth=5.0):
    """RMSE (mm) between the noise-vs-depth curves of real and gen over bins valid in both."""
    a = noise_vs_depth(clean, real, bin_m, max_depth)[1]
    b = noise_vs_depth(clean, gen, bin_m, max_depth)[1]
    return 1000.0 * curve_rmse(a, b)


# --- 4. spatial correlation: radial power spectrum of the residual ------------------------------


def radial_spectrum(clean, noisy, n_bins=SPECTRUM_BINS, chunk=16):
    """log10 of the radially averaged power spectrum of the residual images.

    Per frame: residual (outliers and pixels without both readings set to 0, the valid mean subtracted
    first), |FFT|^2 divided by the number of valid pixels (so white noise of std s is flat at s^2
    whatever the hole rate), averaged over frames and over annuli of normalised frequency
    (cycles/pixel, n_bins bins over (0, 0.5]; DC and the corners beyond 0.5 left out). Returns
    (bin-centre frequencies, log10 power in m^2); a bin with no frequency or no valid frame is NaN."""
    clean, noisy = _pair(clean, noisy)
    n, h, w = clean.shape
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]).ravel()
    k = np.minimum((radius * 2 * n_bins).astype(np.int64), n_bins - 1)
    k[(radius == 0) | (radius > 0.5)] = n_bins  # a discard bin
    power, frames = np.zeros(h * (w // 2 + 1)), 0
    for s in range(0, n, chunk):
        r, ok = _residual_image(clean[s : s + chunk], noisy[s : s + chunk])
        n_ok = ok.sum(axis=(1, 2))
        mean = np.where(ok, r, 0).sum(axis=(1, 2)) / np.maximum(n_ok, 1)
        r = np.where(ok, r - mean[:, None, None], 0).astype(np.float32)
        p = np.abs(rfft2(r)) ** 2 / np.maximum(n_ok, 1)[:, None, None]
        power += p[n_ok > 0].reshape(-1, power.size).sum(axis=0)
        frames += int((n_ok > 0).sum())
    count = np.bincount(k, minlength=n_bins + 1)[:n_bins]
    total = np.bincount(k, weights=power, minlength=n_bins + 1)[:n_bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_power = np.log10(total / (count * frames) + SPECTRUM_EPS)
    return (np.arange(n_bins) + 0.5) / (2 * n_bins), log_power


def spectrum_dist(log_a, log_b):
    """Mean absolute difference (decades of power) of two log10 spectra over bins finite in both."""
    both = np.isfinite(log_a) & np.isfinite(log_b)
    return float(np.mean(np.abs(log_a[both] - log_b[both]))) if both.any() else float("nan")


def spectrum_distance(clean, real, gen):
    """Mean absolute difference of the log10 radial residual spectra of real and gen."""
    return spectrum_dist(radial_spectrum(clean, real)[1], radial_spectrum(clean, gen)[1])


# --- 5. holes near depth discontinuities -------------------------------------------------------


def depth_edges(clean, rel_jump=0.05):
    """Mask of pixels beside a depth discontinuity of clean (N, H, W).

    A pixel pair (horizontal or vertical neighbours) is a discontinuity when |difference| >
    rel_jump * the nearer depth; a pair with one depth 0 (a hole border) always is. Both pixels
    of the pair are marked."""
    clean = _frames(clean)
    edges = np.zeros(clean.shape, dtype=bool)
    for axis in (1, 2):
        a = np.delete(clean, -1, axis=axis)
        b = np.delete(clean, 0, axis=axis)
        jump = np.abs(a - b) > rel_jump * np.minimum(a, b)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edges[tuple(lo)] |= jump
        edges[tuple(hi)] |= jump
    return edges


def edge_distance(clean):
    """Euclidean distance (pixels) of every pixel to the nearest depth edge of its frame (inf if none)."""
    edges = depth_edges(clean)
    dist = np.full(edges.shape, np.inf)
    for i, e in enumerate(edges):  # one distance transform per frame
        if e.any():
            dist[i] = ndimage.distance_transform_edt(~e)
    return dist


def edge_profile(clean, noisy, max_dist=10, dist=None):
    """Hole rate versus distance to the nearest depth edge of clean.

    Over pixels with a clean depth; distances rounded to integers 0..max_dist, the last bin holding
    everything at max_dist or beyond. Returns (distances, hole rates); bins with fewer than
    MIN_SAMPLES pixels are NaN. `dist` may pass a precomputed edge_distance(clean)."""
    clean, noisy = _pair(clean, noisy)
    dist = edge_distance(clean) if dist is None else dist
    has = clean > 0
    k = np.minimum(np.round(dist[has]), max_dist).astype(np.int64)
    count = np.bincount(k, minlength=max_dist + 1)
    holes = np.bincount(k, weights=~(noisy[has] > 0), minlength=max_dist + 1)
    rate = np.where(count >= MIN_SAMPLES, holes / np.maximum(count, 1), np.nan)
    return np.arange(max_dist + 1), rate


def edge_profile_rmse(clean, real, gen, max_dist=10):
    """RMSE between the edge hole-rate profiles of real and gen over bins valid in both."""
    dist = edge_distance(clean)
    return curve_rmse(
        edge_profile(clean, real, max_dist, dist)[1], edge_profile(clean, gen, max_dist, dist)[1]
    )


def edge_swaps(clean, noisy, max_dist=8, rel_jump=0.1, jumps=None):
    """Where the noisy depth puts a depth edge: how often a reading near one takes the other side's depth.

    Around each pixel of clean, the near (foreground) and far (background) depth are the least and
    the greatest clean depth in a box of 2 max_dist + 1 px, and the pixel is beside a jump where they
    differ by more than rel_jump * the near one; it is background if its clean depth lies nearer
    the far one. For d = 1..max_dist px from the other side (distances rounded), `grown` is the
    fraction of background pixels whose reading lies nearer the foreground depth (the foreground
    grown, or the edge moved into the background) and `shrunk` that of foreground pixels reading
    nearer the background, both over pixels with a reading. Returns (distances, grown, shrunk);
    bins with fewer than MIN_SAMPLES readings are NaN. With `jumps`, the sorted lower bounds of
    jump-size bins of (far - near) / near (the last bin open above; the edge stage's), grown and
    shrunk are (len(jumps), max_dist), one row a bin, from one pass over the frames."""
    clean, noisy = _pair(clean, noisy)
    bounds = np.array([*(jumps if jumps is not None else [0.0]), np.inf])
    n_bins = len(bounds) - 1
    counts = np.zeros((4, n_bins, max_dist))  # grown, background readings, shrunk, foreground readings
    for c, z in zip(clean, noisy):
        near = ndimage.minimum_filter(np.where(c > 0, c, np.inf), 2 * max_dist + 1)
        far = ndimage.maximum_filter(c, 2 * max_dist + 1)
        beside = (c > 0) & np.isfinite(near) & (far - near > rel_jump * near)
        back = beside & (c > (near + far) / 2)
        front = beside & ~back
        rel = np.where(beside, far - near, 0.0) / np.where(beside, near, 1.0)
        which = np.searchsorted(bounds, rel, side="right") - 1  # the pixel's jump bin (-1: below all)
        reads_near = np.abs(z - near) < np.abs(z - far)
        for side, other, swapped, row in ((back, front, reads_near, 0), (front, back, ~reads_near, 2)):
            d = np.round(ndimage.distance_transform_edt(~other)).astype(np.int64)
            pick = side & (z > 0) & (which >= 0) & (d >= 1) & (d <= max_dist)
            index = which * max_dist + d - 1
            size = n_bins * max_dist
            counts[row] += np.bincount(index[pick & swapped], minlength=size).reshape(n_bins, max_dist)
            counts[row + 1] += np.bincount(index[pick], minlength=size).reshape(n_bins, max_dist)
    ok = counts[[1, 3]] >= MIN_SAMPLES
    grown, shrunk = np.where(ok, counts[[0, 2]] / np.maximum(counts[[1, 3]], 1), np.nan)
    if jumps is None:
        grown, shrunk = grown[0], shrunk[0]
    return np.arange(1, max_dist + 1), grown, shrunk


# --- set statistics and their comparison (shared by score and floor) ---------------------------


def set_stats(clean, noisy, max_samples=2_000_000, seed=0, dist=None):
    """The per-set statistics behind SET_METRICS, for compare_stats (compute once for the real set)."""
    clean, noisy = _pair(clean, noisy)
    return {
        "residuals": residual_sample(clean, noisy, max_samples, seed),
        "hole_rate": hole_rate(clean, noisy),
        "noise_vs_depth": noise_vs_depth(clean, noisy)[1],
        "spectrum": radial_spectrum(clean, noisy)[1],
        "edge_profile": edge_profile(clean, noisy, dist=dist)[1],
    }


def compare_stats(ref, other):
    """SET_METRICS between two set_stats dicts (all symmetric; 0 when the sets match)."""
    return {
        "residual_w1_mm": w1_mm(ref["residuals"], other["residuals"]),
        "hole_rate_abs_diff": abs(ref["hole_rate"] - other["hole_rate"]),
        "noise_depth_rmse_mm": 1000.0 * curve_rmse(ref["noise_vs_depth"], other["noise_vs_depth"]),
        "spectrum_dist": spectrum_dist(ref["spectrum"], other["spectrum"]),
        "edge_rmse": curve_rmse(ref["edge_profile"], other["edge_profile"]),
    }


# --- 6. two-sample classifier tests ------------------------------------------------------------


def _patches(clean, noisy, frame, y, x, patch, strong=False):
    """Cut (n, patch, patch) windows at (frame, y, x): (clean / m - 1, (noisy - clean) / m, noisy valid).

    m is the clean patch's mean depth; missing readings are 0 in the first two. With strong, three
    more: the hole mask (a clean depth, no noisy reading) and the clean depth's finite differences
    along x and along y, (clean[., j + 1] - clean[., j]) / m, 0 where either pixel has no clean depth
    and in the last column (row)."""
    rows = y[:, None, None] + np.arange(patch)[None, :, None]
    cols = x[:, None, None] + np.arange(patch)[None, None, :]
    c, z = clean[frame[:, None, None], rows, cols], noisy[frame[:, None, None], rows, cols]
    c_ok, z_ok = c > 0, z > 0
    m = np.where(c_ok, c, 0).sum(axis=(1, 2)) / np.maximum(c_ok.sum(axis=(1, 2)), 1)
    m = np.where(m > 0, m, 1.0)[:, None, None]
    out = (np.where(c_ok, c / m - 1, 0), np.where(c_ok & z_ok, (z - c) / m, 0), c_ok & z_ok)
    if not strong:
        return out
    grads = []
    for axis in (2, 1):
        g = np.zeros(c.shape, np.float32)
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        g[lo] = np.where(c_ok[lo] & c_ok[hi], (c[hi] - c[lo]) / m, 0)
        grads.append(g)
    return (*out, c_ok & ~z_ok, *grads)


def _robust_scale(values, cap=0.05):
    """Mean of min(|values|, cap) (the cap: outliers and depth edges), 1.0 when that is 0 or empty."""
    scale = float(np.mean(np.minimum(np.abs(values), cap))) if values.size else 0.0
    return scale if scale > 0 else 1.0


def _discriminator(channels, strong=False):
    """Strided 3x3 convolutions (every pixel seen), global average, one logit: three (16, 32, 32
    channels; 32 -> 4 pixels), or with strong four (16, 32, 64, 64; 64 -> 4 pixels)."""
    import torch.nn as nn

    widths = (16, 32, 64, 64) if strong else (16, 32, 32)
    layers = []
    for w_in, w_out in zip((channels,) + widths[:-1], widths, strict=True):
        layers += [nn.Conv2d(w_in, w_out, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 1))


def _accuracy(t) -> float:
    """Held-out accuracy of a two_sample_test result: real logits > 0, generated ones <= 0."""
    return float((t["real_logit"] > 0).sum() + (t["gen_logit"] <= 0).sum()) / (2 * len(t["frame"]))


def two_sample_accuracy(clean, real, gen, patch=32, n_patches=4000, steps=300, batch=64, seed=0, threads=2):
    """Held-out accuracy of a small CNN telling (clean, real) patches from (clean, gen) patches.

    n_patches locations (patches whose centre has a clean depth) are drawn once and cut from both
    sets; frames are split 80/20 into train and test (no frame in both). Input channels: the clean
    patch and noisy - clean, both divided by the clean patch's mean depth m (clean as clean / m - 1),
    and where both have a reading. The residual channel is further divided by one scale shared by
    both sets (their mean |residual| over the training patches): at ~1e-3 of the depth it is too
    small a signal to learn in a few hundred steps otherwise. Each training batch holds the same
    locations from both sets. 0.5 means gen cannot be told from real, 1.0 that it always can.
    Seeded and deterministic; runs on `threads` CPU threads. two_sample_strong_accuracy is a
    stronger version."""
    return _accuracy(two_sample_test(clean, real, gen, patch, n_patches, steps, batch, seed, threads))


def two_sample_strong_accuracy(
    clean, real, gen, patch=64, n_patches=4000, steps=1500, batch=64, seed=0, threads=2
):
    """two_sample_accuracy's test made stronger (two_sample_test with strong=True).

    Larger patches (64 px), three more input channels (the hole mask, and the clean depth's x and y
    finite differences divided by m, scaled by one robust scale like the residual), a deeper CNN
    (four strided convolutions) and five times the training steps; the same held-out 80/20 split
    by frames. With the defaults, 200 frames of 480x640 take about 2 minutes of one CPU core (1.5-2
    minutes with threads=1 beside another busy process on 2 cores; threads=2 there was several
    times slower)."""
    t = two_sample_test(clean, real, gen, patch, n_patches, steps, batch, seed, threads, strong=True)
    return _accuracy(t)


def two_sample_test(
    clean, real, gen, patch=32, n_patches=4000, steps=300, batch=64, seed=0, threads=2, strong=False
) -> dict:
    """The test behind two_sample_accuracy (with strong, two_sample_strong_accuracy; give it that
    function's patch and steps too), patch by patch: the classifier's logits (> 0: real) for the real
    and the generated patch at each test location, and the locations (frame, y, x of the top-left
    corner), as numpy arrays keyed real_logit, gen_logit, frame, y, x."""
    import torch

    clean, real = _pair(clean, real)
    gen = _pair(clean, gen)[1]
    n, h, w = clean.shape
    if n < 2 or h < patch or w < patch:
        raise ValueError(f"need at least 2 frames of at least {patch}x{patch} pixels, got {clean.shape}")
    rng = np.random.default_rng(seed)
    frame, y, x = (rng.integers(0, hi, 4 * n_patches) for hi in (n, h - patch + 1, w - patch + 1))
    keep = np.flatnonzero(clean[frame, y + patch // 2, x + patch // 2] > 0)[:n_patches]
    frame, y, x = frame[keep], y[keep], x[keep]
    is_test = np.isin(frame, rng.permutation(n)[: max(1, int(round(0.2 * n)))])
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(train) == 0 or len(test) == 0:
        raise ValueError("no patch locations in the train or the test frames")

    sets = [_patches(clean, noisy, frame, y, x, patch, strong) for noisy in (real, gen)]
    scale = _robust_scale(np.concatenate([s[1][train][s[2][train]] for s in sets]))
    if strong:  # the clean gradients, the same in both sets, get a scale of their own
        grad_scale = _robust_scale(np.concatenate([g[train].ravel() for g in sets[0][4:]]))

    def channels(geo, res, ok, *more):
        """The network's float32 input (n, channels, patch, patch), filled channel by channel."""
        out = [geo, np.clip(res / scale, -20, 20), ok]
        if strong:
            hole, gx, gy = more
            out += [hole, np.clip(gx / grad_scale, -20, 20), np.clip(gy / grad_scale, -20, 20)]
        arr = np.empty((len(geo), len(out), patch, patch), np.float32)
        for i, a in enumerate(out):
            arr[:, i] = a
        return torch.from_numpy(arr)

    real_x = channels(*sets[0])
    sets[0] = None  # free the real set's float64 patches before making the generated set's input
    gen_x = channels(*sets[1])
    del sets

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _discriminator(real_x.shape[1], strong)
            opt = torch.optim.Adam(net.parameters(), lr=2e-3)
            labels = torch.cat([torch.ones(batch), torch.zeros(batch)])
            for _ in range(steps):
                idx = torch.from_numpy(rng.choice(train, batch))
                logits = net(torch.cat([real_x[idx], gen_x[idx]])).squeeze(1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                idx = torch.from_numpy(test)
                real_logit, gen_logit = (
                    net(real_x[idx]).squeeze(1).numpy(),
                    net(gen_x[idx]).squeeze(1).numpy(),
                )
    finally:
        torch.set_num_threads(old_threads)
    return {
        "real_logit": real_logit,
        "gen_logit": gen_logit,
        "frame": frame[test],
        "y": y[test],
        "x": x[test],
    }


# --- scores ------------------------------------------------------------------------------------


def score(clean, real, gen, two_sample=True, seed=0, real_stats=None, threads=2):
    """All metrics of gen against real on the same clean inputs, as a flat dict.

    Keys: SET_METRICS, "hole_f1" and (with two_sample) TWO_SAMPLE_METRICS: "two_sample_acc"
    (two_sample_accuracy) and "two_sample_strong_acc" (two_sample_strong_accuracy), both with this
    seed, on `threads` CPU threads. `real_stats` may pass a cached set_stats(clean, real, seed=seed)."""
    clean, real = _pair(clean, real)
    gen = _pair(clean, gen)[1]
    dist = edge_distance(clean)
    ref = set_stats(clean, real, seed=seed, dist=dist) if real_stats is None else real_stats
    out = compare_stats(ref, set_stats(clean, gen, seed=seed, dist=dist))
    out["hole_f1"] = hole_f1(clean, real, gen)
    if two_sample:
        out["two_sample_acc"] = two_sample_accuracy(clean, real, gen, seed=seed, threads=threads)
        out["two_sample_strong_acc"] = two_sample_strong_accuracy(
            clean, real, gen, seed=seed, threads=threads
        )
    return out


def floor(clean, real, seed=0):
    """SET_METRICS between the first and the second contiguous half of the real set.

    What a perfect noise model would score on these metrics with this much data (paired-frame
    metrics, hole F1 and the two-sample tests, are not defined across different frames)."""
    clean, real = _pair(clean, real)
    half = len(clean) // 2
    if half == 0:
        raise ValueError("floor needs at least 2 frames")
    return compare_stats(
        set_stats(clean[:half], real[:half], seed=seed), set_stats(clean[half:], real[half:], seed=seed)
    )
