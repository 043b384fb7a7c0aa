"""`realdiff noisify` on 3D Diffusion Policy's zarr (docs/formats/dp3.md): data/depth gains
data/depth_<suffix>, and data/point_cloud_<suffix> when the zarr says how its clouds were made."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from interop import dp3
from interop.hdf5 import Sidecar
from realdiff.noisify import TOOL, _model, _warn_stderr, check_suffix, run_noisify_jobs
from realdiff.noisify_datasets.common import (
    RANGE_SAMPLE_FRAMES,
    models_for,
    range_warning,
    read_intrinsics,
    resume_sidecar,
)
from realdiff.sensors import DEFAULT_NOISER
from simgen.store import depth_from_stored, depth_to_stored


def is_dp3(path: Path) -> bool:
    """A zarr group with data/depth and meta/episode_ends (3D Diffusion Policy's replay buffer)."""
    try:
        root = zarr.open_group(str(path), mode="r")
        return "depth" in root["data"] and "episode_ends" in root["meta"]
    except Exception:
        return False


def _noisify_dp3_piece(
    path: str, start: int, end: int, camera: str, model_json: str, K: list, seed: int, sidecar: str, threads=1
) -> int:
    """Worker: noisify frames [start, end) of a DP3 zarr's data/depth into the sidecar."""
    model = _model(model_json, threads)
    clean = np.asarray(zarr.open_group(path, mode="r")["data/depth"][start:end], np.float32)
    if not np.all(np.isfinite(clean)) or np.any(clean < 0):
        raise ValueError(
            f"{path}: data/depth holds NaN, infinite or negative depth (frames {start}..{end - 1})"
        )
    cam = zlib.crc32(camera.encode())
    rngs = [np.random.default_rng([seed, cam, start + i]) for i in range(len(clean))]
    Sidecar(sidecar).save(
        f"depth.{start}", depth_to_stored(model.noisify_frames(clean, np.asarray(K, float), rngs))
    )
    return end - start


def _like(data: zarr.Group, name: str, src: zarr.Array, attrs: dict) -> zarr.Array:
    """A new float32 array `name` (replacing one there) with src's shape, chunks and compressor."""
    return data.create_array(
        name,
        shape=src.shape,
        chunks=src.chunks,
        dtype=np.float32,
        compressors=src.compressors,
        fill_value=0,
        overwrite=True,
        attributes=attrs,
    )


@dataclass
class Clouds:
    """How `simgen export --format dp3` made a zarr's point clouds (root attrs simgen.point_cloud),
    to make the same from noisy depth: workspace box, per-episode table top, sampling."""

    K: np.ndarray
    data: zarr.Group
    ends: np.ndarray
    box: np.ndarray
    floors: list
    above: float
    sampling: str

    @classmethod
    def of(cls, root: zarr.Group, K: np.ndarray) -> Clouds | None:
        meta = dict(root.attrs.get("simgen", {})).get("point_cloud")
        if not meta or "extrinsics" not in root["data"] or "point_cloud" not in root["data"]:
            return None
        ws = meta["workspace"]
        box = np.array(
            [(-np.inf if i % 2 == 0 else np.inf) if b is None else b for i, b in enumerate(ws["box"])]
        )
        ends = np.asarray(root["meta/episode_ends"][:])
        return cls(
            K, root["data"], ends, box, ws["table_top_per_episode"], ws["above_table_m"], meta["sampling"]
        )

    def sample(self, depth: np.ndarray, first: int, shape: tuple) -> np.ndarray:
        """Point clouds (n, P, C) of depth frames first, first + 1, ... as the export samples them."""
        n = len(depth)
        rgb = self.data["img"][first : first + n] if shape[1] == 6 and "img" in self.data else None
        ext = np.asarray(self.data["extrinsics"][first : first + n], np.float64)
        points = []
        for i in range(n):
            box, floor = (
                self.box.copy(),
                self.floors[int(np.searchsorted(self.ends, first + i, side="right"))],
            )
            if floor is not None:
                box[4] = max(box[4], floor + self.above)
            points.append(dp3.frame_points(depth[i], self.K, ext[i], None if rgb is None else rgb[i], box))
        return dp3.sample_clouds(points, shape[0], self.sampling, first)


def noisify_dp3(
    path: str | Path,
    noiser: str | dict = DEFAULT_NOISER,
    cameras: list[str] | None = None,
    suffix: str = "noisy",
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    range_scale: dict | None = None,
    warn=_warn_stderr,
    backend: str = "local",
    address: str | None = None,
    intrinsics: str | None = None,
) -> dict:
    """Write data/depth_<suffix> in a DP3 zarr (one camera: its name from data/depth's attrs, else
    "depth"), frames seeded by their index as in a simgen store; and data/point_cloud_<suffix> from it
    when the zarr says how its point clouds were made (`simgen export --format dp3`: K, extrinsics,
    workspace), with the same sampling."""
    root = Path(path)
    check_suffix(suffix)
    g = zarr.open_group(str(root), mode="r")
    depth = g["data/depth"]
    if depth.ndim != 3:
        raise ValueError(f"{root}: data/depth has shape {depth.shape}; expected (N, H, W) metres")
    cam = str(depth.attrs.get("camera", "depth"))
    if cameras and list(cameras) != [cam]:
        raise ValueError(f"{root}: a DP3 zarr holds one camera, {cam!r}")
    for key in (f"depth_{suffix}", f"point_cloud_{suffix}"):
        if key in g["data"] and not overwrite:
            raise ValueError(f"data/{key} exists; --overwrite replaces it")
    K = read_intrinsics(intrinsics, [cam]).get(cam)
    if K is None and "K" in depth.attrs:
        K = np.asarray(depth.attrs["K"], float)
    if K is None:
        raise ValueError(f"{root}: no intrinsics in data/depth's attrs; pass --intrinsics K.txt")
    names, models = models_for(noiser, [cam], range_scale, seed)
    model, base, config = models[cam]
    n = depth.shape[0]
    sample = np.asarray(depth[:: max(1, n // RANGE_SAMPLE_FRAMES)], np.float32)
    check = range_warning(sample, cam, names[cam], model, base)
    if check and "warning" in check:
        warn(check["warning"])
    settings = {"config": config, "K": np.round(K, 9).tolist(), "camera": cam}
    stamp = [n, str(g["meta/episode_ends"][:].tolist())]
    side = resume_sidecar(
        Path(f"{root}.{TOOL}-{suffix}"), {"zarr": stamp, "suffix": suffix, "depth": settings}, overwrite
    )
    step = depth.chunks[0]
    fixed = (cam, model.to_json(), K.tolist(), seed, str(side.folder))
    jobs = [(str(root), s, min(s + step, n), *fixed) for s in range(0, n, step) if not side.has(f"depth.{s}")]
    bar = tqdm(
        total=sum(j[2] - j[1] for j in jobs), unit="frame", desc=f"noisify {names[cam]}", disable=not progress
    )
    run_noisify_jobs(_noisify_dp3_piece, jobs, bar.update, backend, workers, address)
    bar.close()
    w = zarr.open_group(str(root), mode="r+")
    data = w["data"]
    attrs = {**dict(depth.attrs), "source": "depth", "noisify": {**settings, "range_check": check}}
    out = _like(data, f"depth_{suffix}", depth, {**attrs, "complete": False})
    clouds = Clouds.of(w, K)
    cloud_out = None
    if clouds is not None:
        src = data["point_cloud"]
        cloud_out = _like(
            data, f"point_cloud_{suffix}", src, {**dict(src.attrs), "source": f"depth_{suffix}"}
        )
    for s in tqdm(range(0, n, step), desc="write", unit="piece", disable=not progress):
        noisy = depth_from_stored(side.load(f"depth.{s}"))
        out[s : s + len(noisy)] = noisy
        if cloud_out is not None:
            cloud_out[s : s + len(noisy)] = clouds.sample(noisy, s, cloud_out.shape[1:])
    for a in (out, cloud_out):
        if a is not None:
            a.attrs["complete"] = True
    side.remove()
    keys = [f"depth_{suffix}"] + ([f"point_cloud_{suffix}"] if cloud_out is not None else [])
    return {
        "frames": n,
        "cameras": [cam],
        "frames_noisified": bar.total,
        "keys": keys,
        "noiser": names[cam],
        "noisers": {cam: names[cam]},
        "warnings": [check["warning"]] if check and "warning" in check else [],
        "out": str(root),
    }
