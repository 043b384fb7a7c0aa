"""A dense TSDF volume in torch: fuse depth frames at known poses, raycast depth from it, extract a
mesh (scikit-image's marching cubes).

The volume is a regular grid of `voxel`-metre cells starting at `origin`, stored (Z, Y, X) so that
torch's grid_sample reads it with (x, y, z) coordinates. Each cell holds the truncated signed
distance to the nearest surface along the viewing ray, in units of `trunc` (+1 in front of a
surface, -1 behind, 1 where never seen) and the number of frames that saw it (capped). A frame
updates only the cells within `trunc` of its readings, so a frame costs the same at any volume size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from realdiff.capture.geometry import transform


class TSDFVolume:
    def __init__(
        self, origin, size_m, voxel: float, trunc_voxels: float = 4.0, max_weight: float = 64.0
    ) -> None:
        self.origin = np.asarray(origin, np.float64)
        self.voxel = float(voxel)
        self.shape = tuple(int(np.ceil(s / voxel)) + 1 for s in np.broadcast_to(size_m, 3))  # (X, Y, Z)
        n = int(np.prod(self.shape))
        if n > 400_000_000:
            raise ValueError(f"a TSDF of {self.shape} voxels is too large; use a coarser voxel")
        self.trunc = trunc_voxels * self.voxel
        self.max_weight = max_weight
        X, Y, Z = self.shape
        # vol[0]: tsdf - 1 (so that 0, the padding of grid_sample, reads as free space); vol[1]: 1
        # where seen. Kept together so one grid_sample reads both.
        self.vol = torch.zeros(2, Z, Y, X)
        self.weight = torch.zeros(Z, Y, X)
        self._org = torch.as_tensor(self.origin, dtype=torch.float32)
        self._size = torch.tensor(self.shape, dtype=torch.float32) - 1  # the last cell's index

    # --- fusing ---------------------------------------------------------------------------------

    def integrate(self, depth: np.ndarray, K: np.ndarray, pose: np.ndarray, max_depth: float) -> None:
        """Fuse one depth frame (H, W metres, 0 = no reading) seen from camera-to-world `pose`.

        Only cells within `trunc` of a reading are updated: the cells met by samples half a voxel
        apart along the rays of pixels about a voxel apart, each with the projective distance of
        its own centre. Several samples may meet one cell; they all write the same value."""
        H, W = depth.shape
        d = torch.from_numpy(np.where(depth <= max_depth, depth, 0).astype(np.float32))
        px = max(1, int(self.voxel * float(K[0, 0]) / max_depth))  # pixels between sampled rays
        v, u = torch.meshgrid(torch.arange(0, H, px), torch.arange(0, W, px), indexing="ij")
        z = d[v, u]
        ok = z > 0
        u, v, z = u[ok].float(), v[ok].float(), z[ok]
        rays = torch.stack([(u - float(K[0, 2])) / float(K[0, 0]), (v - float(K[1, 2])) / float(K[1, 1])], 1)
        offs = torch.arange(-self.trunc, self.trunc + 1e-6, self.voxel / 2, dtype=torch.float32)
        zz = z[:, None] + offs[None]  # (n, s) sample depths along each ray
        cam = torch.stack([rays[:, None, 0] * zz, rays[:, None, 1] * zz, zz], -1).view(-1, 3)
        ijk = torch.round((transform(pose, cam) - self._org) / self.voxel)
        hi = self._size
        ijk = ijk[((ijk >= 0) & (ijk <= hi)).all(1)].long()
        X, Y, _ = self.shape
        flat = (ijk[:, 2] * Y + ijk[:, 1]) * X + ijk[:, 0]
        centre = self._org + self.voxel * ijk.float()
        p = transform(np.linalg.inv(pose), centre)
        zc = p[:, 2].clamp_min(1e-6)
        uc = torch.round(p[:, 0] / zc * float(K[0, 0]) + float(K[0, 2])).long()
        vc = torch.round(p[:, 1] / zc * float(K[1, 1]) + float(K[1, 2])).long()
        inside = (p[:, 2] > 0) & (uc >= 0) & (uc < W) & (vc >= 0) & (vc < H)
        reading = torch.where(inside, d[vc.clamp(0, H - 1), uc.clamp(0, W - 1)], 0.0)
        sdf = reading - p[:, 2]
        upd = (reading > 0) & (sdf > -self.trunc)
        flat, sdf = flat[upd], sdf[upd]
        tsdf, seen, weight = self.vol[0].view(-1), self.vol[1].view(-1), self.weight.view(-1)
        t, w = tsdf[flat] + 1, weight[flat]
        tsdf[flat] = (t * w + (sdf / self.trunc).clamp_max(1.0)) / (w + 1) - 1
        weight[flat] = (w + 1).clamp_max(self.max_weight)
        seen[flat] = 1.0

    # --- raycasting -----------------------------------------------------------------------------

    def _trilinear(self, pts: torch.Tensor) -> torch.Tensor:
        """The tsdf at world points (N, 3), trilinear; 1 outside the volume."""
        g = 2 * (pts - self._org) / self.voxel / self._size - 1
        return F.grid_sample(self.vol[None, :1], g.view(1, 1, 1, -1, 3), align_corners=True).view(-1) + 1

    def raycast(
        self,
        K: np.ndarray,
        pose: np.ndarray,
        H: int,
        W: int,
        near: float,
        far: float,
        hint: np.ndarray | None = None,
    ) -> np.ndarray:
        """(H, W) float32 z-depth of the fused surface seen from `pose` with intrinsics K; 0 where a
        ray meets no surface (a + to - crossing of seen cells) between near and far.

        Rays march in steps of trunc / 2 reading the nearest cell; at the first crossing the depth
        is interpolated linearly between trilinear reads at the two steps around it. `hint`, an
        (H, W) depth expected near the surface (0: none), starts a ray 2 trunc before it."""
        X, Y, Z = self.shape
        flat_t, flat_s = self.vol[0].view(-1), self.vol[1].view(-1)
        v, u = torch.meshgrid(
            torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
        )
        rays = torch.stack(
            [
                (u - float(K[0, 2])) / float(K[0, 0]),
                (v - float(K[1, 2])) / float(K[1, 1]),
                torch.ones_like(u),
            ],
            -1,
        ).view(-1, 3)
        o = torch.as_tensor(pose[:3, 3], dtype=torch.float32)
        dirs = rays @ torch.as_tensor(pose[:3, :3], dtype=torch.float32).T
        start, slope = (o - self._org) / self.voxel, dirs / self.voxel  # cell = start + z * slope
        step = 0.5 * self.trunc
        z0 = torch.full((len(rays),), float(near))
        if hint is not None:
            h = torch.from_numpy(np.ascontiguousarray(hint, np.float32)).view(-1)
            z0 = torch.where(h > 0, (h - 2 * self.trunc).clamp_min(near), z0)
        depth = torch.zeros(len(rays))
        active = torch.arange(len(rays))
        prev_f = torch.ones(len(rays))
        prev_seen = torch.zeros(len(rays), dtype=torch.bool)
        hi = self._size
        n_steps = int(np.ceil((far - near) / step)) + 1
        for k0 in range(0, n_steps, 8):  # 8 steps at a time; rays that hit stop
            zc = z0[active, None] + step * torch.arange(k0, k0 + 8, dtype=torch.float32)[None]  # (n, s)
            g = torch.round(start + slope[active, None, :] * zc[..., None])  # (n, s, 3)
            inside = ((g >= 0) & (g <= hi)).all(-1) & (zc <= far)
            g = torch.minimum(g.clamp_min(0), hi).long()
            idx = (g[..., 2] * Y + g[..., 1]) * X + g[..., 0]
            f = torch.where(inside, flat_t[idx] + 1, 1.0)
            seen = inside & (flat_s[idx] > 0)
            f_all = torch.cat([prev_f[active, None], f], 1)
            seen_all = torch.cat([prev_seen[active, None], seen], 1)
            cross = (f_all[:, :-1] > 0) & (f_all[:, 1:] <= 0) & seen_all[:, :-1] & seen_all[:, 1:]
            hit = cross.any(1)
            first = cross.float().argmax(1)[hit]
            ids = active[hit]
            za = z0[ids] + step * (k0 - 1 + first.float())
            fa = self._trilinear(o + dirs[ids] * za[:, None])
            fb = self._trilinear(o + dirs[ids] * (za + step)[:, None])
            r = torch.arange(len(first))
            good = (fa > 0) & (fb <= 0)  # else the nearest cells' values
            fa = torch.where(good, fa, f_all[hit][r, first])
            fb = torch.where(good, fb, f_all[hit][r, first + 1])
            depth[ids] = za + step * fa / (fa - fb).clamp_min(1e-6)
            prev_f[active], prev_seen[active] = f[:, -1], seen[:, -1]
            active = active[~hit & (zc[:, -1] < far)]
            if len(active) == 0:
                break
        return depth.view(H, W).numpy()

    # --- the mesh -------------------------------------------------------------------------------

    def mesh(self, min_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (V, 3) world metres, faces (F, 3)) of the zero level set over cells seen by at
        least min_weight frames, faces wound counter-clockwise seen from the free-space side."""
        from skimage.measure import marching_cubes

        seen = (self.weight >= min_weight).numpy()
        cube = seen.copy()  # a cube counts only if all eight of its corners were seen: an unseen
        for axis in range(3):  # corner (tsdf 1) beside a cell behind a surface is no surface
            cube[(slice(None),) * axis + (slice(0, -1),)] &= cube[(slice(None),) * axis + (slice(1, None),)]
        if not cube.any():
            raise ValueError("the TSDF volume saw nothing; no mesh")
        tsdf = (self.vol[0] + 1).numpy()
        verts, faces, _, _ = marching_cubes(tsdf, level=0.0, mask=cube, allow_degenerate=False)
        # A vertex lies on a grid edge; across a real surface the tsdf changes by about voxel /
        # trunc (0.25) an edge. A far larger step is the closing skirt at the border of what was
        # seen (a cell behind a surface beside free space seen from elsewhere): drop those faces.
        lo = np.floor(verts).astype(np.int64)
        frac = verts - lo
        axis = np.argmax(frac, 1)
        hi = lo.copy()
        hi[np.arange(len(hi)), axis] += 1
        hi = np.minimum(hi, np.array(tsdf.shape) - 1)
        step = np.abs(tsdf[tuple(hi.T)] - tsdf[tuple(lo.T)])
        ok = ~(step > 0.75)[faces].any(1)
        used, faces = np.unique(faces[ok], return_inverse=True)
        verts, faces = verts[used], faces.reshape(-1, 3)
        verts = self.origin + self.voxel * verts[:, ::-1]  # (z, y, x) indices -> world x, y, z
        return verts.astype(np.float64), faces[:, ::-1].astype(np.int64)
