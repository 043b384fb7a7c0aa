"""Reading recorded RGB-D sequences: depth PNGs, optional colour and poses, and camera matrices.

Two layouts are read:
- 7-Scenes / 3DMatch: a folder of `frame-NNNNNN.depth.png` (16-bit), with optional
  `frame-NNNNNN.color.{png,jpg}` and `frame-NNNNNN.pose.txt` (4x4 camera-to-world, OpenCV axes);
- TUM RGB-D: a folder with `associations.txt`, lines `time rgb/x.png time depth/y.png` (either
  order), depth in units of 1/5000 m; no poses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

_FRAME = re.compile(r"frame-(\d+)\.depth\.png$")
TUM_DEPTH_SCALE = 1 / 5000  # metres per unit of a TUM depth PNG
DEPTH_SCALE = 0.001  # metres per unit of a 7-Scenes / 3DMatch depth PNG (millimetres)


@dataclass(frozen=True)
class Frame:
    frame_id: int
    depth_path: Path
    pose: np.ndarray | None = None  # 4x4 camera-to-world, OpenCV axes
    color_path: Path | None = None


def read_intrinsics(path: str | Path) -> np.ndarray:
    """A 3x3 camera matrix from a whitespace-separated text file."""
    try:
        K = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a camera matrix ({e})") from None
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{path}: not a 3x3 camera matrix with positive focal lengths")
    return K


def _read_pose(path: Path) -> np.ndarray:
    pose = np.loadtxt(path, dtype=np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"{path}: not a 4x4 pose")
    return pose


def list_frames(folder: str | Path, poses: str = "required") -> list[Frame]:
    """Every frame of a recorded sequence in `folder`, sorted. poses: "required" (a frame without a
    pose file is an error), "optional" (read where present) or "ignore"."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    if poses not in ("required", "optional", "ignore"):
        raise ValueError(f"poses must be required, optional or ignore, not {poses!r}")
    if (folder / "associations.txt").is_file() and not any(folder.glob("frame-*.depth.png")):
        if poses == "required":
            raise ValueError(f"{folder}: a TUM sequence carries no per-frame pose files")
        return _tum_frames(folder)
    frames = []
    for p in sorted(folder.iterdir()):
        m = _FRAME.search(p.name)
        if not m:
            continue
        pose_path = p.with_name(p.name.replace(".depth.png", ".pose.txt"))
        pose = None
        if poses != "ignore" and pose_path.exists():
            pose = _read_pose(pose_path)
        elif poses == "required":
            raise ValueError(f"{p.name}: no pose file {pose_path.name}")
        color = next(
            (
                c
                for ext in ("png", "jpg")
                if (c := p.with_name(p.name.replace(".depth.png", f".color.{ext}"))).exists()
            ),
            None,
        )
        frames.append(Frame(int(m.group(1)), p, pose, color))
    if not frames:
        raise ValueError(f"{folder}: no frame-NNNNNN.depth.png files (nor a TUM associations.txt)")
    return frames


def _tum_frames(folder: Path) -> list[Frame]:
    frames = []
    for n, line in enumerate((folder / "associations.txt").read_text().splitlines()):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 4:
            raise ValueError(f"{folder}/associations.txt line {n + 1}: expected 'time file time file'")
        a, b = parts[1], parts[3]
        depth, color = (a, b) if "depth" in a and "depth" not in b else (b, a)
        frames.append(Frame(len(frames), folder / depth, None, folder / color))
    if not frames:
        raise ValueError(f"{folder}/associations.txt: no frames")
    return frames


def default_depth_scale(folder: str | Path) -> float:
    """Metres per depth PNG unit of the layout in `folder`."""
    folder = Path(folder)
    tum = (folder / "associations.txt").is_file() and not any(folder.glob("frame-*.depth.png"))
    return TUM_DEPTH_SCALE if tum else DEPTH_SCALE


def read_depth_png(path: Path, scale_m: float = DEPTH_SCALE, invalid=(0, 65535)) -> np.ndarray:
    """16-bit depth PNG -> float32 metres with 0 where the sensor gave no reading."""
    try:
        raw = imageio.imread(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(f"{path}: expected a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
    depth = raw.astype(np.float32) * np.float32(scale_m)
    depth[np.isin(raw, invalid)] = 0.0
    return depth


def read_color(path: Path | None) -> np.ndarray | None:
    """(H, W, 3) uint8 colour image, or None."""
    if path is None:
        return None
    img = imageio.imread(path)
    return img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, 2)
