"""``axial-lateral``: Kinect v1 noise after Nguyen, Izadi & Lovell (2012), "Modeling Kinect sensor
noise for improved 3D reconstruction and tracking", 3DIMPVT.

With theta the angle between the surface normal (from depth gradients, back-projected with K) and
the viewing ray, clipped to theta_max < pi/2::

    axial   sigma_z(z, theta) = a + b (z - c)^2 + d / sqrt(z) * theta^2 / (pi/2 - theta)^2   [m]
            a = 0.0012, b = 0.0019, c = 0.4, d = 0.0001   (z in m, theta in rad)
    lateral sigma_L(theta)    = 0.8 + 0.035 * theta / (pi/2 - theta)   [px of the 585 px Kinect]

Each pixel reads the clean depth at its position shifted by N(0, sigma_L^2) in u and in v (nearest
neighbour, so depth edges do not blend), then z' = z + s * sigma_z * N(0, 1) with a fitted scale s.
A pixel drops out with probability 1 - (1 - p_drop)(1 - p_theta), where p_theta rises linearly from
0 at ``grazing_start_deg`` to 1 at 90 degrees. The lateral noise is given in pixels of the 585 px
Kinect image and scaled by fx / sensor_fx, so it is the same in metres at any resolution.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from realdiff.sensors.base import NoiseModel, check_pairs, require
from realdiff.sensors.numerics import (
    KINECT_FX,
    MAX_FIT_PIXELS,
    frame_subset,
    incidence_angle,
    inliers,
    jitter_nearest,
    paired_pixels,
    robust_std,
)


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
            require(getattr(self, key) >= 0, f"axial-lateral: {key} must be >= 0")
        require(0 <= self.p_drop <= 1, "axial-lateral: p_drop must be in [0, 1]")
        require(0 < self.theta_max_deg < 90, "axial-lateral: theta_max_deg must be in (0, 90)")
        require(0 <= self.grazing_start_deg < 90, "axial-lateral: grazing_start_deg must be in [0, 90)")
        require(self.sensor_fx > 0, "axial-lateral: sensor_fx must be > 0")

    def axial_sigma(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """sigma_z(z, theta) in metres (without axial_scale), theta clipped to theta_max_deg."""
        t = np.minimum(theta, np.float32(math.radians(self.theta_max_deg)))
        z = np.where(z > 0, z, 1).astype(np.float32)
        return (
            self.a + self.b * (z - self.c) ** 2 + self.d / np.sqrt(z) * t**2 / (np.pi / 2 - t) ** 2
        ).astype(np.float32)

    def lateral_sigma_px(self, theta: np.ndarray) -> np.ndarray:
        """sigma_L(theta) in pixels of the sensor_fx image, theta clipped to theta_max_deg."""
        t = np.minimum(theta, np.float32(math.radians(self.theta_max_deg)))
        return (self.lateral_px + self.lateral_theta_px * t / (np.pi / 2 - t)).astype(np.float32)

    def grazing_dropout(self, theta: np.ndarray) -> np.ndarray:
        """Dropout probability from the angle: 0 below grazing_start_deg, rising linearly to 1 at 90."""
        start = math.radians(self.grazing_start_deg)
        return np.clip((theta - start) / (np.pi / 2 - start), 0, 1).astype(np.float32)

    def _noisify(self, depth, K, rng):
        theta = incidence_angle(depth, K)
        sigma_l = self.lateral_sigma_px(theta) / np.float32(self.sensor_fx)
        z, theta = jitter_nearest([depth, theta], sigma_l * K[1, 1], sigma_l * K[0, 0], rng)
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
        K = check_pairs(clean, real, K)
        base = cls()
        frames = frame_subset(len(clean))
        c, r = clean[frames], real[frames]
        theta = incidence_angle(c, K)
        keep = inliers(c, r)
        c_in, r_in, t_in = c[keep], r[keep], theta[keep]
        if c_in.size > MAX_FIT_PIXELS:
            idx = np.random.default_rng(0).integers(0, c_in.size, MAX_FIT_PIXELS)
            c_in, r_in, t_in = c_in[idx], r_in[idx], t_in[idx]
        scale = robust_std((r_in - c_in) / base.axial_sigma(c_in, t_in))

        cs, rs = paired_pixels(clean, real)
        hole_rate = float(np.mean(rs == 0)) if cs.size else 0.0
        keep_angle = float(np.mean(1 - base.grazing_dropout(theta[c > 0])))
        p_drop = float(np.clip(1 - (1 - hole_rate) / max(keep_angle, 1e-6), 0, 1))
        return cls(axial_scale=scale, p_drop=p_drop)
