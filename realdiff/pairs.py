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
import shutil
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm
from zarr.codecs import BloscCodec, BloscShuffle

from realdiff.frames import list_frames, read_depth_png, read_intrinsics
from simgen.render import TwinRenderer

__all__ = ["make_pairs", "load_split", "list_frames", "read_depth_png", "read_intrinsics"]

PAIRS_SCHEMA = "realdiff_pairs"
PAIRS_VERSION = 1
_HIST_EDGES = np.arange(0.0, 5.0001, 0.0001)  # 0.1 mm bins for the pooled median
_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle)


def pooled_median(hist: np.ndarray) -> float:
    """Median (m) of the values counted in a histogram over _HIST_EDGES (bin centre)."""
    c = np.cumsum(hist)
    if c[-1] == 0:
        return float("nan")
    i = int(np.searchsorted(c, c[-1] / 2))
    return float((_HIST_EDGES[i] + _HIST_EDGES[i + 1]) / 2)


class PairWriter:
    """Writes a pair store frame by frame into OUT.partial and renames it to OUT once finished, so
    the store appears only whole. Re-opened with the same settings, it resumes: frames already
    written (the `done` array) are skipped. With `alignment`, it also keeps per frame the pose
    before refinement and alignment figures."""

    ALIGN = {
        "pose_estimate": ((4, 4), "float64"),  # the pose before refinement (given or tracked)
        "abs_diff_mm_before": ((), "float32"),  # median |real - clean| at pose_estimate
        "abs_diff_mm": ((), "float32"),  # the same at pose (the stored clean's)
        "refine_inliers": ((), "float32"),  # fraction of the frame's points matched by ICP
        "refine_rmse_mm": ((), "float32"),  # their point-to-plane RMSE
    }

    def __init__(self, out, ids: np.ndarray, H: int, W: int, settings: dict, alignment: bool = False):
        self.out = Path(out)
        if self.out.exists():
            raise ValueError(f"{self.out}: exists; choose a new --out")
        self.tmp = self.out.with_name(self.out.name + ".partial")
        n = len(ids)
        if self.tmp.exists():
            self.root = zarr.open_group(self.tmp, mode="r+")
            if self.root.attrs.get("settings") != settings:
                raise ValueError(
                    f"{self.tmp}: an unfinished run with other settings; delete it or repeat that run"
                )
            return
        skeleton = self.tmp.with_name(self.tmp.name + ".new")  # made whole, then renamed: a kill
        shutil.rmtree(skeleton, ignore_errors=True)  # never leaves a .partial without its settings
        root = zarr.open_group(skeleton, mode="w")
        arr = lambda name, shape, dtype, chunks: root.create_array(  # noqa: E731
            name, shape=shape, chunks=chunks, dtype=dtype, compressors=_CODEC
        )
        for name, dtype in (
            ("clean", "float32"),
            ("real", "float32"),
            ("clean_valid", "bool"),
            ("real_valid", "bool"),
        ):
            arr(name, (n, H, W), dtype, (1, H, W))
        root.create_array("frame_id", data=np.asarray(ids, np.int64), chunks=(n,))
        arr("pose", (n, 4, 4), "float64", (1, 4, 4))
        if alignment:
            for name, (shape, dtype) in self.ALIGN.items():
                arr(name, (n, *shape), dtype, (1, *shape))
        root.create_array("done", data=np.zeros(n, bool), chunks=(1,))
        root.attrs["settings"] = settings
        os.replace(skeleton, self.tmp)
        self.root = zarr.open_group(self.tmp, mode="r+")

    def done(self, i: int) -> bool:
        return bool(self.root["done"][i])

    def write(self, i: int, clean: np.ndarray, real: np.ndarray, pose: np.ndarray, **align) -> None:
        g = self.root
        g["clean"][i], g["real"][i] = clean, real
        g["clean_valid"][i], g["real_valid"][i] = clean > 0, real > 0
        g["pose"][i] = pose
        for k, v in align.items():
            g[k][i] = v
        g["done"][i] = True  # last: a frame counts only once all of it is written

    def finish(self, meta: dict) -> dict:
        """Per-frame and pooled median |real - clean|, the metadata; then the rename."""
        g = self.root
        hist = np.zeros(len(_HIST_EDGES) - 1, np.int64)  # pooled |real - clean| over all frames
        per_frame = []
        for i in range(g["clean"].shape[0]):
            c, r = g["clean"][i], g["real"][i]
            both = (c > 0) & (r > 0)
            d = np.abs(r[both] - c[both])
            per_frame.append(float(np.median(d)) if d.size else float("nan"))
            hist += np.histogram(d, _HIST_EDGES)[0]
        del g["done"]
        settings = dict(g.attrs)["settings"]
        g.attrs.clear()
        g.attrs[PAIRS_SCHEMA] = {
            **meta,
            "schema": PAIRS_SCHEMA,
            "schema_version": PAIRS_VERSION,
            "median_abs_diff_m_per_frame": per_frame,
            "median_abs_diff_m": pooled_median(hist),
            **({"settings": settings} if "pose_estimate" in g else {}),
        }
        os.replace(self.tmp, self.out)
        return {"median_abs_diff_mm": pooled_median(hist) * 1000, "per_frame_m": per_frame}


def make_pairs(
    frames_dir,
    intrinsics,
    mesh,
    out,
    depth_scale=0.001,
    sensor="kinect-v1",
    source=None,
    val_from=600,
    refine=False,
    progress=True,
) -> dict:
    """Render the twin at every frame and write the pair store `out`; returns a summary. With
    `refine`, each frame's pose is first refined against the twin (ICP, capture/icp.py)."""
    from realdiff.capture.icp import one_thread, refine_pose

    frames = list_frames(frames_dir)
    K = read_intrinsics(intrinsics)
    first = read_depth_png(frames[0].depth_path, depth_scale)
    H, W = first.shape
    ids = np.array([f.frame_id for f in frames], np.int64)
    settings = {"frames": str(Path(frames_dir).resolve()), "depth_scale": depth_scale, "refine": refine}
    writer = PairWriter(out, ids, H, W, settings, alignment=refine)
    with TwinRenderer(mesh, K, W, H) as twin, one_thread():
        for i, f in enumerate(tqdm(frames, desc="pair", unit="frame", disable=not progress)):
            if writer.done(i):
                continue
            r = read_depth_png(f.depth_path, depth_scale) if i else first
            if r.shape != (H, W):
                raise ValueError(f"{f.depth_path.name}: size {r.shape} differs from {(H, W)}")
            if not refine:
                writer.write(i, twin.render(f.pose), r, f.pose)
                continue
            fit = refine_pose(twin.render, r, K, f.pose)
            writer.write(
                i,
                fit.clean,
                r,
                fit.pose,
                pose_estimate=f.pose,
                abs_diff_mm_before=fit.before_mm,
                abs_diff_mm=fit.after_mm,
                refine_inliers=fit.inliers,
                refine_rmse_mm=fit.rmse_mm,
            )
    split = {
        "train": [int(i) for i in np.nonzero(ids < val_from)[0]],
        "val": [int(i) for i in np.nonzero(ids >= val_from)[0]],
    }
    meta = {
        "source": source or str(Path(frames_dir).resolve()),
        "sensor": sensor,
        "K": K.tolist(),
        "width": W,
        "height": H,
        "depth_scale_m": depth_scale,
        "mesh": str(Path(mesh).name),
        "split": {"val_from_frame": val_from, **split},
    }
    if refine:
        meta["refined"] = True
    s = writer.finish(meta)
    return {
        "frames": len(frames),
        "median_abs_diff_mm": s["median_abs_diff_mm"],
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
