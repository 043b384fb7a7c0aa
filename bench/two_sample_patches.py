"""Which patches give a noise model away in the two-sample test?

Runs the two-sample test of `realdiff eval` (realdiff.metrics.two_sample_test, the same classifier,
patches and split) for each noiser and seed on the validation split, and reports the classifier's
accuracy on the test patches grouped by what lies in the patch:
  near edges   the fraction of its pixels within 3 px of a clean-depth jump of more than 2 %, a
               real hole or the image border (realdiff.reald2iff.stages.near_edges);
  real holes   the fraction of its clean-depth pixels without a real reading;
  real residual  the standard deviation of (real - clean) / m over its readings (m: the patch's mean
               clean depth), by fifths of all test patches.
Accuracy within a group is the mean of the accuracy on its real and on its generated patches, pooled
over the seeds; 0.5 means the classifier cannot tell them apart there. A group is not a separate test:
the classifier is trained on all patches and spends its capacity on the easiest cue.

About 1 minute a noiser and seed on 2 cores:

    python bench/two_sample_patches.py [--pairs out/kinect_pairs.zarr]
                                       [--noiser reald2iff-texture,reald2iff-texture-shift]
                                       [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from realdiff import load_noiser, metrics
from realdiff.evaluate import generate
from realdiff.pairs import load_split
from realdiff.reald2iff.stages import near_edges

PATCH = 32  # two_sample_accuracy's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="out/kinect_pairs.zarr")
    ap.add_argument("--noiser", default="reald2iff-texture,reald2iff-texture-shift")
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    clean, real, K, ids = load_split(a.pairs, "val")
    near = near_edges(torch.from_numpy(clean), torch.from_numpy(real <= 0)).numpy()
    seeds = [int(s) for s in a.seeds.split(",")]
    for name in a.noiser.split(","):
        noiser = load_noiser(name)
        parts = []
        for s in seeds:
            t = metrics.two_sample_test(clean, real, generate(noiser, clean, K, ids, seed=s), seed=s)
            parts.append({**t, **patch_features(clean, real, near, t["frame"], t["y"], t["x"])})
        r = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        print(
            f"\n{name}: two-sample accuracy {accuracy(r, np.ones(len(r['frame']), bool)):.3f} "
            f"over seeds {seeds} "
            f"({len(r['frame'])} test patches)"
        )
        fifths = np.quantile(r["residual"], [0, 0.2, 0.4, 0.6, 0.8])
        for label, key, edges in (
            ("near edges", "near", [0, 0.05, 0.15, 0.3, 0.6]),
            ("real holes", "holes", [0, 1e-9, 0.05, 0.2, 0.5]),
            ("real residual", "residual", list(fifths)),
        ):
            cells = []
            for i, lo in enumerate(edges):
                hi = edges[i + 1] if i + 1 < len(edges) else np.inf
                sel = (r[key] >= lo) & (r[key] < hi)
                cells.append(f"[{lo:.3g}, {hi:.3g}): {accuracy(r, sel):.2f} (n={sel.sum()})")
            print(f"  {label:14s} " + "   ".join(cells))


def patch_features(clean, real, near, frame, y, x) -> dict:
    """Near-edge fraction, real-hole fraction and real residual spread of each test patch."""
    rows = y[:, None, None] + np.arange(PATCH)[None, :, None]
    cols = x[:, None, None] + np.arange(PATCH)[None, None, :]
    f = frame[:, None, None]
    c, z = clean[f, rows, cols], real[f, rows, cols]
    has = c > 0
    m = np.where(has, c, 0).sum((1, 2)) / np.maximum(has.sum((1, 2)), 1)
    res = np.where(has & (z > 0), (z - c) / np.maximum(m, 1e-3)[:, None, None], np.nan)
    with warnings.catch_warnings():  # a patch without readings has no spread: 0
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nan_to_num(np.nanstd(res, axis=(1, 2)))
    return {
        "near": near[f, rows, cols].mean((1, 2)),
        "holes": (has & (z <= 0)).sum((1, 2)) / np.maximum(has.sum((1, 2)), 1),
        "residual": spread,
    }


def accuracy(r: dict, sel: np.ndarray) -> float:
    if not sel.any():
        return float("nan")
    return float(((r["real_logit"][sel] > 0).mean() + (r["gen_logit"][sel] <= 0).mean()) / 2)


if __name__ == "__main__":
    main()
