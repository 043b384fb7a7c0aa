"""Depth noise models ("sensors"): one contract (base.py), one file per model, one registry.

    identity           the clean depth, unchanged
    gaussian           z' = z + N(0, sigma^2)
    axial-lateral      Kinect v1 noise after Nguyen, Izadi & Lovell (2012): depth- and angle-dependent
                       axial noise, lateral jitter, random and grazing-angle dropout
    structured-light   a simulated Kinect-style triangulating sensor: projector shadows, dot-pattern
                       and discontinuity invalidation, disparity noise and 1/8 px quantisation
    range-scaled       any model built S times smaller (short-range cameras)
    reald2iff          RealD²iff, the learned clean-to-noisy diffusion model (realdiff.reald2iff)

`load_noiser(name_or_path)` gives any of them (with the parameters fitted to real Kinect pairs in
realdiff/params/ where they exist); `as_noiser(f)` wraps a plain function f(depth, K, rng).
"""

from realdiff.sensors.base import NoiseModel, as_noiser, validate_depth, validate_K
from realdiff.sensors.range_scaled import RangeScaled, parse_range_scale, per_camera
from realdiff.sensors.registry import (
    COMMITTED_MODELS,
    DEFAULT_NOISER,
    NOISERS,
    PARAMS_DIR,
    from_json,
    load_noiser,
)

__all__ = [
    "COMMITTED_MODELS",
    "DEFAULT_NOISER",
    "NOISERS",
    "PARAMS_DIR",
    "NoiseModel",
    "RangeScaled",
    "as_noiser",
    "from_json",
    "load_noiser",
    "parse_range_scale",
    "per_camera",
    "validate_K",
    "validate_depth",
]
