"""Numerics the noise models share: robust residual statistics for fitting, surface incidence
angles and nearest-pixel lateral jitter."""

from __future__ import annotations

import numpy as np

from realdiff.sensors.base import validate_depth, validate_K

KINECT_FX = 585.0  # Kinect v1 depth camera focal length at 640x480 (pixels)
KINECT_BASELINE_M = 0.075  # Kinect v1 projector-to-camera baseline (metres)
MAX_FIT_PIXELS = 2_000_000  # pixels sampled for residual statistics in fit()
MAX_FIT_FRAMES = 16  # frames used where fit() needs image geometry (normals, masks)


def robust_std(x: np.ndarray) -> float:
    """1.4826 * median absolute deviation: the std of a Gaussian, insensitive to outliers."""
    if x.size == 0:
        raise ValueError("no pixels valid in both clean and real depth to fit on")
    x = x.astype(np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def paired_pixels(clean: np.ndarray, real: np.ndarray, max_pixels: int = MAX_FIT_PIXELS):
    """A fixed random sample of pixels: (clean, real) values, 1-D, where clean > 0."""
    c, r = clean.reshape(-1), real.reshape(-1)
    if c.size > max_pixels:
        idx = np.random.default_rng(0).integers(0, c.size, max_pixels)
        c, r = c[idx], r[idx]
    keep = c > 0
    return c[keep], r[keep]


def inliers(c: np.ndarray, r: np.ndarray, max_error_m: float = 0.1) -> np.ndarray:
    """Mask of pixel pairs valid in both with |real - clean| < max_error_m (excludes gross errors)."""
    return (c > 0) & (r > 0) & (np.abs(r - c) < max_error_m)


def frame_subset(n: int, k: int = MAX_FIT_FRAMES) -> np.ndarray:
    """Up to k frame indices spread evenly over n frames."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def valid_diff(P: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
    """Derivative of points P (3, H, W) along image axis 1 (v) or 2 (u), joining valid pixels only.

    The mean of the forward and backward differences whose two pixels are both valid: a central
    difference inside a surface, one-sided next to a hole or the image border, 0 when neither exists.
    """
    Pm = np.moveaxis(P, axis, -1)
    vm = np.moveaxis(valid, axis - 1, -1)
    ok = vm[..., 1:] & vm[..., :-1]
    step = np.where(ok, Pm[..., 1:] - Pm[..., :-1], 0)
    step = np.pad(step, [(0, 0)] * (step.ndim - 1) + [(1, 1)])
    okp = np.pad(ok, [(0, 0)] * (ok.ndim - 1) + [(1, 1)]).astype(np.float32)
    grad = (step[..., 1:] + step[..., :-1]) / np.maximum(okp[..., 1:] + okp[..., :-1], 1)
    return np.moveaxis(grad, -1, axis)


def incidence_angle(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Angle (rad, 0..pi/2) between each pixel's surface normal and its viewing ray, (B, H, W) float32.

    Normals are cross products of the back-projected points' derivatives along u and v, taken between
    valid pixels only; 0 where no normal can be estimated (isolated pixels, holes). Across a depth
    discontinuity the estimate is grazing (close to pi/2), as a real sensor sees it.
    """
    depth, K = validate_depth(depth), validate_K(K)
    B, H, W = depth.shape
    uu, vv = np.meshgrid(np.arange(W), np.arange(H))
    pixels = np.stack([uu, vv, np.ones_like(uu)]).astype(np.float64)
    rays = np.einsum("ij,jhw->ihw", np.linalg.inv(K), pixels).astype(np.float32)  # K^-1 [u, v, 1]
    theta = np.zeros(depth.shape, np.float32)
    for i in range(B):  # one frame at a time keeps memory small
        z = depth[i]
        valid = z > 0
        P = rays * z  # back-projected points (3, H, W)
        n = np.cross(valid_diff(P, valid, 2), valid_diff(P, valid, 1), axis=0)  # surface normal
        num = np.abs((n * P).sum(0))
        den = np.linalg.norm(n, axis=0) * np.linalg.norm(P, axis=0)
        cos = np.divide(num, den, out=np.ones_like(num), where=den > 0)
        theta[i] = np.arccos(np.clip(cos, 0.0, 1.0))
    return theta


def jitter_nearest(arrays: list, sigma_v, sigma_u, rng: np.random.Generator, rows=None, cols=None) -> list:
    """Each output pixel reads the arrays (B, H, W) at its position + N(0, sigma^2) per axis, rounded to
    the nearest pixel (clamped to the image), so no values are blended across edges. The same shift is
    used for every array. sigma may be a scalar or an array of the output's shape, in pixels. The
    output pixels are the arrays' own, or the positions rows (H', 1) x cols (1, W') in them."""
    B, H, W = arrays[0].shape
    rows = np.arange(H)[:, None] if rows is None else rows
    cols = np.arange(W)[None, :] if cols is None else cols
    shape = (B, rows.shape[0], cols.shape[1])
    dv = rng.standard_normal(shape, dtype=np.float32) * sigma_v
    du = rng.standard_normal(shape, dtype=np.float32) * sigma_u
    rows = np.clip(np.rint(rows.astype(np.float32) + dv), 0, H - 1).astype(np.intp)
    cols = np.clip(np.rint(cols.astype(np.float32) + du), 0, W - 1).astype(np.intp)
    frames = np.arange(B)[:, None, None]
    return [a[frames, rows, cols] for a in arrays]
