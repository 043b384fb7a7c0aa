"""`simgen export --format dp3`: one camera of a simgen store as 3D Diffusion Policy's replay-buffer
zarr (zarr format 2, which DP3's zarr 2.x reads); schema in docs/formats/dp3.md.

    data/state (N, D), data/action (N, A)   float32
    data/img (N, H, W, 3) uint8             RGB stores only
    data/depth (N, H, W) float32            metres, 0 = no reading (noisy with --noisy-only)
    data/depth_<suffix> (N, H, W) float32   the other noisified depth (without --noisy-only)
    data/extrinsics (N, 4, 4) float32       camera-to-world, OpenCV axes
    data/point_cloud (N, P, 6 or 3) float32 data/depth back-projected into the world frame,
                                            cropped to the workspace, P points (+ RGB in 0..1)
    meta/episode_ends (E,) int64, meta/episode_success (E,) bool, meta/episode_seed (E,) int64

Points are sampled as DP3 does (farthest point sampling), from at most FPS_CANDIDATES points drawn
with a per-frame seed (the frame's index), so the result is the same on every run; a frame with
fewer points than P is padded with zeros, as DP3 pads.
"""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import zarr

from interop.source import ExportError, Source

SAMPLINGS = ("fps", "uniform")
FPS_CANDIDATES = 4096  # farthest point sampling runs on at most this many points a frame
SAMPLING_SEED = 0
MARGIN_XY = 0.1  # m around the hand's and objects' positions: the default workspace
MARGIN_TOP = 0.15  # m above the highest of them
ABOVE_TABLE = 0.005  # m: points lower than this above the table top are the table
CHUNK_BYTES = 8 << 20
COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)  # DP3's own


def back_project(depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, tuple]:
    """World points (M, 3) of the pixels with a reading, and their (rows, cols)."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    pts = np.stack([x, y, z], axis=1) @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]
    return pts, (v, u)


def farthest_points(xyz: np.ndarray, n: int) -> np.ndarray:
    """Indices (B, n) of n points per row of xyz (B, M, 3) by farthest point sampling from point 0.
    The rows run together and each step is a few in-place operations on (B, M) arrays (about 6 ms
    a frame for 1024 of 4096 points)."""
    b, m, _ = xyz.shape
    x, y, z = (np.ascontiguousarray(xyz[..., k], np.float32) for k in range(3))
    rows = np.arange(b)
    idx = np.zeros((b, n), np.int64)
    dist = np.full((b, m), np.inf, np.float32)
    d, tmp = np.empty((b, m), np.float32), np.empty((b, m), np.float32)
    j = np.zeros(b, np.int64)
    for i in range(n):
        idx[:, i] = j
        np.subtract(x, x[rows, j][:, None], out=d)
        np.multiply(d, d, out=d)
        for c in (y, z):
            np.subtract(c, c[rows, j][:, None], out=tmp)
            np.multiply(tmp, tmp, out=tmp)
            d += tmp
        np.minimum(dist, d, out=dist)
        j = np.argmax(dist, axis=1)
    return idx


def frame_points(
    depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray, rgb: np.ndarray | None, box: np.ndarray
) -> np.ndarray:
    """(M, 3 or 6): a frame's world points inside box [xmin, xmax, ymin, ymax, zmin, zmax], then
    their RGB in 0..1 when rgb is given."""
    pts, (v, u) = back_project(depth, K, cam_to_world)
    inside = np.all((pts >= box[0::2]) & (pts <= box[1::2]), axis=1)
    pts, v, u = pts[inside], v[inside], u[inside]
    if rgb is not None:
        pts = np.concatenate([pts, rgb[v, u].astype(np.float64) / 255.0], axis=1)
    return pts


def sample_clouds(clouds: list[np.ndarray], n: int, sampling: str, first: int) -> np.ndarray:
    """(T, n, C) float32: each frame's points sampled to n, frame s drawing from the generator
    seeded by its index first + s; a frame with fewer points is padded with zero rows."""
    out = np.zeros((len(clouds), n, clouds[0].shape[1] if clouds else 3), np.float32)
    pending = []  # (frame, candidates) for farthest point sampling
    for s, pts in enumerate(clouds):
        rng = np.random.default_rng([SAMPLING_SEED, first + s])
        if len(pts) <= n:
            out[s, : len(pts)] = pts
        elif sampling == "uniform":
            out[s] = pts[rng.choice(len(pts), n, replace=False)]
        else:
            pending.append((s, pts[rng.choice(len(pts), min(len(pts), FPS_CANDIDATES), replace=False)]))
    if pending:
        m = max(len(c) for _, c in pending)  # pad with copies of point 0: never farther than it
        padded = [np.concatenate([c, np.repeat(c[:1], m - len(c), axis=0)]) for _, c in pending]
        idx = farthest_points(np.stack([c[:, :3] for c in padded]).astype(np.float32), n)
        for (s, _), c, ix in zip(pending, padded, idx):
            out[s] = c[ix]
    return out


def table_top(src: Source, i: int, ep: dict[str, np.ndarray]) -> float | None:
    """Height of the table top in episode i: the scene's record (simgen tasks), else the lowest
    bottom of the objects over the episode (robosuite tasks record their half sizes); None if
    neither is known."""
    params = src.record(i).get("params", {})
    if "table_z" in params.get("scene", {}):
        return float(params["scene"]["table_z"])
    objects, bodies = params.get("objects", {}), src.meta.get("object_bodies", [])
    pose = ep.get("object_pose")
    if pose is not None and bodies and all("half_size" in objects.get(b, {}) for b in bodies):
        return float(min(pose[:, j, 2].min() - objects[b]["half_size"][2] for j, b in enumerate(bodies)))
    return None


def default_box(src: Source) -> np.ndarray:
    """The workspace: the hand's and objects' positions over the whole store, MARGIN_XY around
    them and up to MARGIN_TOP above the highest (the floor is set per episode by table_top)."""
    n = src.n_frames
    keys = [k for k in ("eef_pos", "object_pose") if k in src.state_keys]
    pos = [src.store.array(k)[:n][..., :3].reshape(-1, 3) for k in keys]
    if not pos:
        return np.array([-np.inf, np.inf] * 3)
    p = np.concatenate(pos)
    lo, hi = p.min(axis=0), p.max(axis=0)
    x, y = (lo[0] - MARGIN_XY, hi[0] + MARGIN_XY), (lo[1] - MARGIN_XY, hi[1] + MARGIN_XY)
    return np.array([*x, *y, -np.inf, hi[2] + MARGIN_TOP])


def check_options(points: int, sampling: str, workspace: list[float] | None) -> None:
    """ExportError for point-cloud options DP3's export cannot use."""
    if sampling not in SAMPLINGS:
        raise ExportError(f"unknown sampling {sampling!r}; choose {', '.join(SAMPLINGS)}")
    if points < 1:
        raise ExportError("--points must be at least 1")
    if workspace is not None and len(workspace) != 6:
        raise ExportError("--workspace takes 6 numbers: xmin,xmax,ymin,ymax,zmin,zmax")


class _Appender:
    """zarr format 2 arrays under a group, created on first use and grown an episode at a time."""

    def __init__(self, group: zarr.Group):
        self.group = group

    def put(self, name: str, value: np.ndarray, attrs: dict | None = None) -> None:
        if name not in self.group:
            tail = value.shape[1:]
            frame = max(int(np.prod(tail, dtype=np.int64)) * value.dtype.itemsize, 1)
            chunk = int(np.clip(CHUNK_BYTES // frame, 1, 100))  # DP3 writes 100 frames a chunk
            self.group.create_array(
                name,
                shape=(0, *tail),
                chunks=(chunk, *tail),
                dtype=value.dtype,
                compressors=COMPRESSOR,
                fill_value=0,
                attributes=attrs or {},
            )
        a = self.group[name]
        start = a.shape[0]
        a.resize((start + len(value), *a.shape[1:]))
        a[start:] = value


def write_dp3(
    src: Source,
    out: Path,
    progress: bool,
    points: int = 1024,
    sampling: str = "fps",
    workspace: list[float] | None = None,
) -> dict:
    """Write the DP3 zarr `out` episode by episode; returns {"camera", "workspace", "points"}."""
    check_options(points, sampling, workspace)
    cam = src.cameras[0]
    depths = src.depth[cam]
    if not depths:
        raise ExportError(f"{src.path}: camera {cam} has no depth to export")
    if cam not in src.extrinsics:
        raise ExportError(f"{src.path}: camera {cam} has no extrinsics; point clouds need them")
    main, others = depths[0], depths[1:]  # clean depth first; with --noisy-only the noisy one alone
    K = src.K(cam)
    box = default_box(src) if workspace is None else np.asarray(workspace, np.float64)
    floors = []
    root = zarr.open_group(str(out), mode="w", zarr_format=2)
    data = _Appender(root.create_group("data"))
    depth_attrs = {"unit": "m", "no_reading": 0, "camera": cam, "K": K.tolist()}
    ends, frame0 = [], 0
    for i, ep in src.episodes(progress, "dp3"):
        t = len(ep["action"])
        floor = table_top(src, i, ep) if workspace is None else None
        floors.append(floor)
        ebox = box.copy()
        if floor is not None:
            ebox[4] = max(ebox[4], floor + ABOVE_TABLE)
        rgb = ep.get(src.rgb.get(cam, ""))
        ext = ep[src.extrinsics[cam]].astype(np.float64)
        clouds = sample_clouds(
            [
                frame_points(ep[main.key][s], K, ext[s], None if rgb is None else rgb[s], ebox)
                for s in range(t)
            ],
            points,
            sampling,
            frame0,
        )
        data.put("state", src.flat(ep, src.proprio), {"names": src.state_names(src.proprio)})
        data.put("action", ep["action"].astype(np.float32), {"layout": src.meta["action"]["layout"]})
        if rgb is not None:
            data.put("img", rgb)
        for name, d in (("depth", main), *((f"depth_{d.suffix}", d) for d in others)):
            noisy = {"noisify": d.provenance} if d.suffix else {}
            data.put(name, ep[d.key], {**depth_attrs, "simgen_key": d.key, **noisy})
        data.put("extrinsics", ep[src.extrinsics[cam]].astype(np.float32))
        channels = "xyz" + ("rgb" if rgb is not None else "")
        data.put("point_cloud", clouds, {"frame": "world", "channels": channels})
        frame0 += t
        ends.append(frame0)
    meta = root.create_group("meta")
    for name, value in (
        ("episode_ends", np.array(ends, np.int64)),
        ("episode_success", np.array([src.success(i) for i in range(src.n_episodes)])),
        ("episode_seed", np.array([src.seed(i) for i in range(src.n_episodes)], np.int64)),
    ):
        meta.create_array(name, data=value, chunks=(max(len(value), 1),), compressors=COMPRESSOR)
    ws = {
        "box": [None if not np.isfinite(b) else float(b) for b in box],
        "table_top_per_episode": floors,
        "above_table_m": ABOVE_TABLE,
    }
    root.attrs["simgen"] = {
        **src.summary_meta(),
        "camera": cam,
        "point_cloud": {"points": points, "sampling": sampling, "seed_rule": "frame index", "workspace": ws},
    }
    return {"camera": cam, "points": points, "workspace": ws}
