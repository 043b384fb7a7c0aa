"""Fit the baseline noise models' parameters on a pair store's train split and save them as
realdiff/params/<name>.json (loaded by realdiff.load_noiser(name)).

    python scripts/fit_baselines.py [--pairs out/kinect_pairs.zarr]
"""

import argparse

import numpy as np
import zarr

from realdiff.sensors import NOISERS, PARAMS_DIR


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="out/kinect_pairs.zarr", help="pair store from `realdiff pair`")
    args = ap.parse_args()
    g = zarr.open_group(args.pairs, mode="r")
    meta = g.attrs["realdiff_pairs"]
    K = np.array(meta["K"])
    train = np.array(meta["split"]["train"])
    clean, real = g["clean"].get_orthogonal_selection(train), g["real"].get_orthogonal_selection(train)
    PARAMS_DIR.mkdir(exist_ok=True)
    for name, cls in NOISERS.items():
        if name == "identity":
            continue
        model = cls.fit(clean, real, K)
        (PARAMS_DIR / f"{name}.json").write_text(model.to_json())
        print(f"{name}: {model.params()}")


if __name__ == "__main__":
    main()
