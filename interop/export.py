"""`simgen export`: a simgen store as a dataset another framework loads (robomimic HDF5, LeRobot v3,
DP3 zarr), written into `OUT.partial` and renamed to OUT when whole.

Every format reads the store through interop.source.Source; the writers are
interop.robomimic_export, interop.lerobot and interop.dp3.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from interop.source import ExportError, Source
from simgen.store import Store

FORMATS = ("lerobot", "robomimic", "dp3")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _swap_in(partial: Path, out: Path) -> None:
    """Move the finished `partial` to `out`, replacing what is there (a file in one rename; a
    folder is moved aside, the new one renamed in, then the old one removed)."""
    if out.exists() and (out.is_dir() or partial.is_dir()):
        old = out.with_name(out.name + ".old")
        _remove(old)
        os.replace(out, old)
        os.replace(partial, out)
        _remove(old)
    else:
        os.replace(partial, out)


def export(
    store: str | Path,
    fmt: str,
    out: str | Path,
    noisy_only: bool = False,
    noisy_key: str | None = None,
    cameras: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    points: int = 1024,
    sampling: str = "fps",
    workspace: list[float] | None = None,
) -> dict:
    """Write the store as `fmt` to `out`; returns a summary. Bad input (not a store, an unknown
    format, a missing noisy key, an existing OUT without `overwrite`) raises ExportError or
    StoreError before OUT is touched; OUT appears only when complete. points, sampling, workspace:
    DP3's point clouds (interop.dp3)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "dp3":
        from interop.dp3 import check_options

        check_options(points, sampling, workspace)
        if cameras and len(cameras) != 1:
            raise ExportError("dp3 takes one camera (--camera NAME)")
    out = Path(out)
    if fmt == "dp3" and not cameras:  # the first camera: the others' depth need not exist
        cameras = list(Store(store).meta.get("cameras", {}))[:1]
    src = Source(store, cameras, noisy_only=noisy_only, noisy_key=noisy_key)
    if out.resolve().is_relative_to(src.path.resolve()):
        raise ExportError(f"{out}: the output cannot be inside the store")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; --overwrite replaces it")
    partial = out.with_name(out.name + ".partial")
    _remove(partial)  # what a killed export left
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "robomimic":
            from interop.robomimic_export import write_robomimic

            summary = write_robomimic(src, partial, progress)
        elif fmt == "lerobot":
            from interop.lerobot import write_lerobot

            summary = write_lerobot(src, partial, progress)
        else:
            from interop.dp3 import write_dp3

            summary = write_dp3(src, partial, progress, points=points, sampling=sampling, workspace=workspace)
        _swap_in(partial, out)
    except BaseException:
        _remove(partial)
        raise
    return {"format": fmt, "out": str(out), "episodes": src.n_episodes, "frames": src.n_frames, **summary}
