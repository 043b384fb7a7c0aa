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
`sensor_info(name_or_path)` tells which real sensor a model imitates (its working range, training
data and validation figures: realdiff/params/<name>.sensor.json); `realdiff sensors` lists them.
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
    noisers_per_camera,
)
from realdiff.sensors.sensor_file import SensorInfo, list_sensors, sensor_info

__all__ = [
    "COMMITTED_MODELS",
    "DEFAULT_NOISER",
    "NOISERS",
    "PARAMS_DIR",
    "NoiseModel",
    "RangeScaled",
    "SensorInfo",
    "as_noiser",
    "from_json",
    "list_sensors",
    "load_noiser",
    "noisers_per_camera",
    "parse_range_scale",
    "per_camera",
    "sensor_info",
    "validate_K",
    "validate_depth",
]
