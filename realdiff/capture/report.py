"""The PNG report of a captured pair store: the trajectory from above (beside the given one, if
any, aligned), the alignment of every frame to the twin before and after refinement, and three
example frames as clean | real | real - clean (holes black)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from realdiff.capture.geometry import ate_rmse
from realdiff.pairs import PAIRS_SCHEMA
from simgen.preview import colorize_depth


def write_report(store: Path, path: Path, given_poses: np.ndarray | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = zarr.open_group(store, mode="r")
    meta = g.attrs[PAIRS_SCHEMA]
    poses, ids = g["pose"][:], g["frame_id"][:]
    fig = plt.figure(figsize=(13, 15))
    ax = fig.add_subplot(4, 3, 1)
    pos = poses[:, :3, 3]
    ax.plot(pos[:, 0], pos[:, 2], "-", color="C0", lw=1.5, label="estimated")
    ax.plot(pos[:1, 0], pos[:1, 2], "o", color="C0")
    if given_poses is not None:
        ate, T = ate_rmse(given_poses, poses)  # the given trajectory moved onto ours
        gp = given_poses[:, :3, 3] @ T[:3, :3].T + T[:3, 3]
        ax.plot(gp[:, 0], gp[:, 2], "--", color="k", lw=1, label=f"given (ATE {ate * 100:.1f} cm)")
    ax.set(xlabel="x (m)", ylabel="z (m)", title="camera trajectory from above", aspect="equal")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(4, 3, (2, 3))
    before, after = g["abs_diff_mm_before"][:], g["abs_diff_mm"][:]
    ax.plot(ids, before, color="C1", lw=1, label="before refinement")
    ax.plot(ids, after, color="C0", lw=1, label="after refinement")
    val_from = meta["split"]["val_from_frame"]
    ax.axvline(val_from, color="k", ls=":", lw=1)
    ax.text(val_from, ax.get_ylim()[1] * 0.95, " validation", fontsize=8, va="top")
    ax.set(xlabel="frame", ylabel="median |real - clean| (mm)", title="alignment to the twin per frame")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    for k, i in enumerate(np.linspace(0, len(ids) - 1, 3).astype(int)):
        c, r = g["clean"][i], g["real"][i]
        v = c[c > 0]
        lo, hi = (float(np.percentile(v, 1)), float(np.percentile(v, 99))) if v.size else (0.0, 1.0)
        res = np.where((c > 0) & (r > 0), r - c, np.nan) * 1000
        for j, (img, title) in enumerate(
            [
                (colorize_depth(c, lo, hi), "clean (twin)"),
                (colorize_depth(r, lo, hi), "real"),
                (res, "real - clean (mm)"),
            ]
        ):
            ax = fig.add_subplot(4, 3, 4 + 3 * k + j)
            im = ax.imshow(img, cmap="coolwarm", vmin=-30, vmax=30) if j == 2 else ax.imshow(img)
            ax.set_axis_off()
            ax.set_title(f"frame {ids[i]}: {title}", fontsize=9)
            if j == 2:
                fig.colorbar(im, ax=ax, fraction=0.035, pad=0.02)
    fig.suptitle(f"{Path(store).name}: {len(ids)} frames of {meta['sensor']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
