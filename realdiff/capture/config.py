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
    given_poses: bool = False  # fuse and render at the frames' own .pose.txt instead of tracking
    val_fraction: float = 0.2  # the last frames of the sequence validate
    min_frames: int = 10

    def __post_init__(self):
        if not (0 < self.voxel <= 0.05 and 0 < self.track_voxel <= 0.1 and self.max_depth > 0.5):
            raise ValueError("capture needs 0 < voxel <= 0.05, 0 < track_voxel <= 0.1, max_depth > 0.5")
        if not (0 < self.val_fraction < 1) or self.fuse_frames < 1 or self.min_frames < 2:
            raise ValueError("capture needs 0 < val_fraction < 1, fuse_frames >= 1, min_frames >= 2")
        if self.keyframe_every < 0:
            raise ValueError("capture needs keyframe_every >= 0 (0: no global refinement)")


@dataclass(frozen=True)
class FocalConfig:
    """`realdiff focal`: the sweep of focal lengths around the nominal one."""

    span: float = 0.04  # candidates from f (1 - span) to f (1 + span)
    steps: int = 5  # candidates in that range, evenly spaced
    first_frames: int = 0  # only the first this many frames of the sequence (0: all)
    fuse_frames: int = 100  # frames fused into each candidate's twin
    score_frames: int = 80  # frames whose alignment to the twin is scored, evenly spread

    def __post_init__(self):
        if not (0 < self.span <= 0.2 and self.steps >= 3 and self.first_frames >= 0):
            raise ValueError("focal needs 0 < span <= 0.2, steps >= 3, first_frames >= 0")
        if self.fuse_frames < 1 or self.score_frames < 1:
            raise ValueError("focal needs fuse_frames >= 1 and score_frames >= 1")
