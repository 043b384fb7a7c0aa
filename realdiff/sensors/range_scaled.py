"""``range-scaled``: any noise model built S times smaller, z' = S * model(z / S) (built by
``--range-scale CAM=S`` of `realdiff noisify` and `policies eval`).

For the structured-light model this is exactly the same sensor with baseline S b and range
S [min, max] (similar triangles): how a short-range wrist camera gets a sensor from models of a
room-scale one.
"""

from __future__ import annotations

import json
import math

import numpy as np

from realdiff.sensors.base import NoiseModel, require


class RangeScaled(NoiseModel):
    """The sensor of `base` built `scale` times smaller: z' = scale * base(z / scale).

    For a triangulating sensor this is exact similarity: a Kinect (baseline b, range 0.4-8 m) at
    scale 0.1 is the same sensor with baseline 0.1 b and range 4-80 cm, with its disparity noise,
    quantisation, shadows and holes at the same image pixels, and its depth errors 0.1 times as
    large at a tenth of the range. It is how a model fitted to a room-scale sensor stands in for a
    short-range wrist camera (a small-baseline stereo sensor) at 5-25 cm, which the room-scale
    sensor itself would not see at all.
    """

    name = "range-scaled"
    version = "1"

    def __init__(self, base: NoiseModel, scale: float = 1.0):
        self.scale = float(scale)
        require(math.isfinite(self.scale) and self.scale > 0, "range-scaled: scale must be > 0")
        require(isinstance(base, NoiseModel), "range-scaled: base must be a noise model")
        self._base = base

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
        raise ValueError(
            f"--range-scale names {', '.join(unknown)}, not among the cameras ({', '.join(cameras)})"
        )
    return {
        c: model if model is None or scale.get(c, 1) == 1 else RangeScaled(base=model, scale=scale[c])
        for c in cameras
    }


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
            raise ValueError(
                f"--range-scale {item.strip()!r}: use CAMERA=SCALE with SCALE > 0, e.g. wrist=0.1"
            )
        out[cam.strip()] = s
    return out
