"""Named camera configurations: intrinsics (pinhole, OpenCV pixel convention) and poses.

Conventions used everywhere in simgen:
- ``K`` is the 3x3 OpenCV camera matrix; pixel (u, v) has its centre at integer coordinates,
  so a centred principal point is ``((W - 1) / 2, (H - 1) / 2)``.
- Extrinsics are 4x4 camera-to-world transforms with OpenCV camera axes (x right, y down,
  z forward). A MuJoCo camera looks down its -z axis with y up, so
  ``R_opencv = R_mujoco @ diag(1, -1, -1)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

MJ_TO_CV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class CameraConfig:
    """One camera: resolution, vertical field of view and pose.

    A fixed camera (``body=None``) is placed at ``pos`` in the world and looks at ``target``.
    A mounted camera is rigidly attached to ``body`` at ``pos`` with MuJoCo quaternion ``quat``
    (w, x, y, z; camera looks down its -z axis).
    """

    name: str
    fovy_deg: float
    pos: tuple[float, float, float]
    target: tuple[float, float, float] | None = None
    body: str | None = None
    quat: tuple[float, float, float, float] | None = None
    width: int = 128
    height: int = 128

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"camera name {self.name!r} must be lower-case letters, digits, _")
        if not 1.0 < self.fovy_deg < 179.0:
            raise ValueError(f"camera {self.name}: fovy_deg {self.fovy_deg} out of (1, 179)")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"camera {self.name}: resolution {self.width}x{self.height} too small")
        if (self.target is None) == (self.quat is None):
            raise ValueError(f"camera {self.name}: give exactly one of target or quat")

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix for this resolution (square pixels, centred principal point)."""
        fy = 0.5 * self.height / math.tan(math.radians(self.fovy_deg) / 2)
        return np.array([[fy, 0.0, (self.width - 1) / 2], [0.0, fy, (self.height - 1) / 2], [0.0, 0.0, 1.0]])

    def with_resolution(self, width: int, height: int) -> CameraConfig:
        """Same camera and vertical field of view at another resolution."""
        return replace(self, width=width, height=height)

    def mujoco_quat(self) -> np.ndarray:
        """Camera orientation for MuJoCo (w, x, y, z) in its parent frame."""
        if self.quat is not None:
            q = np.asarray(self.quat, dtype=float)
            return q / np.linalg.norm(q)
        return mat_to_quat(look_at(self.pos, self.target))


def look_at(pos, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Rotation (columns = camera x, y, z in world) of a MuJoCo camera at pos looking at target."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    x = np.cross(f, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight up or down: any right vector works
        x = np.cross(f, (1.0, 0.0, 0.0))
    x /= np.linalg.norm(x)
    z = -f
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def mat_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix to unit quaternion (w, x, y, z) with w >= 0."""
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=float).ravel())
    return q if q[0] >= 0 else -q


def extrinsics_cv(cam_xpos: np.ndarray, cam_xmat: np.ndarray) -> np.ndarray:
    """4x4 camera-to-world (OpenCV axes) from MuJoCo's data.cam_xpos / data.cam_xmat row."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(cam_xmat, float).reshape(3, 3) @ MJ_TO_CV
    T[:3, 3] = cam_xpos
    return T


# Presets. `front` looks at the table from about 1 m like robosuite's agentview; `wrist` is
# robosuite's eye_in_hand camera on the Panda hand.
CAMERAS: dict[str, CameraConfig] = {
    "front": CameraConfig("front", fovy_deg=45.0, pos=(0.75, 0.0, 1.35), target=(-0.1, 0.0, 0.85)),
    "wrist": CameraConfig(
        "wrist",
        fovy_deg=75.0,
        pos=(0.05, 0.0, 0.0),
        body="robot/right_hand",
        quat=(0.0, 0.707107, 0.707107, 0.0),
    ),
}


def get_cameras(names, width: int = 128, height: int = 128) -> list[CameraConfig]:
    """Camera presets by name at a resolution; ValueError names the unknown one."""
    out = []
    for n in names:
        if n not in CAMERAS:
            raise ValueError(f"unknown camera {n!r}; known: {', '.join(sorted(CAMERAS))}")
        out.append(CAMERAS[n].with_resolution(width, height))
    if len(set(c.name for c in out)) != len(out):
        raise ValueError("a camera is named twice")
    return out


def parse_resolution(text: str) -> tuple[int, int]:
    """'128x96' -> (width=128, height=96); ValueError on anything else."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"resolution {text!r} is not WIDTHxHEIGHT, e.g. 128x128")
    w, h = int(m.group(1)), int(m.group(2))
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise ValueError(f"resolution {text!r} out of range 8..4096")
    return w, h


def nominal_extrinsics(cam: CameraConfig) -> list[list[float]] | None:
    """4x4 camera-to-world (OpenCV axes) of a fixed camera; None for a mounted one."""
    if cam.body is not None:
        return None
    T = np.eye(4)
    T[:3, :3] = look_at(cam.pos, cam.target) @ MJ_TO_CV
    T[:3, 3] = cam.pos
    return T.round(9).tolist()


def set_mujoco_intrinsics(cam, K: np.ndarray, width: int, height: int) -> None:
    """Give an MjSpec camera the exact pinhole intrinsics K (OpenCV convention) at width x height.

    MuJoCo measures the principal point from the image centre with the opposite sign to
    OpenCV's pixel coordinates (checked by rendering points at known positions)."""
    K = np.asarray(K, float)
    cam.resolution = [width, height]
    cam.sensor_size = [width, height]  # sensor measured in pixels: focal lengths in pixels too
    cam.focal_pixel = [K[0, 0], K[1, 1]]
    cam.principal_pixel = [(width - 1) / 2 - K[0, 2], (height - 1) / 2 - K[1, 2]]
