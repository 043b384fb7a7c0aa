"""Depth noise models: one interface, and four baselines of a structured-light (Kinect v1) sensor.

The interface
-------------
A noise model turns clean depth into realistic noisy depth::

    noisy = model.noisify(depth, K, rng)      # or model(depth, K, rng)

- ``depth``: numpy float32 array (B, H, W), z-depth in metres along the optical axis, 0 = no reading;
- ``K``: 3x3 intrinsics, OpenCV convention (fx = K[0,0], fy = K[1,1], cx = K[0,2], cy = K[1,2], pixel
  centres at integer coordinates);
- ``rng``: a ``numpy.random.Generator``; the same seed gives the same output;
- ``noisy``: float32 (B, H, W) metres, 0 = no reading. Pixels that are 0 in ``depth`` stay 0. The input
  is never modified.

Any plain function ``f(depth, K, rng)`` with this contract is a noise model too: ``as_noiser(f)`` wraps
it (with the same input and output checks). Models are saved with ``model.to_json()`` and loaded with
``load_noiser(name_or_path)``; ``Model.fit(clean, real, K)`` estimates a model's parameters from pairs
of clean and real sensor depth.

The models
----------
``identity``
    The clean depth, unchanged.

``gaussian``
    z' = z + N(0, sigma^2) on valid pixels; a value <= 0 becomes 0 (no reading).

``axial-lateral``
    Nguyen, Izadi & Lovell (2012), "Modeling Kinect sensor noise for improved 3D reconstruction and
    tracking", 3DIMPVT. With theta the angle between the surface normal (from depth gradients,
    back-projected with K) and the viewing ray, clipped to theta_max < pi/2::

        axial   sigma_z(z, theta) = a + b (z - c)^2 + d / sqrt(z) * theta^2 / (pi/2 - theta)^2   [m]
                a = 0.0012, b = 0.0019, c = 0.4, d = 0.0001   (z in m, theta in rad)
        lateral sigma_L(theta)    = 0.8 + 0.035 * theta / (pi/2 - theta)   [px of the 585 px Kinect]

    Each pixel reads the clean depth at its position shifted by N(0, sigma_L^2) in u and in v (nearest
    neighbour, so depth edges do not blend), then z' = z + s * sigma_z * N(0, 1) with a fitted scale s.
    A pixel drops out with probability 1 - (1 - p_drop)(1 - p_theta), where p_theta rises linearly from
    0 at ``grazing_start_deg`` to 1 at 90 degrees.

``structured-light``
    A simulation of a Kinect-style triangulating sensor, in the spirit of Barron & Malik (2013),
    "Intrinsic scene properties from a single RGB-D image", CVPR, and Handa, Whelan, McDonald & Davison
    (2014), "A benchmark for RGB-D visual odometry, 3D reconstruction and SLAM", ICRA (their Kinect
    noise model: disparity with sub-pixel shifts, quantisation and interpolation).

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

``range-scaled`` (a wrapper, built by ``--range-scale CAM=S`` of noisify and policies eval)
    Any model built S times smaller: z' = S * model(z / S). For the structured-light model this is
    exactly the same sensor with baseline S b and range S [min, max] (similar triangles): how a
    short-range wrist camera gets a sensor from models of a room-scale one.

Pixel-sized parameters: the lateral noise of both Kinect models (``lateral_px``, ``shift_px``) is
given in pixels of the 585 px Kinect image and scaled by fx / sensor_fx, so it is the same in metres
at any resolution. The structured-light model runs on the sensor's own pixel grid: an image whose
focal length is not ``sensor_fx`` (a 128x128 simgen camera has fx = 155) is resampled onto the
grid the sensor would have over the same field of view (focal length sensor_fx; inverse depth
interpolated within surfaces, the nearest pixel across depth steps and holes), simulated there, and
each image pixel reads the sensor pixel at its centre, as a real sensor's image resized to the
camera's would. Its dot pattern, window and disparity-range test are therefore the same size in
degrees at every resolution. (Version 1 applied them to the image's own pixels: faithful at
640x480, fx = 585, and a caricature at 128x128, where its 9-pixel window spans what 36 sensor
pixels see and it blanked 20 % of simgen's front camera.)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

PARAMS_DIR = Path(__file__).resolve().parent / "params"  # fitted parameters: params/<name>.json
KINECT_FX = 585.0  # Kinect v1 depth camera focal length at 640x480 (pixels)
KINECT_BASELINE_M = 0.075  # Kinect v1 projector-to-camera baseline (metres)
_MAX_FIT_PIXELS = 2_000_000  # pixels sampled for residual statistics in fit()
_MAX_FIT_FRAMES = 16  # frames used where fit() needs image geometry (normals, masks)


# ---------------------------------------------------------------------------------------------------
# Input and output checks


def validate_depth(depth: Any) -> np.ndarray:
    """Check a depth batch: numpy float32 (B, H, W), finite, >= 0 (0 = no reading). Returns it."""
    if not isinstance(depth, np.ndarray):
        raise ValueError(f"depth must be a numpy array, got {type(depth).__name__}")
    if depth.ndim != 3:
        raise ValueError(f"depth must have shape (B, H, W), got shape {depth.shape}")
    if 0 in depth.shape:
        raise ValueError(f"depth is empty: shape {depth.shape}")
    if depth.dtype != np.float32:
        raise ValueError(f"depth must be float32 metres, got dtype {depth.dtype}")
    if not np.isfinite(depth).all():
        raise ValueError("depth contains NaN or inf (use 0 for no reading)")
    if (depth < 0).any():
        raise ValueError("depth contains negative values (use 0 for no reading)")
    return depth


def validate_K(K: Any) -> np.ndarray:
    """Check a 3x3 intrinsic matrix (finite, fx, fy > 0). Returns it as a float64 array."""
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("K must be a 3x3 numeric matrix") from None
    if K.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got shape {K.shape}")
    if not np.isfinite(K).all():
        raise ValueError("K contains NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must have positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def _validate_rng(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")


def _check_output(out: Any, depth: np.ndarray, name: str) -> np.ndarray:
    """Raise ValueError naming the model unless out honours the output contract for input depth."""
    problem = None
    if not isinstance(out, np.ndarray):
        problem = f"a {type(out).__name__}, not a numpy array"
    elif out.shape != depth.shape:
        problem = f"shape {out.shape}, expected {depth.shape}"
    elif out.dtype != np.float32:
        problem = f"dtype {out.dtype}, expected float32"
    elif not np.isfinite(out).all():
        problem = "NaN or inf"
    elif (out < 0).any():
        problem = "negative depth"
    elif (out[depth == 0] != 0).any():
        problem = "readings at pixels that had none (0) in the input"
    if problem:
        raise ValueError(f"noise model {name!r} returned {problem}")
    return out


def _check_pairs(clean: Any, real: Any, K: Any) -> np.ndarray:
    """Validate fit() inputs; returns K as float64."""
    validate_depth(clean)
    validate_depth(real)
    if clean.shape != real.shape:
        raise ValueError(f"clean and real depth differ in shape: {clean.shape} vs {real.shape}")
    return validate_K(K)


# ---------------------------------------------------------------------------------------------------
# The base class


class NoiseModel(ABC):
    """Base of all noise models: validates inputs, calls ``_noisify``, checks its output.

    Subclasses are dataclasses of their parameters and set ``name`` and ``version`` (bump the
    version when the meaning of the parameters changes: saved files of another version are refused).
    """

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"

    def __post_init__(self) -> None:
        # Store parameters as plain Python numbers, so that params() is JSON-serialisable.
        for f in dataclasses.fields(self):
            type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            kind = {"float": float, "int": int}.get(type_name)
            if kind is not None:
                value = getattr(self, f.name)
                if kind is int and not float(value).is_integer():
                    raise ValueError(f"{self.name}: {f.name} must be an integer, got {value!r}")
                setattr(self, f.name, kind(value))

    def params(self) -> dict:
        """The model's parameters as a JSON-serialisable dict (the constructor's keyword arguments)."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def fingerprint(self) -> str | None:
        """A digest of what params() does not hold but the output depends on (a weights file), or
        None; noisify records it beside the parameters."""
        return None

    def describe(self) -> dict:
        """What determines the model's output, as JSON: name, version, params and (if any)
        fingerprint. Outputs recorded under one description may be compared or resumed."""
        out = {"noiser": self.name, "version": self.version, "params": self.params()}
        fingerprint = self.fingerprint()  # e.g. RealD²iff's weights: other weights under one name
        if fingerprint:
            out["fingerprint"] = fingerprint
        return out

    def noisify(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clean depth (B, H, W) float32 m -> noisy depth, same shape, float32, 0 = no reading."""
        validate_depth(depth)
        K = validate_K(K)
        _validate_rng(rng)
        view = depth.view()
        view.flags.writeable = False  # a model that tried to modify its input would fail loudly
        out = self._noisify(view, K, rng)
        _check_output(out, depth, self.name)
        return out.copy() if np.may_share_memory(out, depth) else out

    def __call__(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.noisify(depth, K, rng)

    def noisify_frames(self, depth: np.ndarray, K: np.ndarray, rngs: list) -> np.ndarray:
        """Like noisify, with one generator per frame: a frame's output depends on its own
        generator only, however frames are batched."""
        validate_depth(depth)
        K = validate_K(K)
        if len(rngs) != len(depth):
            raise ValueError(f"{len(rngs)} generators for {len(depth)} frames")
        for rng in rngs:
            _validate_rng(rng)
        view = depth.view()
        view.flags.writeable = False
        out = self._noisify_frames(view, K, rngs)
        _check_output(out, depth, self.name)
        return out.copy() if np.may_share_memory(out, depth) else out

    def _noisify_frames(self, depth: np.ndarray, K: np.ndarray, rngs: list) -> np.ndarray:
        """Frame by frame; models that batch frames (RealD²iff) override this."""
        return np.concatenate([self._noisify(depth[i:i + 1], K, rng) for i, rng in enumerate(rngs)])

    @abstractmethod
    def _noisify(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The model itself, on validated input (read-only)."""

    @classmethod
    def fit(cls, clean: np.ndarray, real: np.ndarray, K: np.ndarray) -> NoiseModel:
        """Estimate parameters from clean/real depth pairs ((B, H, W) float32 m, 0 = no reading)."""
        raise TypeError(f"{cls.__name__} has no parameters to fit from data")

    def to_json(self) -> str:
        """The model as JSON: {"name", "version", "params"}; ``load_noiser(path)`` reads it back."""
        return json.dumps({"name": type(self).name, "version": self.version, "params": self.params()},
                          indent=2)  # the class's registered name (an instance may carry a label)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# ---------------------------------------------------------------------------------------------------
# Shared numerics


def _robust_std(x: np.ndarray) -> float:
    """1.4826 * median absolute deviation: the std of a Gaussian, insensitive to outliers."""
    if x.size == 0:
        raise ValueError("no pixels valid in both clean and real depth to fit on")
    x = x.astype(np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _paired_pixels(clean: np.ndarray, real: np.ndarray, max_pixels: int = _MAX_FIT_PIXELS):
    """A fixed random sample of pixels: (clean, real) values, 1-D, where clean > 0."""
    c, r = clean.reshape(-1), real.reshape(-1)
    if c.size > max_pixels:
        idx = np.random.default_rng(0).integers(0, c.size, max_pixels)
        c, r = c[idx], r[idx]
    keep = c > 0
    return c[keep], r[keep]


def _inliers(c: np.ndarray, r: np.ndarray, max_error_m: float = 0.1) -> np.ndarray:
    """Mask of pixel pairs valid in both with |real - clean| < max_error_m (excludes gross errors)."""
    return (c > 0) & (r > 0) & (np.abs(r - c) < max_error_m)


def _frame_subset(n: int, k: int = _MAX_FIT_FRAMES) -> np.ndarray:
    """Up to k frame indices spread evenly over n frames."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _valid_diff(P: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
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


def _incidence_angle(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    B, H, W = depth.shape
    uu, vv = np.meshgrid(np.arange(W), np.arange(H))
    pixels = np.stack([uu, vv, np.ones_like(uu)]).astype(np.float64)
    rays = np.einsum("ij,jhw->ihw", np.linalg.inv(K), pixels).astype(np.float32)  # K^-1 [u, v, 1]
    theta = np.zeros(depth.shape, np.float32)
    for i in range(B):  # one frame at a time keeps memory small
        z = depth[i]
        valid = z > 0
        P = rays * z  # back-projected points (3, H, W)
        n = np.cross(_valid_diff(P, valid, 2), _valid_diff(P, valid, 1), axis=0)  # surface normal
        num = np.abs((n * P).sum(0))
        den = np.linalg.norm(n, axis=0) * np.linalg.norm(P, axis=0)
        cos = np.divide(num, den, out=np.ones_like(num), where=den > 0)
        theta[i] = np.arccos(np.clip(cos, 0.0, 1.0))
    return theta


def incidence_angle(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Angle (rad, 0..pi/2) between each pixel's surface normal and its viewing ray, (B, H, W) float32.

    Normals are cross products of the back-projected points' derivatives along u and v, taken between
    valid pixels only; 0 where no normal can be estimated (isolated pixels, holes). Across a depth
    discontinuity the estimate is grazing (close to pi/2), as a real sensor sees it.
    """
    return _incidence_angle(validate_depth(depth), validate_K(K))


def _jitter_nearest(arrays: list, sigma_v, sigma_u, rng: np.random.Generator, rows=None, cols=None) -> list:
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


# ---------------------------------------------------------------------------------------------------
# The models


@dataclasses.dataclass(repr=False)
class Identity(NoiseModel):
    """No noise: returns a copy of the clean depth."""

    name = "identity"
    version = "1"

    def _noisify(self, depth, K, rng):
        return depth.copy()

    @classmethod
    def fit(cls, clean, real, K):
        """Nothing to estimate: returns Identity()."""
        _check_pairs(clean, real, K)
        return cls()


@dataclasses.dataclass(repr=False)
class Gaussian(NoiseModel):
    """z' = z + N(0, sigma^2) on valid pixels; z' <= 0 becomes 0 (no reading).

    sigma: noise std in metres (default 3 mm, a Kinect v1 at about 1.2 m).
    """

    sigma: float = 0.003
    name = "gaussian"
    version = "1"

    def __post_init__(self):
        super().__post_init__()
        _require(self.sigma >= 0, f"gaussian: sigma must be >= 0, got {self.sigma}")

    def _noisify(self, depth, K, rng):
        out = depth + np.float32(self.sigma) * rng.standard_normal(depth.shape, dtype=np.float32)
        out[(depth == 0) | (out <= 0)] = 0
        return out

    @classmethod
    def fit(cls, clean, real, K):
        """sigma = 1.4826 * MAD of (real - clean) over pixels valid in both with |real - clean| < 0.1 m."""
        _check_pairs(clean, real, K)
        c, r = _paired_pixels(clean, real)
        keep = _inliers(c, r)
        return cls(sigma=_robust_std(r[keep] - c[keep]))


@dataclasses.dataclass(repr=False)
class AxialLateral(NoiseModel):
    """Kinect v1 noise after Nguyen, Izadi & Lovell (2012): depth- and angle-dependent axial noise,
    lateral jitter of the sampling position, random and grazing-angle dropout (module docstring).

    axial_scale: factor on sigma_z (fitted); a, b, c, d: sigma_z coefficients (m, m^-1, m, m^1.5);
    lateral_px, lateral_theta_px: sigma_L = lateral_px + lateral_theta_px * theta / (pi/2 - theta)
    in pixels of a sensor_fx-pixel image; theta_max_deg: theta is clipped to this in the sigmas;
    p_drop: per-pixel random dropout; grazing_start_deg: angle above which dropout rises linearly to 1
    at 90 degrees; sensor_fx: the emulated sensor's focal length (px).
    """

    axial_scale: float = 1.0
    a: float = 0.0012
    b: float = 0.0019
    c: float = 0.4
    d: float = 0.0001
    lateral_px: float = 0.8
    lateral_theta_px: float = 0.035
    theta_max_deg: float = 80.0
    p_drop: float = 0.005
    grazing_start_deg: float = 70.0
    sensor_fx: float = KINECT_FX
    name = "axial-lateral"
    version = "1"

    def __post_init__(self):
        super().__post_init__()
        for key in ("axial_scale", "a", "b", "d", "lateral_px", "lateral_theta_px"):
            _require(getattr(self, key) >= 0, f"axial-lateral: {key} must be >= 0")
        _require(0 <= self.p_drop <= 1, "axial-lateral: p_drop must be in [0, 1]")
        _require(0 < self.theta_max_deg < 90, "axial-lateral: theta_max_deg must be in (0, 90)")
        _require(0 <= self.grazing_start_deg < 90, "axial-lateral: grazing_start_deg must be in [0, 90)")
        _require(self.sensor_fx > 0, "axial-lateral: sensor_fx must be > 0")

    def axial_sigma(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """sigma_z(z, theta) in metres (without axial_scale), theta clipped to theta_max_deg."""
        t = np.minimum(theta, np.float32(math.radians(self.theta_max_deg)))
        z = np.where(z > 0, z, 1).astype(np.float32)
        return (self.a + self.b * (z - self.c) ** 2
                + self.d / np.sqrt(z) * t ** 2 / (np.pi / 2 - t) ** 2).astype(np.float32)

    def lateral_sigma_px(self, theta: np.ndarray) -> np.ndarray:
        """sigma_L(theta) in pixels of the sensor_fx image, theta clipped to theta_max_deg."""
        t = np.minimum(theta, np.float32(math.radians(self.theta_max_deg)))
        return (self.lateral_px + self.lateral_theta_px * t / (np.pi / 2 - t)).astype(np.float32)

    def grazing_dropout(self, theta: np.ndarray) -> np.ndarray:
        """Dropout probability from the angle: 0 below grazing_start_deg, rising linearly to 1 at 90."""
        start = math.radians(self.grazing_start_deg)
        return np.clip((theta - start) / (np.pi / 2 - start), 0, 1).astype(np.float32)

    def _noisify(self, depth, K, rng):
        theta = _incidence_angle(depth, K)
        sigma_l = self.lateral_sigma_px(theta) / np.float32(self.sensor_fx)
        z, theta = _jitter_nearest([depth, theta], sigma_l * K[1, 1], sigma_l * K[0, 0], rng)
        sigma_z = np.float32(self.axial_scale) * self.axial_sigma(z, theta)
        noisy = z + sigma_z * rng.standard_normal(z.shape, dtype=np.float32)
        p_keep = (1 - self.p_drop) * (1 - self.grazing_dropout(theta))
        dropped = rng.random(z.shape, dtype=np.float32) >= p_keep
        keep = (depth > 0) & (z > 0) & (noisy > 0) & ~dropped
        return np.where(keep, noisy, 0).astype(np.float32)

    @classmethod
    def fit(cls, clean, real, K):
        """axial_scale: robust std of (real - clean) / sigma_z(z, theta), which makes the model's
        residual std match the real one across depths (pixels valid in both, |real - clean| < 0.1 m,
        from up to 16 frames); p_drop: so that the expected hole rate where clean is valid,
        1 - (1 - p_drop) * mean(1 - p_theta), equals the real one."""
        K = _check_pairs(clean, real, K)
        base = cls()
        frames = _frame_subset(len(clean))
        c, r = clean[frames], real[frames]
        theta = _incidence_angle(c, K)
        keep = _inliers(c, r)
        c_in, r_in, t_in = c[keep], r[keep], theta[keep]
        if c_in.size > _MAX_FIT_PIXELS:
            idx = np.random.default_rng(0).integers(0, c_in.size, _MAX_FIT_PIXELS)
            c_in, r_in, t_in = c_in[idx], r_in[idx], t_in[idx]
        scale = _robust_std((r_in - c_in) / base.axial_sigma(c_in, t_in))

        cs, rs = _paired_pixels(clean, real)
        hole_rate = float(np.mean(rs == 0)) if cs.size else 0.0
        keep_angle = float(np.mean(1 - base.grazing_dropout(theta[c > 0])))
        p_drop = float(np.clip(1 - (1 - hole_rate) / max(keep_angle, 1e-6), 0, 1))
        return cls(axial_scale=scale, p_drop=p_drop)


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
            _require(getattr(self, key) > 0, f"structured-light: {key} must be > 0")
        for key in ("sigma_disparity_px", "shift_px", "min_dots", "min_depth_m"):
            _require(getattr(self, key) >= 0, f"structured-light: {key} must be >= 0")
        _require(0 <= self.dot_density <= 1, "structured-light: dot_density must be in [0, 1]")
        _require(0 <= self.p_drop <= 1, "structured-light: p_drop must be in [0, 1]")
        _require(self.window_px >= 1 and self.window_px % 2 == 1,
                 "structured-light: window_px must be an odd number >= 1")
        _require(self.max_depth_m > self.min_depth_m,
                 "structured-light: max_depth_m must be > min_depth_m")

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
        return ((Hs, Ws), _resampled_K(K, Ws / W, Hs / H), _nearest_index(H, Hs)[:, None],
                _nearest_index(W, Ws)[None, :])

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
        lerp = ((1 - wy) * ((1 - wx) * corners[0] + wx * corners[1])
                + wy * ((1 - wx) * corners[2] + wx * corners[3]))
        smooth = (lo > 0) & ((hi - lo) * np.float32(self.baseline_m * self.sensor_fx)
                             <= self.max_disparity_range_px)
        return np.where(smooth, 1 / np.where(smooth, lerp, 1), nearest).astype(np.float32)

    def _simulate(self, depth: np.ndarray, K: np.ndarray, rng: np.random.Generator | None):
        """The masks and (given rng) the reading at the image's pixels, (B, H, W) each, simulated on
        the sensor's grid (in chunks of frames, to bound memory, when that grid is not the image's).
        Only the pixels read are measured: each draws its noise as it would on the full grid."""
        (Hs, Ws), Ks, rows, cols = self._sensor_grid(depth.shape[1:], K)
        native = (Hs, Ws) == depth.shape[1:]
        step = len(depth) if native else max(1, _SENSOR_CHUNK_PIXELS // (Hs * Ws))
        masks, readings = [], []
        for i in range(0, len(depth), step):
            d = self._disparity(self._to_sensor(depth[i:i + step], Hs, Ws), Ks[0, 0])
            m = self._masks(d)
            masks.append({k: v[:, rows, cols] for k, v in m.items()})
            if rng is not None:
                readings.append(self._measure(d, m, Ks, rows, cols, rng))
        masks = {k: np.concatenate([m[k] for m in masks]) for k in masks[0]}
        return masks, (np.concatenate(readings) if rng is not None else None)

    def _measure(self, d, m, K, rows, cols, rng):
        """Depth read at the sensor pixels rows x cols, from the sensor-grid disparity d and masks
        m: lateral shift, disparity noise, quantisation, dropout and range (module docstring)."""
        fx, fy = K[0, 0], K[1, 1]
        shift = self.shift_px / self.sensor_fx  # sensor pixels -> this grid's pixels: * fx or * fy
        (d_read,) = _jitter_nearest([d], shift * fy, shift * fx, rng, rows, cols)
        D = d_read * np.float32(self.sensor_fx / fx)  # in the sensor's disparity pixels
        D = D + np.float32(self.sigma_disparity_px) * rng.standard_normal(D.shape, dtype=np.float32)
        D = np.round(D * self.subpixel_steps) / np.float32(self.subpixel_steps)
        dropped = rng.random(D.shape, dtype=np.float32) < self.p_drop
        z = np.float32(self.baseline_m * self.sensor_fx) / np.where(D > 0, D, 1)
        invalid = (m["shadow"] | m["few_dots"] | m["discontinuity"])[:, rows, cols]
        keep = ((d[:, rows, cols] > 0) & (d_read > 0) & (D > 0) & ~dropped & (z >= self.min_depth_m)
                & (z <= self.max_depth_m) & ~invalid)
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
        K = _check_pairs(clean, real, K)
        base = cls()
        c, r = _paired_pixels(clean, real)
        keep = _inliers(c, r)
        bf = base.baseline_m * base.sensor_fx
        resid = bf / r[keep].astype(np.float64) - bf / c[keep].astype(np.float64)
        var = _robust_std(resid) ** 2 - (1.0 / base.subpixel_steps) ** 2 / 12
        sigma = math.sqrt(max(var, 0.0))

        hole_rate = float(np.mean(r == 0)) if c.size else 0.0
        sub = clean[_frame_subset(len(clean))]
        m = base.masks(sub, K)
        out_of_range = (sub < base.min_depth_m) | (sub > base.max_depth_m)
        geometric = m["shadow"] | m["few_dots"] | m["discontinuity"] | out_of_range
        geometric_rate = float(np.mean(geometric[sub > 0])) if (sub > 0).any() else 0.0
        p_drop = float(np.clip(1 - (1 - hole_rate) / max(1 - geometric_rate, 1e-6), 0, 1))
        return cls(sigma_disparity_px=sigma, p_drop=p_drop)


class RangeScaled(NoiseModel):
    """The sensor of `base` built `scale` times smaller: z' = scale * base(z / scale).

    For a triangulating sensor this is exact similarity: a Kinect (baseline b, range 0.4-8 m) at
    scale 0.1 is the same sensor with baseline 0.1 b and range 4-80 cm, with its disparity noise,
    quantisation, shadows and holes at the same image pixels, and its depth errors 0.1 times as
    large at a tenth of the range. It is how a model fitted to a room-scale sensor stands in for a
    short-range wrist camera (a small-baseline stereo sensor) at 5-25 cm, which the room-scale
    sensor itself would not see at all. `base`: a noise model, or one as saved by to_json (a dict).
    """

    name = "range-scaled"
    version = "1"

    def __init__(self, base, scale: float = 1.0):
        self.scale = float(scale)
        _require(math.isfinite(self.scale) and self.scale > 0, "range-scaled: scale must be > 0")
        self._base = base if isinstance(base, NoiseModel) else from_json(json.dumps(base))

    def params(self) -> dict:
        return {"base": json.loads(self._base.to_json()), "scale": self.scale}  # a callable: TypeError

    def fingerprint(self) -> str | None:
        return self._base.fingerprint()

    def __repr__(self) -> str:
        return f"RangeScaled({self._base!r}, scale={self.scale})"

    def _noisify(self, depth, K, rng):
        s = np.float32(self.scale)
        return s * self._base._noisify(depth / s, K, rng)

    def _noisify_frames(self, depth, K, rngs):
        s = np.float32(self.scale)
        return s * self._base._noisify_frames(depth / s, K, rngs)


def per_camera(model: NoiseModel | None, cameras, range_scale: dict | None = None) -> dict:
    """{camera: model}, wrapped in RangeScaled for the cameras `range_scale` {camera: s} names
    (None, no sensor, stays None); ValueError if it names a camera not in `cameras`."""
    scale = range_scale or {}
    unknown = sorted(set(scale) - set(cameras))
    if unknown:
        raise ValueError(f"--range-scale names {', '.join(unknown)}, not among the cameras "
                         f"({', '.join(cameras)})")
    return {c: model if model is None or scale.get(c, 1) == 1 else RangeScaled(base=model, scale=scale[c])
            for c in cameras}


def parse_range_scale(text: str | None) -> dict:
    """'wrist=0.1,front=1' -> {'wrist': 0.1, 'front': 1.0}; ValueError with the reason."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        cam, sep, value = item.partition("=")
        try:
            s = float(value)
        except ValueError:
            s = float("nan")
        if not sep or not cam.strip() or not (math.isfinite(s) and s > 0):
            raise ValueError(f"--range-scale {item.strip()!r}: use CAMERA=SCALE with SCALE > 0, "
                             "e.g. wrist=0.1")
        out[cam.strip()] = s
    return out


# ---------------------------------------------------------------------------------------------------
# Registry, saving and loading, plain callables

from realdiff.reald2iff import RealD2iffNoiser  # noqa: E402 (it builds on NoiseModel above)

NOISERS: dict[str, type] = {m.name: m for m in (Identity, Gaussian, AxialLateral, StructuredLight,
                                                 RealD2iffNoiser)}
WRAPPERS: dict[str, type] = {RangeScaled.name: RangeScaled}  # models of a model: from_json only
# RealD²iff weights committed beside params/reald2iff.pt (the name reald2iff), loadable by name (see the
# README's RealD²iff section): reald2iff-full (the full-size model, 4 ancestral coarse steps: the
# realism table's `full`), reald2iff-2step (its coarse stage distilled to 2 steps by `realdiff
# distill`); reald2iff is that distilled coarse stage with a cheaper fine stage; reald2iff-texture
# is reald2iff with the sensor-texture stage (`realdiff texture`), and reald2iff-texture-shift that
# with the twin-registration stage (`realdiff shift`): the default of `realdiff noisify`.
COMMITTED_MODELS = ("reald2iff-full", "reald2iff-2step", "reald2iff-texture", "reald2iff-texture-shift")


def from_json(text: str) -> NoiseModel:
    """The model saved by ``to_json``; ValueError if it is not one."""
    try:
        data = json.loads(text)
        name, version, params = data["name"], data["version"], data["params"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise ValueError("not a saved noise model: expected JSON with name, version, params") from None
    cls = NOISERS.get(name) or WRAPPERS.get(name)
    if cls is None:
        raise ValueError(f"unknown noise model {name!r}; known: {', '.join(NOISERS)}")
    if version != cls.version:
        raise ValueError(f"{name} parameters of version {version!r}; this code reads {cls.version!r}")
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(f"bad parameters for {name}: {e}") from None


def load_noiser(name_or_path) -> NoiseModel:
    """A noise model by registered name (fitted parameters from realdiff/params/<name>.json if that
    file exists, else defaults), from a .json file written by ``to_json``, or a RealD²iff model
    file (.pt) written by ``realdiff train``."""
    key = str(name_or_path)
    if key in NOISERS:
        saved = PARAMS_DIR / f"{key}.json"
        return from_json(saved.read_text()) if saved.is_file() else NOISERS[key]()
    if key in COMMITTED_MODELS:  # another committed RealD²iff model, by name
        return RealD2iffNoiser(weights=str(PARAMS_DIR / f"{key}.pt"))
    if key.endswith(".json") and Path(key).is_file():
        return from_json(Path(key).read_text())
    if key.endswith(".pt"):
        return RealD2iffNoiser(weights=key)  # ValueError if it is missing or not a model
    raise ValueError(f"unknown noise model {key!r}: use one of {', '.join([*NOISERS, *COMMITTED_MODELS])}, "
                     "the path of a .json file written by to_json(), or a .pt model from `realdiff train`")


class CallableNoiser(NoiseModel):
    """A plain callable f(depth, K, rng) with the noise-model contract, checked on every call."""

    version = "0"

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = f"callable:{getattr(fn, '__qualname__', type(fn).__qualname__)}"

    def params(self) -> dict:
        return {}

    def _noisify(self, depth, K, rng):
        return self.fn(depth, K, rng)

    def to_json(self) -> str:
        raise TypeError(f"{self.name} is a plain callable and cannot be saved")

    def __repr__(self) -> str:
        return f"CallableNoiser({self.fn!r})"


def as_noiser(obj) -> NoiseModel:
    """obj if it is a NoiseModel; a plain callable f(depth, K, rng) wrapped as a CallableNoiser;
    else TypeError."""
    if isinstance(obj, NoiseModel):
        return obj
    if isinstance(obj, type):
        raise TypeError(f"as_noiser needs an instance or a function, got the class {obj.__name__}")
    if callable(obj):
        return CallableNoiser(obj)
    raise TypeError(f"not a noise model or a callable f(depth, K, rng): {type(obj).__name__}")
