"""Camera tracking without poses: each frame is registered to the raycast of a TSDF model fused from
the frames before it (frame-to-model ICP, coarse to fine), then fused into it. Tracking against the
model rather than the previous frame keeps drift small; the first frame's camera is the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realdiff.capture.geometry import relative_motion, scaled_intrinsics
from realdiff.capture.icp import Fit, RefView, Source, icp
from realdiff.capture.tsdf import TSDFVolume


class TrackingLost(ValueError):
    """A frame could not be registered to the model."""


@dataclass(frozen=True)
class TrackConfig:
    voxel: float = 0.025  # tracking model's voxel (m)
    extent: float = 8.0  # side of the tracking model's cube (m), centred on the first camera
    max_depth: float = 4.0  # readings beyond this are neither tracked nor fused (m)
    near: float = 0.2  # raycast from here (m)
    step: int = 2  # tracking resolution: every step-th pixel of the frame
    levels: tuple[int, ...] = (4, 2, 1)  # coarse to fine: subsampling of the tracking resolution
    iters: tuple[int, ...] = (10, 6, 4)
    max_dist: tuple[float, ...] = (0.15, 0.08, 0.04)  # association distance per level (m)
    min_inliers: float = 0.25  # fewer of a frame's points on the model: tracking is lost
    max_jump_m: float = 0.15  # a larger move between consecutive frames: tracking is lost
    max_jump_deg: float = 15.0

    def __post_init__(self):
        if not (len(self.levels) == len(self.iters) == len(self.max_dist)):
            raise ValueError("levels, iters and max_dist must have one entry per level")
        if self.voxel <= 0 or self.extent <= 0 or self.max_depth <= self.near or self.step < 1:
            raise ValueError("tracking needs voxel, extent > 0, max_depth > near and step >= 1")


class Tracker:
    """Feed frames in order with `track(depth)`; returns each frame's camera-to-world pose."""

    def __init__(self, K: np.ndarray, H: int, W: int, cfg: TrackConfig | None = None) -> None:
        cfg = cfg or TrackConfig()
        self.K, self.H, self.W, self.cfg = np.asarray(K, np.float64), H, W, cfg
        self.Ks = scaled_intrinsics(K, cfg.step)
        self.Hs, self.Ws = -(-H // cfg.step), -(-W // cfg.step)
        half = cfg.extent / 2
        self.volume = TSDFVolume([-half, -half, -half], cfg.extent, cfg.voxel)
        self.poses: list[np.ndarray] = []

    def _clip(self, depth: np.ndarray) -> np.ndarray:
        return np.where(depth <= self.cfg.max_depth, depth, 0).astype(np.float32)

    def track(self, depth: np.ndarray, frame: str = "") -> tuple[np.ndarray, Fit | None]:
        depth = self._clip(depth)
        if not self.poses:
            pose, fit = np.eye(4), None
        else:
            prev = self.poses[-1]
            guess = prev @ (np.linalg.inv(self.poses[-2]) @ prev) if len(self.poses) > 1 else prev
            model = self.volume.raycast(
                self.Ks, prev, self.Hs, self.Ws, self.cfg.near, self.cfg.max_depth, hint=self._last
            )
            ref = RefView.from_depth(model, self.Ks, prev)
            small = depth[:: self.cfg.step, :: self.cfg.step]
            fit = None
            for sub, iters, dist in zip(self.cfg.levels, self.cfg.iters, self.cfg.max_dist):
                src = Source.from_depth(small, self.Ks, step=sub)
                fit = icp(src, ref, guess, iters=iters, max_dist=dist)
                guess = fit.pose
            pose = fit.pose
            moved, turned = relative_motion(prev, pose)
            if fit.inliers < self.cfg.min_inliers:
                raise TrackingLost(
                    f"{frame}: tracking lost: {fit.inliers:.0%} of its points lie on the model "
                    f"(at least {self.cfg.min_inliers:.0%} needed)"
                )
            if moved > self.cfg.max_jump_m or turned > self.cfg.max_jump_deg:
                raise TrackingLost(
                    f"{frame}: tracking lost: the camera would have jumped {moved * 100:.0f} cm and "
                    f"{turned:.0f} degrees since the frame before"
                )
        self._fuse(depth, pose)
        return pose, fit

    def replay(self, depth: np.ndarray, pose: np.ndarray) -> None:
        """Fuse a frame at a known pose, as track() does after registering it (a resumed run
        replays the frames tracked before the kill, rebuilding the same model)."""
        self._fuse(self._clip(depth), pose)

    def _fuse(self, depth: np.ndarray, pose: np.ndarray) -> None:
        """Fuse an already clipped frame and remember it as the last."""
        self.volume.integrate(depth, self.K, pose, self.cfg.max_depth)
        self.poses.append(pose)
        self._last = depth[:: self.cfg.step, :: self.cfg.step]  # where the next raycast starts
