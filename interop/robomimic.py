"""robomimic / MimicGen HDF5 datasets: finding their depth, reading it as metric depth, writing noisy
depth beside it (docs/formats/robomimic.md).

The layout robomimic defines (and MimicGen, LIBERO and robosuite's own tools write):

    data                       attrs: env_args (JSON: env_name, type, env_kwargs), total
    data/demo_<i>/             attrs: num_samples, model_file (the MJCF, robosuite datasets)
        actions, states, rewards, dones
        obs/<key>, next_obs/<key>   e.g. agentview_image (T, H, W, 3), agentview_depth (T, H, W, 1)

Depth comes in two conventions, told apart per camera (`depth_convention`):

- `metric`: what simgen writes (`simgen export`, `simgen depth`, `realdiff noisify`): float32 metres,
  upright, 0 = no reading; the dataset's attrs say so (`unit: "m"`) and give K.
- `robosuite`: what robomimic's dataset_states_to_obs.py writes with --depth: robosuite's normalised
  depth buffer in [0, 1], upside down (OpenGL's row order). It becomes metric z-depth with the
  near and far planes of the demo's own model (`model_file`; interop.robosuite_replay), and a
  reading at the far plane (the background) becomes "no reading".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np

CONVENTIONS = ("auto", "metric", "robosuite")
METRIC_ATTRS = {"unit": "m", "no_reading": 0, "convention": "z-depth, upright (row 0 = top)"}


class DatasetError(ValueError):
    """A file that is not a usable robomimic dataset, or depth this reader cannot interpret."""


def is_robomimic(path: str | Path) -> bool:
    """An HDF5 file with a `data` group holding `demo_<i>` groups."""
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("data"), h5py.Group) and any(_DEMO.fullmatch(k) for k in f["data"])
    except OSError:
        return False


_DEMO = re.compile(r"demo_(\d+)")


def demos(f: h5py.File) -> list[str]:
    """The demo groups in their numeric order (demo_0, demo_1, ..., demo_10)."""
    return sorted((k for k in f["data"] if _DEMO.fullmatch(k)), key=lambda k: int(k[5:]))


def env_args(f: h5py.File) -> dict:
    raw = f["data"].attrs.get("env_args")
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return {}


def is_derived(ds: h5py.Dataset) -> bool:
    """Depth written by `realdiff noisify` (its provenance in attrs['noisify'])."""
    return "noisify" in ds.attrs


def depth_cameras(f: h5py.File) -> list[str]:
    """Cameras with clean depth `obs/<camera>_depth` in the first demo (noisified depth excluded)."""
    first = demos(f)[0]
    obs = f[f"data/{first}/obs"]
    return sorted(k[: -len("_depth")] for k in obs if k.endswith("_depth") and not is_derived(obs[k]))


def frames_of(ds: h5py.Dataset) -> tuple[int, int, int]:
    """(T, H, W) of a depth dataset shaped (T, H, W) or (T, H, W, 1)."""
    if ds.ndim == 4 and ds.shape[3] == 1:
        return ds.shape[:3]
    if ds.ndim == 3:
        return ds.shape
    raise DatasetError(f"{ds.name}: depth of shape {ds.shape}; expected (T, H, W) or (T, H, W, 1)")


def convention_of(ds: h5py.Dataset, asked: str = "auto") -> str:
    """The depth convention of a dataset: `asked` unless 'auto'; then `metric` when its attrs say
    metres, `robosuite` for float depth within [0, 1] (checked on its first frame)."""
    if asked not in CONVENTIONS:
        raise DatasetError(f"unknown depth convention {asked!r}; choose {', '.join(CONVENTIONS)}")
    if asked != "auto":
        return asked
    if ds.attrs.get("unit") == "m":
        return "metric"
    if ds.dtype.kind == "f" and len(ds) and float(np.nanmax(ds[0])) <= 1.0:
        return "robosuite"
    raise DatasetError(
        f"{ds.name}: depth without a unit attribute and not robosuite's normalised depth "
        "(values above 1); pass --depth-convention metric if it is metres"
    )


@lru_cache(maxsize=8)
def _model(xml_hash: str, xml: str):
    from interop.robosuite_replay import model_from_xml

    return model_from_xml(xml)


def demo_model(f: h5py.File, demo: str):
    """The MuJoCo model of a demo (its `model_file`), compiled once per distinct XML."""
    xml = f[f"data/{demo}"].attrs.get("model_file")
    if xml is None:
        raise DatasetError(
            f"data/{demo} has no model_file: robosuite's normalised depth cannot be made metric "
            "without the model's clipping planes"
        )
    xml = xml.decode() if isinstance(xml, bytes) else str(xml)
    return _model(hashlib.sha1(xml.encode()).hexdigest(), xml)


def read_metric(f: h5py.File, path: str, start: int, end: int, convention: str) -> np.ndarray:
    """Frames [start, end) of the depth dataset at `path` as float32 metres (n, H, W), upright,
    0 = no reading. ValueError for NaN, infinite or negative depth."""
    ds = f[path]
    frames_of(ds)
    v = np.asarray(ds[start:end], np.float32).reshape(end - start, *ds.shape[1:3])
    if not np.all(np.isfinite(v)):
        raise DatasetError(f"{path} holds NaN or infinite depth (frames {start}..{end - 1})")
    if convention == "robosuite":
        from interop.robosuite_replay import metric_from_normalized

        if np.any(v < 0) or np.any(v > 1):
            raise DatasetError(f"{path}: normalised depth outside [0, 1] (frames {start}..{end - 1})")
        from simgen.render import far_plane, no_reading_at_far

        model = demo_model(f, path.split("/")[1])
        v = metric_from_normalized(model, v.astype(np.float64))[:, ::-1].astype(np.float32)
        v = np.ascontiguousarray(no_reading_at_far(v, far_plane(model)))
    elif np.any(v < 0):
        raise DatasetError(f"{path} holds negative depth (frames {start}..{end - 1})")
    return v


def intrinsics(f: h5py.File, camera: str, convention: str) -> np.ndarray | None:
    """K of a camera: from its metric depth's attrs, or (robosuite depth) from the first demo's
    model at the depth's size. None when the file does not say."""
    first = demos(f)[0]
    ds = f[f"data/{first}/obs/{camera}_depth"]
    if "K" in ds.attrs:
        K = ds.attrs["K"]
        return np.asarray(json.loads(K) if isinstance(K, (str, bytes)) else K, np.float64)
    if convention == "robosuite" and "model_file" in f[f"data/{first}"].attrs:
        from interop.robosuite_replay import camera_K

        _, h, w = frames_of(ds)
        try:
            return camera_K(demo_model(f, first), camera, w, h)
        except (KeyError, ValueError):
            return None
    return None


@dataclass(frozen=True)
class DepthSpan:
    """Frames of one camera's depth in one demo: what a noisify job reads (`path` in the file)."""

    camera: str
    path: str  # e.g. data/demo_3/obs/agentview_depth
    frames: int
    first: int  # global index of frame 0 (frames counted over obs in demo order): the noise seed
    stream: int = 0  # 0: obs frames; 1: frames seeded apart from obs (see noisify_spans)


def noisify_spans(f: h5py.File, camera: str) -> tuple[list[DepthSpan], dict]:
    """What to noisify for a camera, and how next_obs follows: each demo's obs frames (seeded by
    their global frame index, as a simgen store's), and for next_obs: when next_obs[t] is obs[t+1]
    (robomimic's own layout) only its last frame, the rest copied from obs's noisy frames, so a
    reading is noisified once; otherwise all of it, seeded apart. Returns (spans, plan) where
    plan[demo] = "shift", "own" or None (no next_obs depth)."""
    spans, plan, first = [], {}, 0
    key = f"{camera}_depth"
    for demo in demos(f):
        g = f[f"data/{demo}"]
        if key not in g.get("obs", {}):
            raise DatasetError(f"data/{demo}/obs has no {key}")
        t = frames_of(g["obs"][key])[0]
        spans.append(DepthSpan(camera, f"data/{demo}/obs/{key}", t, first))
        nxt = g.get("next_obs")
        if nxt is not None and key in nxt:
            if frames_of(nxt[key])[0] != t:
                raise DatasetError(f"data/{demo}/next_obs/{key} has another length than obs")
            shifted = t > 1 and np.array_equal(nxt[key][: t - 1], g["obs"][key][1:])
            if shifted:
                plan[demo] = "shift"
                spans.append(DepthSpan(camera, f"data/{demo}/next_obs/{key}#last", 1, first + t, 1))
            else:
                plan[demo] = "own"
                spans.append(DepthSpan(camera, f"data/{demo}/next_obs/{key}", t, first, 1))
        else:
            plan[demo] = None
        first += t
    return spans, plan


def span_read(f: h5py.File, span: DepthSpan, start: int, end: int, convention: str) -> np.ndarray:
    """Frames [start, end) of a span as metric depth (see read_metric)."""
    if span.path.endswith("#last"):
        path = span.path[: -len("#last")]
        t = f[path].shape[0]
        return read_metric(f, path, t - 1, t, convention)
    return read_metric(f, span.path, start, end, convention)


def create_depth(group: h5py.Group, key: str, shape: tuple, attrs: dict, overwrite: bool) -> h5py.Dataset:
    """An empty `group/key` of (T, H, W, 1) float32 metres (one gzip chunk per frame) carrying the metric
    attrs plus `attrs` (arrays as HDF5 arrays, dicts as JSON). Replaces an existing dataset only
    with `overwrite`."""
    if key in group:
        if not overwrite:
            raise DatasetError(f"{group.name}/{key} exists; --overwrite replaces it")
        del group[key]
    t, h, w = shape
    ds = group.create_dataset(
        key,
        shape=(t, h, w, 1),
        dtype=np.float32,
        chunks=(1, h, w, 1),
        compression="gzip",  # level 1, lossless, readable everywhere; without shuffle: noisy depth
        compression_opts=1,  # packs 7x in 0.3 ms a 128x128 frame (with shuffle 4x in 0.5 ms)
    )
    for k, v in {**METRIC_ATTRS, **attrs}.items():
        ds.attrs[k] = json.dumps(v) if isinstance(v, dict) else v
    return ds
