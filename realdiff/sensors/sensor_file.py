"""What real sensor a noise model stands for: `SensorInfo`, read from a committed sensor file.

Every registered and committed model has one file beside its parameters or weights,
``realdiff/params/<name>.sensor.json``, holding the sensor it was fitted or trained to imitate, the
sensor's technology, its working range in metres (the depths the training data covers, where the
model is valid), the training resolution, the training data and the model's validation figures
(`realdiff eval` on that sensor's validation frames). The weights files are never rewritten for
it. A model from `realdiff train` (``out/noiser.pt``) or a saved ``.json`` may have one beside it,
``out/noiser.sensor.json``. Adding a committed model is: its ``.pt``, its ``.sensor.json`` and its
name in ``registry.COMMITTED_MODELS``.

`sensor_info(name_or_path)` gives a model's SensorInfo (None for a file without a sensor file);
`list_sensors()` every registered and committed model's, as `realdiff sensors` prints them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realdiff.sensors import registry

SUFFIX = ".sensor.json"

# The validation figures a sensor file may hold (`realdiff eval`'s metrics, under its keys in
# metrics.json), in the order and with the labels of their one-line summary: key -> (label, unit).
METRICS = {
    "residual_w1_mm": ("W1", " mm"),
    "hole_f1": ("hole F1", ""),
    "hole_rate_abs_diff": ("hole-rate diff", ""),
    "noise_depth_rmse_mm": ("noise-vs-depth", " mm"),
    "spectrum_dist": ("spectrum", ""),
    "edge_rmse": ("edge profile", ""),
    "two_sample_acc": ("two-sample", ""),
    "two_sample_strong_acc": ("two-sample (strong)", ""),
}


def format_m(x: float) -> str:
    """Metres to three significant digits with at least one decimal: 0.8, 4.0, 0.08, 0.375."""
    s = f"{x:.3g}"
    return s if ("." in s or "e" in s) else f"{s}.0"


@dataclass(frozen=True)
class SensorInfo:
    """The real sensor a noise model imitates. ``sensor`` None: the model stands for no sensor
    (identity). ``range_m``: (min, max) working range in metres; ``resolution``: (width, height)
    of the training frames; ``validation``: `realdiff eval` figures (keys of METRICS) on
    ``validation_source``'s frames."""

    sensor: str | None
    technology: str | None = None
    range_m: tuple[float, float] | None = None
    resolution: tuple[int, int] | None = None
    training_data: str | None = None
    validation: dict[str, float] = field(default_factory=dict)
    validation_source: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        for name in ("sensor", "technology", "training_data", "validation_source", "notes"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise ValueError(f"{name} must be a non-empty string or null, got {value!r}")
        if self.range_m is not None:
            lo, hi = _numbers(self.range_m, 2, "range_m")
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
                raise ValueError(
                    f"range_m must be [min, max] metres with 0 < min < max, got {list(self.range_m)}"
                )
            object.__setattr__(self, "range_m", (lo, hi))
        if self.resolution is not None:
            w, h = _numbers(self.resolution, 2, "resolution")
            if not (w.is_integer() and h.is_integer() and w > 0 and h > 0):
                raise ValueError(f"resolution must be [width, height] in pixels, got {list(self.resolution)}")
            object.__setattr__(self, "resolution", (int(w), int(h)))
        if not isinstance(self.validation, dict):
            raise ValueError(f"validation must be an object of figures, got {type(self.validation).__name__}")
        unknown = sorted(set(self.validation) - set(METRICS))
        if unknown:
            raise ValueError(f"validation: unknown figures {', '.join(unknown)}; known: {', '.join(METRICS)}")
        figures = {}
        for k in METRICS:  # in METRICS' order
            if k in self.validation:
                v = self.validation[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"validation: {k} must be a number, got {v!r}")
                figures[k] = float(v)
        object.__setattr__(self, "validation", figures)
        if self.sensor is None and self.range_m is not None:
            raise ValueError("a working range without a sensor")

    @classmethod
    def from_dict(cls, data: dict) -> SensorInfo:
        """From the JSON of a sensor file; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a sensor file holds a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown keys {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if "sensor" not in data:
            raise ValueError('no "sensor" (null for a model that stands for no sensor)')
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> SensorInfo:
        """The SensorInfo in a sensor file; ValueError (naming the file) if it is not one."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e})") from None
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a sensor file: {e}") from None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("range_m", "resolution"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    def range_text(self, scale: float = 1.0) -> str:
        """'0.8-4.0 m' (times scale), or 'none'."""
        if self.range_m is None:
            return "none"
        lo, hi = self.range_m
        return f"{format_m(lo * scale)}-{format_m(hi * scale)} m"

    def validation_line(self) -> str:
        """The validation figures on one line, or 'none'."""
        if not self.validation:
            return "none"
        text = ", ".join(f"{METRICS[k][0]} {v:.3f}{METRICS[k][1]}" for k, v in self.validation.items())
        return f"{text} ({self.validation_source})" if self.validation_source else text

    def fraction_outside(self, depth: np.ndarray, scale: float = 1.0) -> float | None:
        """The fraction of depth's readings (metres, 0 = no reading) outside the working range built
        `scale` times smaller (a RangeScaled sensor's); None without a range or a reading."""
        if self.range_m is None:
            return None
        z = np.asarray(depth)
        z = z[z > 0]
        if z.size == 0:
            return None
        lo, hi = self.range_m[0] * scale, self.range_m[1] * scale
        return float(np.mean((z < lo) | (z > hi)))


def _numbers(value, n: int, name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
        raise ValueError(f"{name} must be a list of {n} numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} must be a list of {n} numbers, got {list(value)}")
        out.append(float(v))
    return tuple(out)


def sensor_path(name_or_path) -> Path:
    """Where a model's sensor file is: realdiff/params/<name>.sensor.json for a registered or
    committed name, else beside the model's file (out/noiser.pt -> out/noiser.sensor.json)."""
    key = str(name_or_path)
    if key in registry.NOISERS or key in registry.COMMITTED_MODELS:
        return registry.PARAMS_DIR / f"{key}{SUFFIX}"
    path = Path(key)
    return path.with_name(path.stem + SUFFIX) if path.suffix in (".pt", ".json") else path


def sensor_info(name_or_path) -> SensorInfo | None:
    """The SensorInfo of a registered or committed model by name (from its committed sensor file:
    ValueError if that is missing or malformed), or of a model file with a sensor file beside it
    (None if it has none). ValueError for a name that is no model."""
    key = str(name_or_path)
    if key.endswith(SUFFIX):
        return SensorInfo.load(key)
    path = sensor_path(key)
    if key in registry.NOISERS or key in registry.COMMITTED_MODELS:
        if not path.is_file():
            raise ValueError(f"{key}: no sensor file {path} (every committed model has one)")
        return SensorInfo.load(path)
    if not key.endswith((".pt", ".json")):
        raise ValueError(
            f"unknown noise model {key!r}: use one of "
            f"{', '.join([*registry.NOISERS, *registry.COMMITTED_MODELS])} or a model file"
        )
    return SensorInfo.load(path) if path.is_file() else None


def list_sensors() -> list[dict]:
    """Every registered and committed model, in the registry's order: {"name", "default", and
    SensorInfo's fields}, as `realdiff sensors --json` prints them."""
    out = []
    for name in [*registry.NOISERS, *registry.COMMITTED_MODELS]:
        info = sensor_info(name)
        out.append({"name": name, "default": name == registry.DEFAULT_NOISER, **info.to_dict()})
    return out
