"""`realdiff noisify` on datasets of other frameworks, with the guarantees it gives a simgen store
(all cores or Ray, per-frame seeds, resume after a kill, refusal of other settings, the dataset never
half-written): robomimic / MimicGen HDF5 (robomimic.py), LeRobot v3 (lerobot.py), 3D Diffusion
Policy's zarr (dp3.py). What they share is in common.py."""

from __future__ import annotations

from pathlib import Path

import h5py

from interop import lerobot_depth as lr
from realdiff.noisify_datasets.dp3 import is_dp3, noisify_dp3
from realdiff.noisify_datasets.lerobot import noisify_lerobot
from realdiff.noisify_datasets.robomimic import noisify_hdf5


def noisify_path(path: str | Path, intrinsics=None, depth_convention="auto", out=None, **kw) -> dict:
    """`realdiff noisify PATH`: a simgen store (realdiff.noisify.noisify_store) or a robomimic HDF5
    dataset (noisify_hdf5), told apart by what the path holds."""
    from realdiff.noisify import noisify_store
    from simgen.store import is_store

    p = Path(path)
    if is_store(p):
        given = [f for f, v in (("--intrinsics", intrinsics), ("--out", out)) if v is not None]
        if depth_convention != "auto":
            given.append("--depth-convention")
        if given:
            raise ValueError(f"{', '.join(given)}: for other datasets; a simgen store records its own")
        return noisify_store(p, **kw)
    if p.is_file() and h5py.is_hdf5(p):
        return noisify_hdf5(p, intrinsics=intrinsics, depth_convention=depth_convention, out=out, **kw)
    if is_dp3(p) and not is_store(p):
        if out is not None or depth_convention != "auto":
            raise ValueError("--out, --depth-convention: for HDF5 datasets; a DP3 zarr gains arrays")
        return noisify_dp3(p, intrinsics=intrinsics, **kw)
    if lr.is_lerobot(p):
        if out is not None or depth_convention != "auto":
            raise ValueError("--out, --depth-convention: for HDF5 datasets; a LeRobot dataset gains features")
        return noisify_lerobot(p, intrinsics=intrinsics, **kw)
    if not p.exists():
        raise ValueError(f"{p}: no such dataset")
    raise ValueError(f"{p}: not a simgen store, a robomimic HDF5 dataset, a LeRobot v3 dataset or a DP3 zarr")


__all__ = ["noisify_dp3", "noisify_hdf5", "noisify_lerobot", "noisify_path"]
