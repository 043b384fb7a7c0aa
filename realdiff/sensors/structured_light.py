"""``structured-light``: a simulation of a Kinect-style triangulating sensor, in the spirit of
Barron & Malik (2013), "Intrinsic scene properties from a single RGB-D image", CVPR, and Handa,
Whelan, McDonald & Davison (2014), "A benchmark for RGB-D visual odometry, 3D reconstruction and
SLAM", ICRA (their Kinect noise model: disparity with sub-pixel shifts, quantisation and
interpolation).

Geometry: the projector sits at (+b, 0, 0) in camera coordinates (x right, b = 0.075 m), parallel
to the camera and with the same focal length. A surface point at depth z seen at camera column u
lies on projector column u - d, with the disparity d = b fx / z (image pixels).

1. Projector shadows. Pixel u receives no light when a pixel further toward the projector (u' > u)
   lies on the same or an earlier projector column: min over u' > u of (u' - d(u')) <= u - d(u).
   Shadows therefore fall on the far surface just left (-x) of an object's left edge.
2. Dot pattern. A fixed pseudo-random binary dot pattern (density ``dot_density``, from
   ``pattern_seed``, not from rng) is projected; pixel u sees the dot at projector column
   round(u - d). A pixel is invalid when its ``window_px`` x ``window_px`` window holds fewer than
   ``min_dots`` visible dots (no dots on holes or in shadow), and when the disparity range in the
   window exceeds ``max_disparity_range_px`` (block matching fails on depth discontinuities).
3. Measurement. Each pixel reads the disparity at its position shifted by N(0, shift_px^2)
   (nearest neighbour), in the sensor's own disparity units D = d * sensor_fx / fx, adds
   N(0, sigma_disparity_px^2) and quantises to 1/8 pixel: D_q = round(8 D) / 8. Then
   z' = b sensor_fx / D_q, so depth steps are z^2 / (8 b sensor_fx) (5.6 mm at 1.4 m), whatever
   the image resolution. Pixels also drop out with probability ``p_drop``, and readings outside
   [min_depth_m, max_depth_m] are dropped.

The sensor is simulated on its own pixel grid: an image whose focal length is not ``sensor_fx`` (a
128x128 simgen camera has fx = 155) is resampled onto the grid the sensor would have over the same
field of view (focal length sensor_fx; inverse depth interpolated within surfaces, the nearest
pixel across depth steps and holes), simulated there, and each image pixel reads the sensor pixel
at its centre, as a real sensor's image resized to the camera's would. Its dot pattern, window and
disparity-range test are therefore the same size in degrees at every resolution. An image pixel
with no clean depth reads nothing: on a coarser sensor grid (fx above sensor_fx) one sensor pixel
stands for several image pixels, holes included, but holds the depth of only one of them.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import ndimage

from realdiff.sensors.base import NoiseModel, check_pairs, require, validate_depth, validate_K
from realdiff.sensors.numerics import (
    KINECT_BASELINE_M,
    KINECT_FX,
    frame_subset,
    inliers,
    jitter_nearest,
    paired_pixels,
    robust_std,
)


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """For each of n_out pixels spread over the extent of n_in pixels, the index of the input pixel
    holding its centre: floor((i + 0.5) n_in / n_out)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp), n_in - 1)


def _interpolation_taps(n_out: int, n_in: int):
    """Linear interpolation onto n_out pixels over the extent of n_in: the two input indices and the
    weight of the second, for each output pixel centre."""
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(x).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), (x - i0).astype(np.float32)


def _resampled_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K of the same view on a grid sx times finer in u and sy in v (pixel centres at integers)."""
    Ks = K.copy()
    Ks[0, 0], Ks[0, 2] = K[0, 0] * sx, (K[0, 2] + 0.5) * sx - 0.5
    Ks[1, 1], Ks[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return Ks


_SENSOR_CHUNK_PIXELS = 1 << 22  # sensor-grid pixels simulated at once (bounds memory)


@functools.lru_cache(maxsize=8)
def _dot_pattern(seed: int, density: float, H: int, W: int) -> np.ndarray:
    pattern = np.random.default_rng(seed).random((H, 2 * W)) < density
    pattern.flags.writeable = False
    return pattern


@dataclasses.dataclass(repr=False)
class StructuredLight(NoiseModel):
    """A Kinect-style structured-light sensor: projector shadows, dot-pattern and discontinuity
    invalidation, lateral shifts, sub-pixel disparity noise and 1/8 px disparity quantisation (module
    docstring). The projector is at +x (baseline_m to the camera's right). It is simulated on the
    sensor's own pixel grid (focal length sensor_fx, the image's field of view) and read back at the
    image's pixels, so its output is the same in degrees at any resolution.

    baseline_m: projector-camera baseline (m); sensor_fx: the emulated sensor's focal length (px), in
    whose pixels everything below is given; sigma_disparity_px: disparity noise std; shift_px: std of
    the lateral shift of the sampling position; subpixel_steps: disparity quantisation steps per
    pixel; dot_density: fraction of projector pixels that are dots; window_px: matching window side
    (odd); min_dots: fewest visible dots in a window for a reading; max_disparity_range_px: largest
    disparity range in a window for a reading; pattern_seed: seed of the fixed dot pattern; p_drop:
    extra per-pixel random dropout (fitted); min_depth_m, max_depth_m: measurable range.
    """

    baseline_m: float = KINECT_BASELINE_M
    sensor_fx: float = KINECT_FX
    sigma_disparity_px: float = 0.07
    shift_px: float = 0.5
    subpixel_steps: int = 8
    dot_density: float = 0.15
    window_px: int = 9
    min_dots: int = 4
    max_disparity_range_px: float = 2.0
    pattern_seed: int = 0
    p_drop: float = 0.0
    min_depth_m: float = 0.4
    max_depth_m: float = 8.0
    name = "structured-light"
    version = "2"

    def __post_init__(self):
        super().__post_init__()
        for key in ("baseline_m", "sensor_fx", "subpixel_steps", "max_disparity_range_px"):
            require(getattr(self, key) > 0, f"structured-light: {key} must be > 0")
        for key in ("sigma_disparity_px", "shift_px", "min_dots", "min_depth_m"):
            require(getattr(self, key) >= 0, f"structured-light: {key} must be >= 0")
        require(0 <= self.dot_density <= 1, "structured-light: dot_density must be in [0, 1]")
        require(0 <= self.p_drop <= 1, "structured-light: p_drop must be in [0, 1]")
        require(
            self.window_px >= 1 and self.window_px % 2 == 1,
            "structured-light: window_px must be an odd number >= 1",
        )
        require(self.max_depth_m > self.min_depth_m, "structured-light: max_depth_m must be > min_depth_m")

    def dot_pattern(self, H: int, W: int) -> np.ndarray:
        """The fixed projector dot pattern (bool, H x 2W projector columns; column p is at index
        p mod 2W, so columns -W..W-1 are all distinct)."""
        return _dot_pattern(self.pattern_seed, self.dot_density, H, W)

    def _disparity(self, depth: np.ndarray, fx: float) -> np.ndarray:
        """Image disparity d = b fx / z (px), 0 where there is no surface."""
        valid = depth > 0
        return np.where(valid, self.baseline_m * fx / np.where(valid, depth, 1), 0).astype(np.float32)

    def _masks(self, d: np.ndarray) -> dict:
        B, H, W = d.shape
        valid = d > 0
        proj_col = np.arange(W, dtype=np.float32) - d  # projector column each pixel lies on
        # Shadow: some pixel further right (toward the projector) is on the same or an earlier column.
        min_from_here = np.minimum.accumulate(proj_col[..., ::-1], axis=-1)[..., ::-1]  # over u' >= u
        min_right = np.concatenate([min_from_here[..., 1:], np.full((B, H, 1), np.inf, np.float32)], -1)
        shadow = valid & (min_right <= proj_col)
        # Dots: each lit surface pixel shows the pattern at its projector column.
        pattern = self.dot_pattern(H, W)
        cols = np.mod(np.rint(proj_col).astype(np.int64), pattern.shape[1])
        seen = pattern[np.arange(H)[:, None], cols] & valid & ~shadow
        w = (1, self.window_px, self.window_px)
        counts = ndimage.uniform_filter(seen.astype(np.float32), size=w, mode="constant") * w[1] * w[2]
        few_dots = valid & (np.rint(counts) < self.min_dots)
        # Discontinuity: too wide a disparity range among the surface pixels in the window.
        hi = ndimage.maximum_filter(d, size=w, mode="nearest")
        lo = ndimage.minimum_filter(np.where(valid, d, np.inf), size=w, mode="nearest")
        discontinuity = valid & (hi - lo > self.max_disparity_range_px)
        return {"shadow": shadow, "few_dots": few_dots, "discontinuity": discontinuity}

    def _sensor_grid(self, shape: tuple, K: np.ndarray):
        """The sensor's grid over an image of shape (H, W) with intrinsics K: its (Hs, Ws), its K,
        and the sensor pixel each image pixel reads, rows (H, 1) and cols (1, W). The image's own
        grid where its focal length already is sensor_fx (to 0.1 %)."""
        H, W = shape
        sx, sy = self.sensor_fx / K[0, 0], self.sensor_fx / K[1, 1]
        Hs, Ws = max(1, round(H * sy)), max(1, round(W * sx))
        if abs(sx - 1) < 1e-3 and abs(sy - 1) < 1e-3:
            Hs, Ws = H, W
        return (
            (Hs, Ws),
            _resampled_K(K, Ws / W, Hs / H),
            _nearest_index(H, Hs)[:, None],
            _nearest_index(W, Ws)[None, :],
        )

    def _to_sensor(self, depth: np.ndarray, Hs: int, Ws: int) -> np.ndarray:
        """Depth (B, H, W) resampled onto an Hs x Ws grid over the same field of view. Onto a finer
        grid, inverse depth is interpolated bilinearly (exact on planes) among four valid
        neighbours whose disparity differs by at most max_disparity_range_px sensor pixels; across
        larger steps and next to pixels with no reading, the nearest pixel is read, so no depth is
        invented between surfaces. Onto a coarser grid, the nearest pixel is read."""
        B, H, W = depth.shape
        if (Hs, Ws) == (H, W):
            return depth
        nearest = depth[:, _nearest_index(Hs, H)[:, None], _nearest_index(Ws, W)[None, :]]
        if Hs < H or Ws < W:
            return nearest
        (r0, r1, wy), (c0, c1, wx) = _interpolation_taps(Hs, H), _interpolation_taps(Ws, W)
        inv = np.where(depth > 0, 1 / np.where(depth > 0, depth, 1), 0).astype(np.float32)
        top, bottom = inv[:, r0], inv[:, r1]
        corners = [top[:, :, c0], top[:, :, c1], bottom[:, :, c0], bottom[:, :, c1]]
        lo, hi = np.minimum.reduce(corners), np.maximum.reduce(corners)
        wx, wy = wx[None, None, :], wy[None, :, None]
        lerp = (1 - wy) * ((1 - wx) * corners[0] + wx * corners[1]) + wy * (
            (1 - wx) * corners[2] + wx * corners[3]
        )
        smooth = (lo > 0) & (
            (hi - lo) * np.float32(self.baseline_m * self.sensor_fx) <= self.max_disparity_range_px
        )
        return np.where(smooth, 1 / np.where(smooth, lerp, 1), nearest).astype(np.float32)

    def _simulate(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator | None):
        """The masks and (given rng) the reading at the image's pixels, (B, H, W) each, simulated on
        the sensor's grid (in chunks of frames, to bound memory, when that grid is not the image's).
        Only the pixels read are measured: each draws its noise as it would on the full grid.

        Both are limited to the image pixels with a surface. On a coarser sensor grid (fx above
        sensor_fx) the image -> sensor -> image round trip is not the identity: a sensor pixel
        stands for several image pixels but holds the depth of one, so an image pixel in a hole can
        read a sensor pixel that took its neighbour's surface (and the reverse)."""
        (Hs, Ws), Ks, rows, cols = self._sensor_grid(depth.shape[1:], K)
        native = (Hs, Ws) == depth.shape[1:]
        step = len(depth) if native else max(1, _SENSOR_CHUNK_PIXELS // (Hs * Ws))
        masks, readings = [], []
        for i in range(0, len(depth), step):
            surface = depth[i : i + step] > 0  # at the image's pixels
            d = self._disparity(self._to_sensor(depth[i : i + step], Hs, Ws), Ks[0, 0])
            m = self._masks(d)
            masks.append({k: v[:, rows, cols] & surface for k, v in m.items()})
            if rng is not None:
                readings.append(self._measure(d, m, Ks, rows, cols, surface, rng))
        masks = {k: np.concatenate([m[k] for m in masks]) for k in masks[0]}
        return masks, (np.concatenate(readings) if rng is not None else None)

    def _measure(self, d, m, K, rows, cols, surface, rng):
        """Depth read at the sensor pixels rows x cols, from the sensor-grid disparity d and masks
        m: lateral shift, disparity noise, quantisation, dropout and range (module docstring); none
        where ``surface`` (bool, the shape of the output: the image pixels with a reading) is
        False."""
        fx, fy = K[0, 0], K[1, 1]
        shift = self.shift_px / self.sensor_fx  # sensor pixels -> this grid's pixels: * fx or * fy
        (d_read,) = jitter_nearest([d], shift * fy, shift * fx, rng, rows, cols)
        D = d_read * np.float32(self.sensor_fx / fx)  # in the sensor's disparity pixels
        D = D + np.float32(self.sigma_disparity_px) * rng.standard_normal(D.shape, dtype=np.float32)
        D = np.round(D * self.subpixel_steps) / np.float32(self.subpixel_steps)
        dropped = rng.random(D.shape, dtype=np.float32) < self.p_drop
        z = np.float32(self.baseline_m * self.sensor_fx) / np.where(D > 0, D, 1)
        invalid = (m["shadow"] | m["few_dots"] | m["discontinuity"])[:, rows, cols]
        keep = (
            surface
            & (d[:, rows, cols] > 0)
            & (d_read > 0)
            & (D > 0)
            & ~dropped
            & (z >= self.min_depth_m)
            & (z <= self.max_depth_m)
            & ~invalid
        )
        return np.where(keep, z, 0).astype(np.float32)

    def masks(self, depth: np.ndarray, K: np.ndarray) -> dict:
        """The geometric invalidation masks of clean depth (no randomness), bool (B, H, W) each:
        "shadow" (no projector light), "few_dots" (fewer than min_dots dots in the window),
        "discontinuity" (disparity range in the window above max_disparity_range_px); computed on
        the sensor's grid and read at the image's pixels."""
        return self._simulate(validate_depth(depth), validate_K(K), None)[0]

    def _noisify(self, depth, K, rng):
        return self._simulate(depth, K, rng)[1]

    @classmethod
    def fit(cls, clean, real, K):
        """sigma_disparity_px: robust std of the sensor-disparity residual b sensor_fx (1/real -
        1/clean) (pixels valid in both, |real - clean| < 0.1 m), less the quantisation's share
        (1/steps)^2 / 12 in variance; p_drop: so that 1 - (1 - p_drop)(1 - geometric hole rate of the
        default model on up to 16 clean frames) equals the real hole rate where clean is valid."""
        K = check_pairs(clean, real, K)
        base = cls()
        c, r = paired_pixels(clean, real)
        keep = inliers(c, r)
        bf = base.baseline_m * base.sensor_fx
        resid = bf / r[keep].astype(np.float64) - bf / c[keep].astype(np.float64)
        var = robust_std(resid) ** 2 - (1.0 / base.subpixel_steps) ** 2 / 12
        sigma = math.sqrt(max(var, 0.0))

        hole_rate = float(np.mean(r == 0)) if c.size else 0.0
        sub = clean[frame_subset(len(clean))]
        m = base.masks(sub, K)
        out_of_range = (sub < base.min_depth_m) | (sub > base.max_depth_m)
        geometric = m["shadow"] | m["few_dots"] | m["discontinuity"] | out_of_range
        geometric_rate = float(np.mean(geometric[sub > 0])) if (sub > 0).any() else 0.0
        p_drop = float(np.clip(1 - (1 - hole_rate) / max(1 - geometric_rate, 1e-6), 0, 1))
        return cls(sigma_disparity_px=sigma, p_drop=p_drop)
