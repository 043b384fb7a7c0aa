"""Noisify throughput on a robomimic HDF5 dataset beside the same frames in a simgen store.

Renders a pick store (front and wrist cameras, no RGB), exports it to robomimic HDF5 (`simgen export
--format robomimic`), then times `realdiff noisify` with the default noiser on both, every core,
from the call to its return (start-up, the HDF5 copy and its final write included), `--rounds`
times alternating, and prints frames/s (camera images) per format and their ratio. The HDF5 run
counts obs frames only (its few extra next_obs frames are work it does on top).

    python bench/noisify_formats.py [--episodes 20] [--resolution 128x128] [--rounds 2]
                                    [--noiser NAME] [--workers N] [--backend local|ray]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from interop.export import export
from realdiff.noisify_datasets import noisify_path
from realdiff.sensors import DEFAULT_NOISER
from simgen.cameras import parse_resolution
from simgen.runner import RenderConfig, render_dataset

CAMS = ("front", "wrist")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--resolution", default="128x128")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--noiser", default=DEFAULT_NOISER)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--backend", default="local", choices=("local", "ray"))
    args = ap.parse_args()
    w, h = parse_resolution(args.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "pick.zarr"
        cfg = RenderConfig(task="pick", episodes=args.episodes, cameras=CAMS, width=w, height=h, rgb=False)
        render_dataset(cfg, store, progress=False)
        h5 = Path(tmp) / "pick.hdf5"
        export(store, "robomimic", h5, progress=False)
        rates = {"store": [], "hdf5": []}
        for r in range(args.rounds):
            for fmt, src in (("store", store), ("hdf5", h5)):
                work = Path(tmp) / f"run_{fmt}{src.suffix}"
                (shutil.copytree if src.is_dir() else shutil.copy)(src, work)
                t = time.perf_counter()
                s = noisify_path(
                    work, noiser=args.noiser, progress=False, workers=args.workers, backend=args.backend
                )
                rate = s["frames"] * len(CAMS) / (time.perf_counter() - t)
                rates[fmt].append(rate)
                print(
                    f"round {r + 1}: {fmt} {rate:.1f} frames/s ({s['frames'] * len(CAMS)} frames)", flush=True
                )
                (shutil.rmtree if work.is_dir() else os.remove)(work)
    store_fps, h5_fps = (float(np.median(rates[k])) for k in ("store", "hdf5"))
    print(
        f"\n{os.cpu_count()} cores, {args.resolution}, {args.noiser}, backend {args.backend}, median of "
        f"{args.rounds} rounds\n| format | noisify frames/s | vs store |\n|---|---|---|\n"
        f"| simgen store | {store_fps:.1f} | 1.00 |\n"
        f"| robomimic HDF5 | {h5_fps:.1f} | {h5_fps / store_fps:.2f} |"
    )


if __name__ == "__main__":
    main()
