"""`simgen depth`: metric depth, intrinsics and per-frame extrinsics for cameras of a robosuite-made
robomimic / MimicGen HDF5 dataset, by replaying each demo's stored MuJoCo states
(interop.robosuite_replay), as robomimic's dataset_states_to_obs.py does with its depth flag but
metric and upright.

Written per demo `data/demo_N/obs/<camera>_depth` (T, H, W, 1) float32 metres, upright, 0 = no
reading, whole millimetres (simgen's store quantisation), with attributes unit, no_reading,
convention and K (3x3, OpenCV pixel-centre convention); `obs/<camera>_extrinsics` (T, 4, 4) float32
camera-to-world, OpenCV axes; the same under `next_obs/` when the demo has one (next_obs[t] =
obs[t + 1], the last step repeated). Crash-safe (interop.hdf5): each demo's result is saved in a
sidecar folder beside the file (a killed run resumes there), and everything is added to the file
at the end by one atomic replacement.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

import simgen
from interop.hdf5 import Sidecar, atomic_update
from interop.robosuite_replay import Replay, camera_names, resolve_assets
from plumbing.procs import WORKER_ENV, WorkerFailed, spawn_pool
from simgen.robosuite_env import import_robosuite
from simgen.store import depth_from_stored, depth_to_stored

DEPTH_ATTRS = {"unit": "m", "no_reading": 0, "convention": "z-depth, upright (row 0 = top)"}
CHUNK = 64  # frames rendered, or written, at a time
EXTRINSICS_CONVENTION = "camera-to-world 4x4, OpenCV axes (x right, y down, z forward)"


@dataclass
class Plan:
    """What a run does: the demos in order, their lengths and each camera's (width, height)."""

    path: Path
    cameras: list[str]
    sizes: dict[str, tuple[int, int]]
    lengths: dict[str, int]

    def settings(self) -> dict:
        """What a sidecar's results depend on: a sidecar made for other settings is discarded."""
        st = self.path.stat()
        return {
            "cameras": self.cameras,
            "sizes": {c: list(s) for c, s in self.sizes.items()},
            "lengths": self.lengths,
            "file": [st.st_size, st.st_mtime_ns],
        }


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".simgen-depth")


def _demos(data: h5py.Group) -> list[str]:
    names = [k for k in data if re.fullmatch(r"demo_\d+", k) and isinstance(data[k], h5py.Group)]
    return sorted(names, key=lambda k: int(k[5:]))


def _model_file(demo: h5py.Group) -> str | None:
    xml = demo.attrs.get("model_file")
    return xml.decode() if isinstance(xml, bytes) else xml


def _env_sizes(data: h5py.Group) -> dict[str, tuple[int, int]]:
    """Camera sizes from robomimic's `env_args` (camera_names, camera_widths/heights: a number or
    one per camera)."""
    try:
        kw = json.loads(data.attrs["env_args"])["env_kwargs"]
    except (KeyError, TypeError, ValueError):
        return {}
    names, ws, hs = kw.get("camera_names"), kw.get("camera_widths"), kw.get("camera_heights")
    names = [names] if isinstance(names, str) else list(names or [])
    out = {}
    for i, c in enumerate(names):
        w = ws[i] if isinstance(ws, list) and i < len(ws) else ws
        h = hs[i] if isinstance(hs, list) and i < len(hs) else hs
        if isinstance(w, int) and isinstance(h, int):
            out[c] = (w, h)
    return out


def _size(cam, width, height, env_sizes, demo: h5py.Group) -> tuple[int, int]:
    if width is not None:
        return width, height
    if cam in env_sizes:
        return env_sizes[cam]
    image = demo.get(f"obs/{cam}_image")
    if isinstance(image, h5py.Dataset) and image.ndim == 4:
        return int(image.shape[2]), int(image.shape[1])
    raise ValueError(f"the file does not say the size of camera {cam!r}: give --width and --height")


def plan(path: str | Path, cameras, width=None, height=None, overwrite=False) -> Plan:
    """Check the dataset and the request (ValueError, one line, for anything wrong) and plan the run."""
    path = Path(path)
    cameras = list(cameras)
    if not cameras or len(set(cameras)) != len(cameras):
        raise ValueError("--cameras must name at least one camera, each once")
    if (width is None) != (height is None):
        raise ValueError("give both --width and --height, or neither")
    if width is not None and (width < 1 or height < 1):
        raise ValueError("--width and --height must be positive")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise ValueError(f"{path}: not an HDF5 file")
    with h5py.File(path, "r") as f:
        data = f.get("data")
        demos = _demos(data) if isinstance(data, h5py.Group) else []
        if not demos:
            raise ValueError(f"{path}: not a robomimic dataset (no data/demo_N groups)")
        lengths = {}
        for name in demos:
            demo = data[name]
            states, xml = demo.get("states"), _model_file(demo)
            if not isinstance(states, h5py.Dataset) or states.ndim != 2 or not states.shape[0]:
                raise ValueError(f"{path}: data/{name} has no states to replay")
            if not isinstance(xml, str):
                raise ValueError(f"{path}: data/{name} has no model_file (the MJCF its states belong to)")
            known = camera_names(xml)
            for c in cameras:
                if c not in known:
                    raise ValueError(
                        f"{path}: unknown camera {c!r}; data/{name}'s model has {', '.join(known) or 'none'}"
                    )
                for group in ("obs", "next_obs"):
                    for key in (f"{c}_depth", f"{c}_extrinsics"):
                        if key in demo.get(group, {}) and not overwrite:
                            raise ValueError(
                                f"{path}: data/{name}/{group}/{key} exists; pass --overwrite to replace it"
                            )
            lengths[name] = int(states.shape[0])
        env_sizes = _env_sizes(data)
        sizes = {c: _size(c, width, height, env_sizes, data[demos[0]]) for c in cameras}
        resolve_assets(_model_file(data[demos[0]]))  # a missing asset: say so before any work
    return Plan(path, cameras, sizes, lengths)


def _done(sidecar: Sidecar, demo: str, cameras) -> bool:
    return all(sidecar.has(f"{demo}/{c}_{k}") for c in cameras for k in ("depth", "extrinsics", "K"))


def render_demo(folder: str, demo: str, xml: str, states: np.ndarray, sizes: dict) -> str:
    """Replay one demo and save each camera's depth (uint16 mm), extrinsics and K in the sidecar.
    Frames are rendered CHUNK at a time: float depth never holds a whole long demo."""
    sidecar = Sidecar(folder)
    t = len(states)
    mm = {c: np.zeros((t, h, w), np.uint16) for c, (w, h) in sizes.items()}
    extrinsics = {c: np.zeros((t, 4, 4), np.float32) for c in sizes}
    with Replay(xml, sizes) as replay:
        for start in range(0, t, CHUNK):
            for c, (depth, ex) in replay.render(states[start : start + CHUNK]).items():
                mm[c][start : start + len(depth)] = depth_to_stored(depth)
                extrinsics[c][start : start + len(depth)] = ex
        for c in sizes:
            sidecar.save(f"{demo}/{c}_K", replay.camera_K(c))
            sidecar.save(f"{demo}/{c}_extrinsics", extrinsics[c])
            sidecar.save(f"{demo}/{c}_depth", mm[c])
    return demo


def _render_all(p: Plan, sidecar: Sidecar, todo: list[str], workers: int, bar) -> None:
    """Render the demos `todo` into the sidecar, on `workers` spawned processes (here if one)."""
    with h5py.File(p.path, "r") as f:

        def job(name):
            demo = f[f"data/{name}"]
            return str(sidecar.folder), name, _model_file(demo), demo["states"][:], p.sizes

        if workers <= 1:
            for name in todo:
                render_demo(*job(name))
                bar.update(1)
            return
        with spawn_pool(workers, import_robosuite, env=WORKER_ENV) as pool:
            pending, queue = set(), list(todo)
            try:
                while queue or pending:
                    while queue and len(pending) < 2 * workers:  # bounded: states read as needed
                        pending.add(pool.submit(render_demo, *job(queue.pop(0))))
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        fut.result()
                        bar.update(1)
            except BrokenProcessPool as e:
                raise WorkerFailed(f"a depth worker died ({e})") from None
            finally:
                for fut in pending:
                    fut.cancel()


def _put_depth(g: h5py.Group, c: str, mm: np.ndarray, rows: np.ndarray, attrs: dict) -> None:
    """g/<c>_depth = metres of frames `rows` of `mm`, written CHUNK frames at a time."""
    t, h, w = len(rows), *mm.shape[1:]
    d = g.create_dataset(
        f"{c}_depth",
        shape=(t, h, w, 1),
        dtype=np.float32,
        chunks=(1, h, w, 1),
        compression="gzip",
        compression_opts=1,
        shuffle=True,
    )
    for start in range(0, t, CHUNK):
        d[start : start + CHUNK] = depth_from_stored(mm[rows[start : start + CHUNK]])[..., None]
    d.attrs.update(attrs)


def _write(p: Plan, sidecar: Sidecar) -> None:
    """Add every demo's results to the file in one atomic replacement."""
    made_by = f"simgen depth {simgen.__version__}: replayed data/<demo>/states"
    with atomic_update(p.path) as f:
        for name, t in p.lengths.items():
            demo = f[f"data/{name}"]
            groups = {"obs": demo.require_group("obs")}
            if "next_obs" in demo:
                groups["next_obs"] = demo["next_obs"]
            for c in p.cameras:
                mm = sidecar.load(f"{name}/{c}_depth")
                extrinsics = sidecar.load(f"{name}/{c}_extrinsics")
                K = sidecar.load(f"{name}/{c}_K").round(9).tolist()
                for kind, g in groups.items():
                    # next_obs[t] = obs[t + 1], the last step repeated
                    rows = np.minimum(np.arange(t) + (kind == "next_obs"), t - 1)
                    for key in (f"{c}_depth", f"{c}_extrinsics"):
                        if key in g:
                            del g[key]
                    _put_depth(g, c, mm, rows, {**DEPTH_ATTRS, "K": K, "made_by": made_by})
                    e = g.create_dataset(f"{c}_extrinsics", data=extrinsics[rows])
                    e.attrs.update({"convention": EXTRINSICS_CONVENTION, "made_by": made_by})


def add_depth(
    path: str | Path,
    cameras,
    width: int | None = None,
    height: int | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Replay every demo of the robomimic HDF5 file `path` and add depth, K and extrinsics of
    `cameras` (robosuite camera names) at width x height (default: the file's env_args, else its
    `<camera>_image` size). Resumes a killed run. Returns a summary."""
    if workers is not None and workers < 1:
        raise ValueError("--workers must be at least 1")
    p = plan(path, cameras, width, height, overwrite)
    sidecar = Sidecar(sidecar_path(p.path))
    settings = np.frombuffer(json.dumps(p.settings(), sort_keys=True).encode(), np.uint8)
    if sidecar.has("settings") and not np.array_equal(sidecar.load("settings"), settings):
        sidecar.remove()  # left by a run with other settings, or the file changed since
    sidecar.save("settings", settings)
    todo = [d for d in p.lengths if not _done(sidecar, d, p.cameras)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    bar = tqdm(
        total=len(p.lengths),
        initial=len(p.lengths) - len(todo),
        unit="demo",
        desc="depth",
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        _render_all(p, sidecar, todo, workers, bar)
    _write(p, sidecar)
    sidecar.remove()
    return {
        "demos": len(p.lengths),
        "frames": sum(p.lengths.values()),
        "rendered": len(todo),
        "sizes": p.sizes,
    }
