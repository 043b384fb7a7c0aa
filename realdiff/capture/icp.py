"""Point-to-plane ICP with projective association (as in KinectFusion): a depth frame's points are
matched to the pixel they fall on in a reference view (vertex and normal maps), and the camera pose
is updated by Gauss-Newton on the point-to-plane distances, with outlier rejection (distance,
normal angle) and Huber weights.

Used twice: tracking a frame against the raycast of the growing model (`realdiff capture`), and
refining a frame's registration against its twin render (`realdiff capture`, `realdiff pair
--refine`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from realdiff.capture.geometry import backproject, se3_exp, transform, vertex_normals


@contextmanager
def one_thread():
    """Torch on one thread meanwhile: ICP's many small steps run fastest so, and never stall on a
    busy machine (two threads on two loaded cores made a frame ten times slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class RefView:
    """A reference view: world-frame vertex and normal maps (H, W, 3) seen by camera K at pose."""

    K: np.ndarray
    pose: np.ndarray
    vertex: torch.Tensor
    normal: torch.Tensor
    valid: torch.Tensor

    @classmethod
    def from_depth(cls, depth: np.ndarray, K: np.ndarray, pose: np.ndarray) -> RefView:
        p = backproject(torch.from_numpy(np.ascontiguousarray(depth, np.float32)), K)
        n, ok = vertex_normals(p)
        R = torch.as_tensor(pose[:3, :3], dtype=torch.float32)
        return cls(K, pose, transform(pose, p), n @ R.T, ok)


@dataclass
class Source:
    """A frame's points and normals in its own camera frame, (N, 3) each, valid readings only."""

    points: torch.Tensor
    normals: torch.Tensor

    @classmethod
    def from_depth(cls, depth: np.ndarray, K: np.ndarray, step: int = 1) -> Source:
        p = backproject(torch.from_numpy(np.ascontiguousarray(depth, np.float32)), K)
        n, ok = vertex_normals(p)
        if step > 1:
            p, n, ok = p[::step, ::step], n[::step, ::step], ok[::step, ::step]
        return cls(p[ok], n[ok])


@dataclass
class Fit:
    pose: np.ndarray
    inliers: float  # fraction of the source points matched within the thresholds
    rmse: float  # point-to-plane RMSE of the inliers (m)
    iterations: int


def icp(
    src: Source,
    ref: RefView,
    pose: np.ndarray,
    iters: int = 10,
    max_dist: float = 0.05,
    max_angle: float = 30.0,
    huber: float = 0.01,
    tol: float = 1e-5,
) -> Fit:
    """The camera-to-world pose of `src` that best lays its points on `ref`, from the guess `pose`."""
    pose = np.array(pose, np.float64)
    w2c = np.linalg.inv(ref.pose)
    cos_max = float(np.cos(np.radians(max_angle)))
    inl, rmse, it = 0.0, float("nan"), 0
    for it in range(1, iters + 1):
        q = transform(pose, src.points)
        ns = src.normals @ torch.as_tensor(pose[:3, :3], dtype=torch.float32).T
        ok, vm, nm = associate(q, ns, ref, max_dist, cos_max, w2c)
        if int(ok.sum()) < 6:
            return Fit(pose, 0.0, float("nan"), it)
        A, b, r = point_to_plane_system(q[ok], vm[ok], nm[ok], huber)
        xi = -torch.linalg.solve(A + 1e-9 * torch.eye(6, dtype=A.dtype), b).numpy()
        pose = se3_exp(xi) @ pose
        inl = float(ok.float().mean())
        rmse = float(torch.sqrt((r**2).mean()))
        if np.linalg.norm(xi) < tol:
            break
    return Fit(pose, inl, rmse, it)


def associate(q, nq, ref: RefView, max_dist: float, cos_max: float, w2c=None, min_z: float = 0.0):
    """Projective association: world-frame points q (N, 3) with normals nq, each matched to the pixel
    of `ref` it projects onto. Returns (mask, ref's vertices, ref's normals), the last two (N, 3):
    the mask keeps points in front of the camera (z > min_z), inside the image, on a valid pixel,
    within max_dist of its vertex and with normals less than acos(cos_max) apart. w2c: the inverse
    of ref.pose, when the caller has it."""
    H, W = ref.valid.shape
    K = ref.K
    c = transform(np.linalg.inv(ref.pose) if w2c is None else w2c, q)
    z = c[:, 2].clamp_min(1e-6)
    u = torch.round(c[:, 0] / z * float(K[0, 0]) + float(K[0, 2])).long()
    v = torch.round(c[:, 1] / z * float(K[1, 1]) + float(K[1, 2])).long()
    ok = (c[:, 2] > min_z) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    uc, vc = u.clamp(0, W - 1), v.clamp(0, H - 1)
    ok &= ref.valid[vc, uc]
    vm, nm = ref.vertex[vc, uc], ref.normal[vc, uc]
    ok &= ((q - vm).norm(dim=1) < max_dist) & ((nq * nm).sum(1) > cos_max)
    return ok, vm, nm


def point_to_plane_system(q, vm, nm, huber: float):
    """Gauss-Newton normal equations of the point-to-plane distances r = (q - vm) . nm of matched
    world-frame points, with Huber weights, for a left-multiplied twist of q's pose: (A (6, 6),
    b (6,), r), float64."""
    q, vm, nm = q.double(), vm.double(), nm.double()
    r = ((q - vm) * nm).sum(1)
    w = (huber / r.abs().clamp_min(1e-12)).clamp_max(1.0)
    J = torch.cat([torch.cross(q, nm, dim=1), nm], 1)
    return (J * w[:, None]).T @ J, (J * w[:, None]).T @ r, r


@dataclass
class Refined:
    pose: np.ndarray
    clean: np.ndarray  # the twin's depth at pose
    before_mm: float  # median |real - clean| at the pose given, over pixels valid in both
    after_mm: float  # the same at the refined pose
    inliers: float
    rmse_mm: float


def median_abs_diff_mm(real: np.ndarray, clean: np.ndarray) -> float:
    both = (real > 0) & (clean > 0)
    return float(np.median(np.abs(real[both] - clean[both])) * 1000) if both.any() else float("nan")


def refine_pose(
    render, real: np.ndarray, K: np.ndarray, pose: np.ndarray, rounds=((0.05, 4), (0.03, 4), (0.02, 2))
) -> Refined:
    """Register a real depth frame to the twin (a `render(pose) -> depth` function, same K): ICP of
    the frame's points to the twin's render, re-rendered after each round; a round is (association
    distance in m, pixel step of the frame's points). The refined pose is kept only if it lowers the
    median |real - clean|; otherwise the given pose stands."""
    sources = {step: Source.from_depth(real, K, step=step) for step in {s for _, s in rounds}}
    clean0 = render(pose)
    before = median_abs_diff_mm(real, clean0)
    clean, fit = clean0, None
    p = np.array(pose, np.float64)
    for dist, step in rounds:
        fit = icp(sources[step], RefView.from_depth(clean, K, p), p, iters=6, max_dist=dist, tol=1e-4)
        p = fit.pose
        clean = render(p)
    after = median_abs_diff_mm(real, clean)
    if not after < before:  # also when ICP found nothing to match (nan)
        return Refined(np.array(pose, np.float64), clean0, before, before, fit.inliers, fit.rmse * 1000)
    return Refined(p, clean, before, after, fit.inliers, fit.rmse * 1000)
