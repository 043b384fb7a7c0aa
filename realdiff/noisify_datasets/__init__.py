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


def _refuse(given: dict, what: str) -> None:
    """ValueError naming the flags in `given` ({flag: value}) that were set but do not apply."""
    named = [flag for flag, value in given.items() if value not in (None, "auto")]
    if named:
        raise ValueError(f"{', '.join(named)}: not for {what}")


def noisify_path(path: str | Path, intrinsics=None, depth_convention="auto", out=None, **kw) -> dict:
    """`realdiff noisify PATH`, told apart by what the path holds: a simgen store
    (realdiff.noisify.noisify_store), a robomimic HDF5 file, a DP3 zarr or a LeRobot v3 dataset.
    `kw`: the options every format takes (noiser, cameras, suffix, seed, overwrite, workers,
    progress, range_scale, warn, backend, address)."""
    from realdiff.noisify import noisify_store
    from simgen.store import is_store

    p = Path(path)
    hdf5_only = {"--out": out, "--depth-convention": depth_convention}
    if is_store(p):
        _refuse({"--intrinsics": intrinsics, **hdf5_only}, "a simgen store (it records its own cameras)")
        return noisify_store(p, **kw)
    if p.is_file() and h5py.is_hdf5(p):
        return noisify_hdf5(p, intrinsics=intrinsics, depth_convention=depth_convention, out=out, **kw)
    if is_dp3(p):
        _refuse(hdf5_only, "a DP3 zarr (it gains arrays)")
        return noisify_dp3(p, intrinsics=intrinsics, **kw)
    if lr.is_lerobot(p):
        _refuse(hdf5_only, "a LeRobot dataset (it gains features)")
        return noisify_lerobot(p, intrinsics=intrinsics, **kw)
    if not p.exists():
        raise ValueError(f"{p}: no such dataset")
    raise ValueError(f"{p}: not a simgen store, a robomimic HDF5 dataset, a LeRobot v3 dataset or a DP3 zarr")


__all__ = ["noisify_dp3", "noisify_hdf5", "noisify_lerobot", "noisify_path"]
