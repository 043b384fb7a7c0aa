"""`realdiff capture`: a pair store from a hand-held capture of a static scene, with no poses and no
mesh. Five stages, each resumable after a kill:

1. track: every frame's camera pose by frame-to-model ICP against a growing TSDF (track.py); the
   poses so far are saved every 10 frames to OUT.capture/track.pt, and a resumed run re-fuses them
   (the same volume, bit for bit) before going on;
   (with `given_poses`, the frames' own .pose.txt instead);
1b. refine globally: keyframes every `keyframe_every` frames registered to each other all at once,
   the frames between them following (global_refine.py); saved to OUT.capture/global.pt;
2. fuse: a finer TSDF of up to `fuse_frames` frames at their poses, meshed by marching cubes and
   saved beside the store as OUT-stem.twin.ply;
3. pair: each frame's clean depth rendered from the twin with the renderer of `realdiff pair`,
   after refining the frame's registration against the twin (ICP, icp.refine_pose), written frame
   by frame (pairs.PairWriter);
4. report: OUT-stem.report.png (trajectory from above, alignment per frame, examples).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from plumbing.training import atomic_save
from realdiff.capture.config import CaptureConfig
from realdiff.capture.geometry import ate_rmse
from realdiff.capture.global_refine import GlobalRefineConfig, refine_trajectory
from realdiff.capture.icp import median_abs_diff_mm, one_thread, refine_pose
from realdiff.capture.track import TrackConfig, Tracker, TrackingLost
from realdiff.capture.tsdf import TSDFVolume
from realdiff.frames import default_depth_scale, list_frames, read_depth_png, read_intrinsics
from realdiff.pairs import PairWriter
from simgen.render import TwinRenderer

SAVE_EVERY = 10  # frames between saves of the tracked poses (cheap: poses only)


def side_paths(out: Path) -> dict[str, Path]:
    """The files a capture writes beside the pair store OUT."""
    stem = out.with_suffix("") if out.suffix else out
    return {
        "mesh": stem.with_name(stem.name + ".twin.ply"),
        "report": stem.with_name(stem.name + ".report.png"),
        "work": out.with_name(out.name + ".capture"),
    }


def track_sequence(frames, K, H, W, depth_scale, cfg: CaptureConfig, work: Path, settings: dict, progress):
    """Stage 1: (N, 4, 4) poses and per-frame ICP inlier fractions, resuming from work/track.pt."""
    ckpt = work / "track.pt"
    poses, inliers = [], []
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        if saved["settings"] != settings:
            raise ValueError(
                f"{work}: an unfinished capture with other settings; delete it or repeat that run"
            )
        poses, inliers = list(saved["poses"]), list(saved["inliers"])
        if saved.get("finished"):
            return np.stack(poses), np.array(inliers)
    tracker = Tracker(K, H, W, TrackConfig(voxel=cfg.track_voxel, max_depth=cfg.max_depth))
    for f, pose in zip(frames, poses):  # a resumed run: the same model, fused again
        tracker.replay(read_depth_png(f.depth_path, depth_scale), pose)
    bar = tqdm(total=len(frames), initial=len(poses), desc="track", unit="frame", disable=not progress)
    for i in range(len(poses), len(frames)):
        depth = read_depth_png(frames[i].depth_path, depth_scale)
        if depth.shape != (H, W):
            raise ValueError(f"{frames[i].depth_path.name}: size {depth.shape} differs from {(H, W)}")
        try:
            pose, fit = tracker.track(depth, frames[i].depth_path.name)
        except TrackingLost as e:
            raise TrackingLost(f"{e}; the sequence cannot be tracked, no store written") from None
        poses.append(pose)
        inliers.append(1.0 if fit is None else fit.inliers)
        bar.update()
        if len(poses) % SAVE_EVERY == 0:
            atomic_save({"settings": settings, "poses": poses, "inliers": inliers}, ckpt)
    bar.close()
    atomic_save({"settings": settings, "poses": poses, "inliers": inliers, "finished": True}, ckpt)
    return np.stack(poses), np.array(inliers)


def refine_globally(frames, K, poses, depth_scale, cfg: CaptureConfig, work: Path, settings: dict):
    """Stage 1b: the tracked poses refined by global_refine.refine_trajectory (kept in
    work/global.pt, which a resumed run reads back). Returns (poses, keyframes, keyframe pairs)."""
    ckpt = work / "global.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        if saved["settings"] == settings:
            return saved["poses"], saved["keyframes"], saved["pairs"]
    gcfg = GlobalRefineConfig(every=cfg.keyframe_every, max_depth=cfg.max_depth)
    out = refine_trajectory(lambda i: read_depth_png(frames[i].depth_path, depth_scale), poses, K, gcfg)
    atomic_save({"settings": settings, "poses": out[0], "keyframes": out[1], "pairs": out[2]}, ckpt)
    return out


def fuse_twin(frames, K, poses, depth_scale, cfg: CaptureConfig, mesh_path: Path, progress) -> int:
    """Stage 2: the twin mesh from up to cfg.fuse_frames frames; returns its face count."""
    import trimesh

    pick = np.unique(np.linspace(0, len(frames) - 1, min(cfg.fuse_frames, len(frames))).round().astype(int))
    depths = {}
    pts = []
    for i in pick:  # the volume's bounds: where the fused frames' readings lie
        d = read_depth_png(frames[i].depth_path, depth_scale)
        d = np.where(d <= cfg.max_depth, d, 0)
        v, u = np.nonzero(d[::8, ::8])
        z = d[::8, ::8][v, u]
        cam = np.stack([(u * 8 - K[0, 2]) / K[0, 0] * z, (v * 8 - K[1, 2]) / K[1, 1] * z, z], 1)
        pts.append(cam @ poses[i][:3, :3].T + poses[i][:3, 3])
        depths[i] = d
    pts = np.concatenate(pts)
    lo, hi = np.percentile(pts, 0.1, 0) - 0.1, np.percentile(pts, 99.9, 0) + 0.1
    volume = TSDFVolume(lo, hi - lo, cfg.voxel)
    for i in tqdm(pick, desc="fuse", unit="frame", disable=not progress):
        volume.integrate(depths.pop(i), K, poses[i], cfg.max_depth)
    verts, faces = volume.mesh(min_weight=2.0)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    tmp = mesh_path.with_name(mesh_path.name + ".tmp.ply")
    mesh.export(tmp)
    tmp.replace(mesh_path)
    return len(faces)


def capture(
    frames_dir,
    intrinsics,
    out,
    depth_scale: float | None = None,
    sensor: str = "unknown",
    source: str | None = None,
    cfg: CaptureConfig | None = None,
    progress: bool = True,
) -> dict:
    """Track, fuse, pair and report (see the module docstring); returns a summary."""
    t0 = time.time()
    cfg = cfg or CaptureConfig()
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out}: exists; choose a new --out")
    frames = list_frames(frames_dir, poses="optional")
    if len(frames) < cfg.min_frames:
        raise ValueError(f"{frames_dir}: {len(frames)} frames; a capture needs at least {cfg.min_frames}")
    K = read_intrinsics(intrinsics)
    scale = depth_scale or default_depth_scale(frames_dir)
    H, W = read_depth_png(frames[0].depth_path, scale).shape
    paths = side_paths(out)
    settings = {
        "frames": str(Path(frames_dir).resolve()),
        "K": K.tolist(),
        "depth_scale": scale,
        **asdict(cfg),
    }
    paths["work"].mkdir(parents=True, exist_ok=True)
    timings = {}
    with one_thread():
        t = time.time()
        if cfg.given_poses:
            if any(f.pose is None for f in frames):
                raise ValueError(
                    f"{frames_dir}: --given-poses needs a frame-NNNNNN.pose.txt beside every frame"
                )
            poses, track_inliers = np.stack([f.pose for f in frames]), np.full(len(frames), np.nan)
        else:
            poses, track_inliers = track_sequence(
                frames, K, H, W, scale, cfg, paths["work"], settings, progress
            )
        timings["track_s"] = time.time() - t
        tracked, keyframes = poses, None
        if cfg.keyframe_every:
            t = time.time()
            poses, n_keys, n_pairs = refine_globally(frames, K, poses, scale, cfg, paths["work"], settings)
            keyframes = {"keyframes": n_keys, "pairs": n_pairs}
            timings["global_s"] = time.time() - t
        t = time.time()
        if not paths["mesh"].exists():
            fuse_twin(frames, K, poses, scale, cfg, paths["mesh"], progress)
        timings["fuse_s"] = time.time() - t
        t = time.time()
        ids = np.array([f.frame_id for f in frames], np.int64)
        writer = PairWriter(out, ids, H, W, settings, alignment=True)
        with TwinRenderer(paths["mesh"], K, W, H) as twin:
            for i, f in enumerate(tqdm(frames, desc="pair", unit="frame", disable=not progress)):
                if writer.done(i):
                    continue
                real = read_depth_png(f.depth_path, scale)
                if cfg.refine:
                    r = refine_pose(twin.render, real, K, poses[i])
                    fields = dict(
                        pose_estimate=poses[i],
                        abs_diff_mm_before=r.before_mm,
                        abs_diff_mm=r.after_mm,
                        refine_inliers=r.inliers,
                        refine_rmse_mm=r.rmse_mm,
                    )
                    writer.write(i, r.clean, real, r.pose, **fields)
                else:
                    clean = twin.render(poses[i])
                    d = median_abs_diff_mm(real, clean)
                    nan = float("nan")
                    fields = dict(abs_diff_mm_before=d, abs_diff_mm=d, refine_inliers=nan, refine_rmse_mm=nan)
                    writer.write(i, clean, real, poses[i], pose_estimate=poses[i], **fields)
        timings["pair_s"] = time.time() - t
    n_val = max(1, int(round(cfg.val_fraction * len(frames))))
    val_from = int(ids[len(frames) - n_val])
    g = writer.root
    final_poses = g["pose"][:]
    meta = {
        "source": source or str(Path(frames_dir).resolve()),
        "sensor": sensor,
        "K": K.tolist(),
        "width": W,
        "height": H,
        "depth_scale_m": scale,
        "mesh": paths["mesh"].name,
        "captured": True,
        "refined": cfg.refine,
        "split": {
            "val_from_frame": val_from,
            "train": list(range(len(frames) - n_val)),
            "val": list(range(len(frames) - n_val, len(frames))),
        },
        "track_inliers": [float(x) for x in track_inliers],
        "global_refinement": keyframes,
        "timings_s": timings,
    }
    given = [f.pose for f in frames]
    given = np.stack(given) if all(p is not None for p in given) else None
    if given is not None:  # how far ours are from the given poses; with given_poses, how far they moved
        moved = {
            "global": ate_rmse(poses, given)[0] if keyframes else None,
            "refined": ate_rmse(final_poses, given)[0],
        }
        if cfg.given_poses:
            meta["moved_from_given_m"] = moved
        else:
            meta["ate_m"] = {"tracked": ate_rmse(tracked, given)[0], **moved}
    s = writer.finish(meta)
    from realdiff.capture.report import write_report

    write_report(out, paths["report"], given)
    shutil.rmtree(paths["work"], ignore_errors=True)
    return {
        "frames": len(frames),
        "train": len(frames) - n_val,
        "val": n_val,
        "median_abs_diff_mm": s["median_abs_diff_mm"],
        "ate_m": meta.get("ate_m"),
        "moved_from_given_m": meta.get("moved_from_given_m"),
        "mesh": str(paths["mesh"]),
        "report": str(paths["report"]),
        "seconds": time.time() - t0,
        "timings_s": timings,
    }
