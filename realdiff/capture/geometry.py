"""Camera geometry for capture: back-projection, normals, rigid transforms and trajectory error.

Conventions: depth maps are (H, W) float32 z-depth in metres, 0 = no reading; K is a 3x3 camera
matrix; poses are 4x4 camera-to-world with OpenCV camera axes (x right, y down, z forward).
"""

from __future__ import annotations

import numpy as np
import torch


def scaled_intrinsics(K: np.ndarray, step: int) -> np.ndarray:
    """K of the image subsampled as depth[::step, ::step] (pixel u' sees what pixel step * u' saw)."""
    K = np.array(K, np.float64)
    K[:2] /= step
    return K


def backproject(depth: torch.Tensor, K: np.ndarray) -> torch.Tensor:
    """(H, W, 3) camera-frame points of a depth map (0 where there is no reading)."""
    H, W = depth.shape
    v, u = torch.meshgrid(
        torch.arange(H, dtype=depth.dtype), torch.arange(W, dtype=depth.dtype), indexing="ij"
    )
    x = (u - float(K[0, 2])) / float(K[0, 0]) * depth
    y = (v - float(K[1, 2])) / float(K[1, 1]) * depth
    return torch.stack([x, y, depth], -1)


def vertex_normals(points: torch.Tensor, max_jump: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals (H, W, 3) of a vertex map from central differences, facing the camera, and
    their validity (H, W): the point and its four neighbours hold readings no more than max_jump
    (relative) apart."""
    z = points[..., 2]
    ok = z > 0
    n = torch.zeros_like(points)
    dx = points[1:-1, 2:] - points[1:-1, :-2]
    dy = points[2:, 1:-1] - points[:-2, 1:-1]
    c = torch.cross(dx, dy, dim=-1)
    norm = c.norm(dim=-1, keepdim=True)
    n[1:-1, 1:-1] = c / norm.clamp_min(1e-12)
    valid = torch.zeros_like(ok)
    zc = z[1:-1, 1:-1]
    near = lambda a: (a > 0) & ((a - zc).abs() < max_jump * zc)  # noqa: E731
    valid[1:-1, 1:-1] = (
        ok[1:-1, 1:-1]
        & near(z[1:-1, 2:])
        & near(z[1:-1, :-2])
        & near(z[2:, 1:-1])
        & near(z[:-2, 1:-1])
        & (norm[..., 0] > 0)
    )
    facing = (n * points).sum(-1) > 0  # make every normal point back at the camera
    n = torch.where(facing[..., None], -n, n)
    return n, valid


def transform(T: np.ndarray | torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Points (..., 3) moved by a 4x4 rigid transform."""
    T = torch.as_tensor(T, dtype=p.dtype)
    return p @ T[:3, :3].T + T[:3, 3]


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """4x4 rigid transform of a twist (wx, wy, wz, tx, ty, tz): rotation by Rodrigues, then t."""
    w, t = xi[:3], xi[3:]
    theta = float(np.linalg.norm(w))
    Wx = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    if theta < 1e-12:
        R = np.eye(3) + Wx
    else:
        R = np.eye(3) + np.sin(theta) / theta * Wx + (1 - np.cos(theta)) / theta**2 * (Wx @ Wx)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def relative_motion(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(translation in metres, rotation in degrees) between two poses."""
    d = np.linalg.inv(a) @ b
    cos = np.clip((np.trace(d[:3, :3]) - 1) / 2, -1.0, 1.0)
    return float(np.linalg.norm(d[:3, 3])), float(np.degrees(np.arccos(cos)))


def align_rigid(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 4x4 rigid transform T (no scale) minimising sum |T src_i - dst_i|^2 (Umeyama/Kabsch).
    src, dst: (N, 3)."""
    ms, md = src.mean(0), dst.mean(0)
    U, _, Vt = np.linalg.svd((dst - md).T @ (src - ms))
    S = np.eye(3)
    S[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ S @ Vt
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, md - R @ ms
    return T


def ate_rmse(est: np.ndarray, ref: np.ndarray) -> tuple[float, np.ndarray]:
    """Absolute trajectory error: RMSE (m) of camera positions after the rigid alignment of the
    estimated poses est (N, 4, 4) to the reference ref (N, 4, 4), and that alignment (4x4)."""
    T = align_rigid(est[:, :3, 3], ref[:, :3, 3])
    moved = est[:, :3, 3] @ T[:3, :3].T + T[:3, 3]
    return float(np.sqrt(np.mean(np.sum((moved - ref[:, :3, 3]) ** 2, 1)))), T
