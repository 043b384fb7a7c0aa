"""Real/clean depth pairs: render a scene mesh (the digital twin) at each real frame's pose with
the real camera's intrinsics, and store both depths side by side (`make_pairs`); read a split
back (`load_split`).

Input layout (as in 7-Scenes): a folder of `frame-NNNNNN.depth.png` (16-bit, millimetres by
default, 0 and 65535 = no reading) with `frame-NNNNNN.pose.txt` (4x4 camera-to-world, OpenCV
camera axes), a 3x3 intrinsics text file, and a mesh in any format trimesh reads.

Pair store (zarr format 3), attribute `realdiff_pairs` holds the schema, source, sensor, K, the
image size and the train/val split; arrays:
    clean, real          (N, H, W) float32 metres, 0 = no reading
    clean_valid, real_valid  (N, H, W) bool
    frame_id             (N,) int64
    pose                 (N, 4, 4) float64 camera-to-world (OpenCV axes)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import zarr
from tqdm import tqdm
from zarr.codecs import BloscCodec, BloscShuffle

from simgen.render import TwinRenderer

PAIRS_SCHEMA = "realdiff_pairs"
PAIRS_VERSION = 1
_FRAME = re.compile(r"frame-(\d+)\.depth\.png$")
_HIST_EDGES = np.arange(0.0, 5.0001, 0.0001)  # 0.1 mm bins for the pooled median
_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle)


@dataclass(frozen=True)
class Frame:
    frame_id: int
    depth_path: Path
    pose: np.ndarray  # 4x4 camera-to-world, OpenCV axes


def read_intrinsics(path: str | Path) -> np.ndarray:
    """A 3x3 camera matrix from a whitespace-separated text file."""
    K = np.loadtxt(path, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{path}: not a 3x3 camera matrix with positive focal lengths")
    return K


def list_frames(folder: str | Path) -> list[Frame]:
    """Every frame-NNNNNN.depth.png in `folder` with its pose file, sorted by frame id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    frames = []
    for p in sorted(folder.iterdir()):
        m = _FRAME.search(p.name)
        if not m:
            continue
        pose_path = p.with_name(p.name.replace(".depth.png", ".pose.txt"))
        if not pose_path.exists():
            raise ValueError(f"{p.name}: no pose file {pose_path.name}")
        pose = np.loadtxt(pose_path, dtype=np.float64)
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError(f"{pose_path}: not a 4x4 pose")
        frames.append(Frame(int(m.group(1)), p, pose))
    if not frames:
        raise ValueError(f"{folder}: no frame-NNNNNN.depth.png files")
    return frames


def read_depth_png(path: Path, scale_m: float = 0.001, invalid=(0, 65535)) -> np.ndarray:
    """16-bit depth PNG -> float32 metres with 0 where the sensor gave no reading."""
    raw = imageio.imread(path)
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(f"{path}: expected a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
    depth = raw.astype(np.float32) * np.float32(scale_m)
    depth[np.isin(raw, invalid)] = 0.0
    return depth


def pooled_median(hist: np.ndarray) -> float:
    """Median (m) of the values counted in a histogram over _HIST_EDGES (bin centre)."""
    c = np.cumsum(hist)
    if c[-1] == 0:
        return float("nan")
    i = int(np.searchsorted(c, c[-1] / 2))
    return float((_HIST_EDGES[i] + _HIST_EDGES[i + 1]) / 2)


def make_pairs(
    frames_dir,
    intrinsics,
    mesh,
    out,
    depth_scale=0.001,
    sensor="kinect-v1",
    source=None,
    val_from=600,
    progress=True,
) -> dict:
    """Render the twin at every frame and write the pair store `out`; returns a summary."""
    frames = list_frames(frames_dir)
    K = read_intrinsics(intrinsics)
    first = read_depth_png(frames[0].depth_path, depth_scale)
    H, W = first.shape
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out}: exists; choose a new --out")
    tmp = out.with_name(out.name + ".partial")
    root = zarr.open_group(tmp, mode="w")
    n = len(frames)

    def arr(name, shape, dtype, chunks):
        return root.create_array(name, shape=shape, chunks=chunks, dtype=dtype, compressors=_CODEC)

    clean = arr("clean", (n, H, W), "float32", (1, H, W))
    real = arr("real", (n, H, W), "float32", (1, H, W))
    clean_valid = arr("clean_valid", (n, H, W), "bool", (1, H, W))
    real_valid = arr("real_valid", (n, H, W), "bool", (1, H, W))
    ids = np.array([f.frame_id for f in frames], np.int64)
    poses = np.stack([f.pose for f in frames])
    root.create_array("frame_id", data=ids, chunks=(n,))
    root.create_array("pose", data=poses, chunks=(n, 4, 4))
    abs_err = []  # per-frame medians
    hist = np.zeros(len(_HIST_EDGES) - 1, np.int64)  # pooled |real - clean| over all frames
    with TwinRenderer(mesh, K, W, H) as twin:
        for i, f in enumerate(tqdm(frames, desc="pair", unit="frame", disable=not progress)):
            r = read_depth_png(f.depth_path, depth_scale) if i else first
            if r.shape != (H, W):
                raise ValueError(f"{f.depth_path.name}: size {r.shape} differs from {(H, W)}")
            c = twin.render(f.pose)
            clean[i], real[i] = c, r
            clean_valid[i], real_valid[i] = c > 0, r > 0
            both = (c > 0) & (r > 0)
            d = np.abs(r[both] - c[both])
            abs_err.append(np.median(d) if d.size else np.nan)
            hist += np.histogram(d, _HIST_EDGES)[0]
    split = {
        "train": [int(i) for i in np.nonzero(ids < val_from)[0]],
        "val": [int(i) for i in np.nonzero(ids >= val_from)[0]],
    }
    root.attrs[PAIRS_SCHEMA] = {
        "schema": PAIRS_SCHEMA,
        "schema_version": PAIRS_VERSION,
        "source": source or str(Path(frames_dir).resolve()),
        "sensor": sensor,
        "K": K.tolist(),
        "width": W,
        "height": H,
        "depth_scale_m": depth_scale,
        "mesh": str(Path(mesh).name),
        "split": {"val_from_frame": val_from, **split},
        "median_abs_diff_m_per_frame": [float(x) for x in abs_err],
        "median_abs_diff_m": pooled_median(hist),
    }
    os.replace(tmp, out)  # the store appears only once complete
    return {
        "frames": n,
        "median_abs_diff_mm": pooled_median(hist) * 1000,
        "train": len(split["train"]),
        "val": len(split["val"]),
    }


def load_split(pairs: str | Path, split: str):
    """(clean, real, K, frame_ids) of a pair store's split ('train' or 'val')."""
    try:
        g = zarr.open_group(pairs, mode="r")
        meta = g.attrs.get(PAIRS_SCHEMA)
    except Exception:  # not a zarr store at all
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(f"{pairs}: not a pair store (made by `realdiff pair`)")
    if split not in meta["split"] or split == "val_from_frame":
        raise ValueError(f"unknown split {split!r}; use train or val")
    idx = np.array(meta["split"][split], int)
    if idx.size == 0:
        raise ValueError(f"{pairs}: split {split} is empty")
    sel = slice(int(idx[0]), int(idx[-1]) + 1) if np.all(np.diff(idx) == 1) else idx
    get = (lambda a: a[sel]) if isinstance(sel, slice) else (lambda a: a.get_orthogonal_selection(sel))
    return get(g["clean"]), get(g["real"]), np.array(meta["K"]), get(g["frame_id"])
