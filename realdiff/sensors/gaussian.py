"""``gaussian``: z' = z + N(0, sigma^2) on valid pixels; a value <= 0 becomes 0 (no reading)."""

from __future__ import annotations

import dataclasses

import numpy as np

from realdiff.sensors.base import NoiseModel, check_pairs, require
from realdiff.sensors.numerics import inliers, paired_pixels, robust_std


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
        require(self.sigma >= 0, f"gaussian: sigma must be >= 0, got {self.sigma}")

    def _noisify(self, depth, K, rng):
        out = depth + np.float32(self.sigma) * rng.standard_normal(depth.shape, dtype=np.float32)
        out[(depth == 0) | (out <= 0)] = 0
        return out

    @classmethod
    def fit(cls, clean, real, K):
        """sigma = 1.4826 * MAD of (real - clean) over pixels valid in both with |real - clean| < 0.1 m."""
        check_pairs(clean, real, K)
        c, r = paired_pixels(clean, real)
        keep = inliers(c, r)
        return cls(sigma=robust_std(r[keep] - c[keep]))
