"""Settings of `realdiff capture`, stated once: the CLI reads its defaults and help from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaptureConfig:
    max_depth: float = 4.0  # readings beyond this (m) are neither tracked nor fused
    track_voxel: float = 0.025  # the tracking model's voxel (m)
    voxel: float = 0.01  # the twin's voxel (m)
    fuse_frames: int = 300  # frames fused into the twin, evenly spread (all if fewer)
    keyframe_every: int = 10  # the global refinement's keyframes, every this many frames (0: none)
    refine: bool = True  # register each frame to the twin before rendering its clean depth
    given_poses: bool = False  # start from the frames' own .pose.txt instead of tracking
    val_fraction: float = 0.2  # the last frames of the sequence validate
    min_frames: int = 10

    def __post_init__(self):
        if not (0 < self.voxel <= 0.05 and 0 < self.track_voxel <= 0.1 and self.max_depth > 0.5):
            raise ValueError("capture needs 0 < voxel <= 0.05, 0 < track_voxel <= 0.1, max_depth > 0.5")
        if not (0 < self.val_fraction < 1) or self.fuse_frames < 1 or self.min_frames < 2:
            raise ValueError("capture needs 0 < val_fraction < 1, fuse_frames >= 1, min_frames >= 2")
        if self.keyframe_every < 0:
            raise ValueError("capture needs keyframe_every >= 0 (0: no global refinement)")
