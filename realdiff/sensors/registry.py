"""The registry of noise models: by name, from a saved .json, or a RealD²iff .pt file."""

from __future__ import annotations

import json
from pathlib import Path

from realdiff.reald2iff.noiser import RealD2iffNoiser
from realdiff.sensors.axial_lateral import AxialLateral
from realdiff.sensors.base import PARAMS_DIR, NoiseModel
from realdiff.sensors.gaussian import Gaussian
from realdiff.sensors.identity import Identity
from realdiff.sensors.range_scaled import RangeScaled
from realdiff.sensors.structured_light import StructuredLight

NOISERS: dict[str, type] = {
    m.name: m for m in (Identity, Gaussian, AxialLateral, StructuredLight, RealD2iffNoiser)
}
WRAPPERS: dict[str, type] = {RangeScaled.name: RangeScaled}  # models of a model: from_json only
# RealD²iff weights committed beside params/reald2iff.pt (the name reald2iff), loadable by name
# (docs/reald2iff.md): reald2iff-full (the full-size model, 4 ancestral coarse steps),
# reald2iff-2step (its coarse stage distilled to 2 steps by `realdiff distill`); reald2iff is that
# distilled coarse stage with a cheaper fine stage; reald2iff-texture is reald2iff with the
# sensor-texture stage (`realdiff texture`), and reald2iff-texture-shift that with the
# twin-registration stage (`realdiff shift`). Adding a committed model (e.g. one of another sensor)
# is its weights, params/<name>.pt, its sensor file, params/<name>.sensor.json (sensor_file.py:
# sensor, technology, working range, training data, validation figures), and its name here.
# reald2iff-d435 is the RealSense D435's (`realdiff capture` of a hand-held sweep, docs/capture.md).
COMMITTED_MODELS = (
    "reald2iff-full",
    "reald2iff-2step",
    "reald2iff-texture",
    "reald2iff-texture-shift",
    "reald2iff-d435",
)
# The noiser of `realdiff noisify` when none is named: the Kinect sensor alone. The twin-registration
# stage of reald2iff-texture-shift imitates 7-Scenes' pose error, not the sensor; on pairs whose
# poses are refined it raises residual W1 by 27 % (docs/capture.md), so it is a choice, not the default.
DEFAULT_NOISER = "reald2iff-texture"


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
        if name in WRAPPERS:  # a model of a model: its base is saved inside it
            params = {**params, "base": from_json(json.dumps(params["base"]))}
        return cls(**params)
    except (TypeError, KeyError) as e:
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
    raise ValueError(
        f"unknown noise model {key!r}: use one of {', '.join([*NOISERS, *COMMITTED_MODELS])}, "
        "the path of a .json file written by to_json(), or a .pt model from `realdiff train`"
    )


def noisers_per_camera(spec, cameras) -> dict[str, str]:
    """{camera: noiser name or path} from `--noiser`: one name for every camera ('structured-light',
    a path) or per camera, 'front=reald2iff-texture-shift,wrist=structured-light', with at most
    one item without a camera ('reald2iff,wrist=structured-light'): the noiser of the cameras not
    named (default: DEFAULT_NOISER). A dict {camera: name} is taken as the per-camera form.
    ValueError for a camera not in `cameras`, one named twice, or a malformed item."""
    cameras = list(cameras)
    if isinstance(spec, dict):
        items = [(str(c), str(n)) for c, n in spec.items()]
    else:
        text = str(spec or DEFAULT_NOISER).strip()
        if "=" not in text or Path(text).is_file():  # one noiser (a file's name may hold = or ,)
            return {c: text for c in cameras}
        items = []
        for item in text.split(","):
            if not item.strip():
                continue
            cam, sep, name = item.partition("=")
            if sep and (not cam.strip() or not name.strip()):
                raise ValueError(f"--noiser {item.strip()!r}: use CAMERA=NOISER, e.g. wrist=structured-light")
            items.append((cam.strip(), name.strip()) if sep else ("", cam.strip()))
    rest = [n for c, n in items if not c]
    if len(rest) > 1:
        raise ValueError(
            f"--noiser: {len(rest)} noisers without a camera ({', '.join(rest)}); give at most one"
        )
    named = [c for c, _ in items if c]
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise ValueError(f"--noiser names {', '.join(twice)} more than once")
    unknown = sorted(set(named) - set(cameras))
    if unknown:
        raise ValueError(f"--noiser names {', '.join(unknown)}, not among the cameras ({', '.join(cameras)})")
    given = dict((c, n) for c, n in items if c)
    return {c: given.get(c, rest[0] if rest else DEFAULT_NOISER) for c in cameras}
