"""Fit the baseline noise models' parameters on a pair store's train split and save them as
realdiff/params/<name>.json (loaded by realdiff.load_noiser(name)), or into another folder (then
each is loaded by its path, e.g. `realdiff eval --noiser DIR/gaussian.json`).

    python scripts/fit_baselines.py [--pairs out/kinect_pairs.zarr] [--out-dir DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import zarr

from realdiff.sensors import NOISERS, PARAMS_DIR


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="out/kinect_pairs.zarr", help="pair store from `realdiff pair`")
    ap.add_argument("--out-dir", default=str(PARAMS_DIR), help="folder for the <name>.json files")
    args = ap.parse_args()
    g = zarr.open_group(args.pairs, mode="r")
    meta = g.attrs["realdiff_pairs"]
    K = np.array(meta["K"])
    train = np.array(meta["split"]["train"])
    clean, real = g["clean"].get_orthogonal_selection(train), g["real"].get_orthogonal_selection(train)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, cls in NOISERS.items():
        if name in ("identity", "reald2iff"):  # nothing to fit, or trained by `realdiff train`
            continue
        model = cls.fit(clean, real, K)
        (out / f"{name}.json").write_text(model.to_json())
        print(f"{name}: {model.params()}")


if __name__ == "__main__":
    main()
