"""The sensor a policy is evaluated under: what turns each rendered depth frame into what it sees.

clean               the rendered depth, unchanged
noiser:NAME         a realdiff noise model: a registered name (noiser:structured-light,
                    noiser:reald2iff), a .json it saved or a .pt model from `realdiff train`
module:function     any callable f(depth, K, rng) with the noise-model interface (depth float32
                    (B, H, W) metres, 0 = no reading; K 3x3; rng a numpy Generator), imported
                    from the working directory or PYTHONPATH: an outside sensor simulator
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from realdiff.sensors import NoiseModel, as_noiser, load_noiser


def make_sensor(spec: str) -> NoiseModel | None:
    """The sensor named by `spec` (None for clean); ValueError says what is wrong with it."""
    spec = spec.strip()
    if spec == "clean":
        return None
    if spec.startswith("noiser:"):
        return load_noiser(spec[len("noiser:") :])
    m = re.fullmatch(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)", spec)
    if m is None:
        raise ValueError(f"unknown sensor {spec!r}: use clean, noiser:NAME or module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(m.group(1))
    except ImportError as e:
        raise ValueError(f"sensor {spec!r}: cannot import {m.group(1)!r} ({e})") from None
    fn = getattr(module, m.group(2), None)
    if fn is None or not callable(fn):
        raise ValueError(f"sensor {spec!r}: {m.group(1)} has no callable {m.group(2)!r}")
    return as_noiser(fn)


def sensor_label(spec: str) -> str:
    """A file-name-safe label for a sensor spec (noiser:structured-light -> structured-light)."""
    s = spec.split(":", 1)[1] if spec.startswith("noiser:") else spec
    return re.sub(r"[^\w.-]+", "_", os.path.basename(s.rstrip("/")))


def sensor_model(sensor: NoiseModel | None) -> dict | None:
    """What the sensor's output depends on (NoiseModel.describe(); None for clean), recorded with
    evaluation results so that results under another version or other weights are not reused."""
    return None if sensor is None else sensor.describe()
