"""How good are `realdiff capture` and `realdiff pair --refine` against ground truth?

    python bench/capture_accuracy.py [--data ../shared/data] [--out out/capture_bench] [--only NAME,...]
        [--kinect-intrinsics K.txt]

--kinect-intrinsics: the camera matrix the 7-Scenes capture uses instead of the data's nominal one
(585 px), to see how the trajectory and the pairs follow the focal length (docs/capture.md, "The
focal length"); its store is named after the focal length.

Prints, for each run (one store each, kept in --out, reused when present):
- 7-Scenes from the depth alone (`realdiff capture`): the trajectory error (ATE RMSE after a rigid
  alignment) against the given poses, and the median |real - clean| of its pairs, beside the pairs
  rendered at the given poses from the given mesh (`realdiff pair`);
  and how well each trajectory explains the depth itself: frames a gap apart are reprojected into
  each other at the captured poses (tracked, then refined globally) and at the given ones (median
  |depth - reprojected depth|, mean over pairs), a check that needs no ground truth;
- 7-Scenes with `realdiff pair --refine`: the spread of the per-frame shifts fit_shifts finds on the
  train split, before and after refinement, and on the pairs of `realdiff capture --given-poses`
  (the given poses refined globally and per frame against a twin fused at them) and of the capture
  from the depth alone (a twin fused at the tracked poses); with both `kinect` and `kinect-refine`,
  how far the given poses refined globally lie from the capture's trajectory, and their reprojection;
- SUN3D, both fragments: ATE against the given poses, and the median |real - clean| of the pairs of
  a twin fused at our poses versus one fused at the given poses (`--given-poses`).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from realdiff.capture.config import CaptureConfig
from realdiff.capture.geometry import ate_rmse, backproject, scaled_intrinsics, transform
from realdiff.capture.pipeline import capture
from realdiff.frames import list_frames, read_depth_png, read_intrinsics
from realdiff.pairs import load_split, make_pairs
from realdiff.reald2iff.stages import fit_shifts

ROOT = Path(__file__).resolve().parents[1]


def shift_spread(pairs: Path) -> dict:
    clean, real, _, _ = load_split(pairs, "train")
    s = fit_shifts(torch.from_numpy(clean), torch.from_numpy(real)).float()
    return {"mean": s.mean(0).tolist(), "std": s.std(0).tolist(), "frames": len(s)}


def reprojection_mm(depth_i: np.ndarray, depth_j: np.ndarray, K: np.ndarray, pose_i, pose_j) -> float:
    """Median |depth_i - depth_j reprojected into camera i| (mm) over every second pixel of frame j
    that lands on a reading of frame i: how well two poses agree with the depth itself."""
    p = backproject(torch.from_numpy(depth_j[::2, ::2]), scaled_intrinsics(K, 2)).reshape(-1, 3)
    q = transform(np.linalg.inv(pose_i) @ pose_j, p[p[:, 2] > 0]).numpy()
    q = q[q[:, 2] > 0.1]
    ui = np.round(q[:, 0] / q[:, 2] * K[0, 0] + K[0, 2]).astype(int)
    vi = np.round(q[:, 1] / q[:, 2] * K[1, 1] + K[1, 2]).astype(int)
    H, W = depth_i.shape
    ok = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    zi = depth_i[vi[ok], ui[ok]]
    seen = zi > 0
    return float(np.median(np.abs(zi[seen] - q[ok, 2][seen])) * 1000) if seen.sum() > 1000 else float("nan")


def consistency(frames: list, trajectories: dict, gaps=(1, 30, 100, 200, 300, 400)) -> dict:
    """For each gap, the median over frame pairs (i, i + gap), i every 25 frames, of reprojection_mm
    under each trajectory (name -> (camera matrix, (N, 4, 4) poses)); pairs that share too little
    view under any of them are left out of all."""
    read = functools.cache(lambda i: read_depth_png(frames[i].depth_path))
    res = {}
    for gap in gaps:
        per = {name: [] for name in trajectories}
        for i in range(0, len(frames) - gap, 25):
            r = {
                n: reprojection_mm(read(i), read(i + gap), K, T[i], T[i + gap])
                for n, (K, T) in trajectories.items()
            }
            if all(np.isfinite(list(r.values()))):
                for n, x in r.items():
                    per[n].append(x)
        pairs = len(next(iter(per.values())))
        res[str(gap)] = {n: float(np.median(x)) for n, x in per.items()} | {"pairs": pairs}
    return res


def median_mm(pairs: Path) -> float:
    return zarr.open_group(pairs, mode="r").attrs["realdiff_pairs"]["median_abs_diff_m"] * 1000


def run(name: str, make, out: Path, results: dict) -> Path:
    store = out / f"{name}.zarr"
    t = time.time()
    if not store.exists():
        make(store)
        results.setdefault("seconds", {})[name] = time.time() - t
        print(f"{name}: made in {time.time() - t:.0f} s", flush=True)
    return store


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--out", default=str(ROOT / "out/capture_bench"))
    ap.add_argument("--only", default=None, help="comma-separated: kinect, kinect-refine, sun3d")
    ap.add_argument("--kinect-intrinsics", default=None, help="camera matrix of the 7-Scenes capture")
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else {"kinect", "kinect-refine", "sun3d"}
    results: dict = {}
    k7 = data / "kinect-7scenes"
    kw = dict(progress=True)
    if "kinect" in only or "kinect-refine" in only:
        given = run(
            "kinect-given",
            lambda s: make_pairs(k7 / "frames", k7 / "camera-intrinsics.txt", k7 / "scene_mesh.ply", s, **kw),
            out,
            results,
        )
        results["kinect-given"] = {"median_abs_diff_mm": median_mm(given)}
    if "kinect" in only:
        k_path = Path(args.kinect_intrinsics or k7 / "camera-intrinsics.txt")
        K_given, K_ours = read_intrinsics(k7 / "camera-intrinsics.txt"), read_intrinsics(k_path)
        name = "kinect-capture" + ("" if np.array_equal(K_ours, K_given) else f"-fx{K_ours[0, 0]:.1f}")
        cap = run(
            name,
            lambda s: capture(k7 / "frames", k_path, s, sensor="kinect-v1", **kw),
            out,
            results,
        )
        meta = zarr.open_group(cap, mode="r").attrs["realdiff_pairs"]
        results["kinect-capture"] = {
            "fx": K_ours[0, 0],
            "ate_m": meta["ate_m"],
            "median_abs_diff_mm": median_mm(cap),
            "shifts": shift_spread(cap),
        }
        ours = zarr.open_group(cap, mode="r")["pose_estimate"][:]  # before the per-frame refinement
        frames = list_frames(k7 / "frames")
        given_poses = np.stack([f.pose for f in frames])
        results["kinect-capture"]["reprojection_mm"] = consistency(
            frames, {"captured": (K_ours, ours), "given": (K_given, given_poses)}
        )
    if "kinect-refine" in only:
        ref = run(
            "kinect-refined",
            lambda s: make_pairs(
                k7 / "frames", k7 / "camera-intrinsics.txt", k7 / "scene_mesh.ply", s, refine=True, **kw
            ),
            out,
            results,
        )
        results["kinect-refined"] = {"median_abs_diff_mm": median_mm(ref), "shifts": shift_spread(ref)}
        results["kinect-given"]["shifts"] = shift_spread(given)
        # The given poses refined globally and per frame against a twin fused at them.
        cfg = CaptureConfig(given_poses=True)
        gref = run(
            "kinect-given-refined",
            lambda s: capture(k7 / "frames", k7 / "camera-intrinsics.txt", s, cfg=cfg, **kw),
            out,
            results,
        )
        meta = zarr.open_group(gref, mode="r").attrs["realdiff_pairs"]
        results["kinect-given-refined"] = {
            "moved_from_given_m": meta["moved_from_given_m"],
            "median_abs_diff_mm": median_mm(gref),
            "shifts": shift_spread(gref),
        }
    if "sun3d" in only:
        sun = data / "sun3d-xtion"
        for frag in ("fragment-1", "fragment-2"):
            for mode in ("tracked", "given"):
                # "given": the twin fused at the given poses as they are (refined per frame only)
                cfg = (
                    CaptureConfig(given_poses=True, keyframe_every=0) if mode == "given" else CaptureConfig()
                )
                store = run(
                    f"sun3d-{frag}-{mode}",
                    lambda s, frag=frag, cfg=cfg: capture(
                        sun / frag, sun / "camera-intrinsics.txt", s, sensor="xtion", cfg=cfg, **kw
                    ),
                    out,
                    results,
                )
                meta = zarr.open_group(store, mode="r").attrs["realdiff_pairs"]
                results[f"sun3d-{frag}-{mode}"] = {
                    "ate_m": meta.get("ate_m"),
                    "median_abs_diff_mm": median_mm(store),
                }
    if {"kinect", "kinect-refine"} <= only and "kinect-capture" in results:
        # Two trajectories refined alike, one from the given poses, one from the depth alone.
        g = zarr.open_group(out / "kinect-given-refined.zarr", mode="r")["pose_estimate"][:]
        results["kinect-given-refined"]["ate_to_capture_m"] = ate_rmse(g, ours)[0]
        results["kinect-given-refined"]["reprojection_mm"] = consistency(
            frames, {"given-refined": (K_given, g)}
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
