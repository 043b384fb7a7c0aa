"""`realdiff focal`: a depth camera's focal length estimated from a capture of a static scene.

A wrong focal length bends each view's points by a different amount, so no set of poses makes them
agree: the twin fused from the frames explains them less well. For each candidate focal length
(fx and fy scaled together, the principal point kept), the capture's first stages run as
`realdiff capture` runs them (tracking, global refinement, a twin fused from `fuse_frames`
frames), then `score_frames` frames are rendered from that twin at their poses and scored by the
median |real - clean| over the pixels valid in both. The twin's voxel is scaled with the candidate,
so that every twin is equally fine in pixels (with one voxel for all, shorter focal lengths score
better for that alone). The estimate is the minimum of a parabola through the best candidate and
its two neighbours. Each candidate's score is saved as soon as it is known (OUT-stem.focal.json),
so a killed sweep resumes where it stopped. On real depth it tells a few per cent apart, not one
(docs/capture.md, "The focal length").
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from realdiff.capture.config import CaptureConfig, FocalConfig
from realdiff.capture.icp import median_abs_diff_mm, one_thread
from realdiff.capture.pipeline import fuse_twin, refine_globally, track_sequence
from realdiff.frames import default_depth_scale, list_frames, read_depth_png, read_intrinsics
from simgen.render import TwinRenderer


def scaled_focal(K: np.ndarray, scale: float) -> np.ndarray:
    K = K.copy()
    K[0, 0] *= scale
    K[1, 1] *= scale
    return K


def parabola_minimum(x: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
    """The minimum of the parabola through the lowest of the points (x sorted) and its two
    neighbours, and whether it lies inside the sweep (False: the lowest point is at an end)."""
    i = int(np.argmin(y))
    if i in (0, len(x) - 1):
        return float(x[i]), False
    a, b, _ = np.polyfit(x[i - 1 : i + 2], y[i - 1 : i + 2], 2)
    if a <= 0:
        return float(x[i]), True
    return float(np.clip(-b / (2 * a), x[i - 1], x[i + 1])), True


def alignment_mm(
    frames, K, depth_scale, cfg: CaptureConfig, fcfg: FocalConfig, work: Path, progress
) -> float:
    """Mean over the scored frames of the median |real - clean| (mm), the twin fused at K."""
    H, W = read_depth_png(frames[0].depth_path, depth_scale).shape
    settings = {"K": K.tolist(), "depth_scale": depth_scale, "frames": len(frames), **asdict(cfg)}
    poses, _ = track_sequence(frames, K, H, W, depth_scale, cfg, work, settings, progress)
    if cfg.keyframe_every:
        poses = refine_globally(frames, K, poses, depth_scale, cfg, work, settings)[0]
    mesh = work / "twin.ply"
    fuse_twin(frames, K, poses, depth_scale, cfg, mesh, progress=False)
    pick = np.unique(np.linspace(0, len(frames) - 1, min(fcfg.score_frames, len(frames))).round().astype(int))
    with TwinRenderer(mesh, K, W, H) as twin:
        diffs = [
            median_abs_diff_mm(read_depth_png(frames[i].depth_path, depth_scale), twin.render(poses[i]))
            for i in pick
        ]
    return float(np.nanmean(diffs))


def fit_focal(
    frames_dir,
    intrinsics,
    out,
    depth_scale: float | None = None,
    cfg: FocalConfig | None = None,
    capture_cfg: CaptureConfig | None = None,
    progress: bool = True,
) -> dict:
    """Sweep the focal length; write the fitted camera matrix to OUT (text, as read by
    --intrinsics), the sweep to OUT-stem.focal.json and a plot to OUT-stem.focal.png."""
    cfg = cfg or FocalConfig()
    out = Path(out)
    frames = list_frames(frames_dir, poses="optional")
    if cfg.first_frames:
        frames = frames[: cfg.first_frames]
    K = read_intrinsics(intrinsics)
    scale = depth_scale or default_depth_scale(frames_dir)
    ccfg = capture_cfg or CaptureConfig()
    ccfg = CaptureConfig(**{**asdict(ccfg), "fuse_frames": cfg.fuse_frames, "refine": False})
    if len(frames) < ccfg.min_frames:
        raise ValueError(
            f"{frames_dir}: {len(frames)} frames; a focal sweep needs at least {ccfg.min_frames}"
        )
    stem = out.with_suffix("") if out.suffix else out
    log, work = stem.with_name(stem.name + ".focal.json"), stem.with_name(stem.name + ".focal.work")
    key = {"frames": str(Path(frames_dir).resolve()), "K": K.tolist(), "depth_scale": scale}
    key |= {"sweep": asdict(cfg), "capture": asdict(ccfg)}
    done = json.loads(log.read_text()) if log.exists() else {}
    if done.get("key") != key:
        done = {"key": key, "scores": {}}
    scales = np.linspace(1 - cfg.span, 1 + cfg.span, cfg.steps)
    with one_thread():
        for n, s in enumerate(scales):
            name = f"{K[0, 0] * s:.2f}"
            if name in done["scores"]:
                continue
            if progress:
                print(f"focal {n + 1}/{len(scales)}: fx = {name} px", flush=True)
            cwork = work / name
            cwork.mkdir(parents=True, exist_ok=True)
            vcfg = CaptureConfig(**{**asdict(ccfg), "voxel": ccfg.voxel / s})
            done["scores"][name] = alignment_mm(frames, scaled_focal(K, s), scale, vcfg, cfg, cwork, progress)
            tmp = log.with_name(log.name + ".tmp")
            tmp.write_text(json.dumps(done, indent=1))
            tmp.replace(log)
            shutil.rmtree(cwork, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    fx = np.array(sorted(float(k) for k in done["scores"]))
    mm = np.array([done["scores"][f"{f:.2f}"] for f in fx])
    best, inside = parabola_minimum(fx, mm)
    fitted = scaled_focal(K, best / K[0, 0])
    np.savetxt(out, fitted, fmt="%.6f")
    plot_sweep(fx, mm, best, K[0, 0], stem.with_name(stem.name + ".focal.png"))
    return {
        "fx": float(fitted[0, 0]),
        "fy": float(fitted[1, 1]),
        "nominal_fx": float(K[0, 0]),
        "inside": inside,
        "sweep": dict(zip(fx.tolist(), mm.tolist())),
        "frames": len(frames),
    }


def plot_sweep(fx: np.ndarray, mm: np.ndarray, best: float, nominal: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(fx, mm, "o-", label="candidates")
    ax.axvline(nominal, color="gray", ls=":", label=f"nominal {nominal:.1f}")
    ax.axvline(best, color="C3", ls="--", label=f"fitted {best:.1f}")
    ax.set_xlabel("focal length fx = fy (px)")
    ax.set_ylabel("mean median |real - twin| (mm)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
