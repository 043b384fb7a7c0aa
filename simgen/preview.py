"""Previews of a store's episodes: colour-mapped depth beside RGB, as MP4 or a PNG sheet."""

from __future__ import annotations

import numpy as np

# Turbo colour map (Google, Apache-2.0) sampled at 9 points and interpolated linearly.
_TURBO = np.array(
    [
        [48, 18, 59],
        [65, 69, 171],
        [70, 117, 237],
        [57, 162, 252],
        [27, 207, 212],
        [36, 236, 166],
        [97, 252, 108],
        [164, 252, 59],
        [209, 232, 52],
        [243, 198, 58],
        [254, 155, 45],
        [243, 99, 21],
        [217, 56, 6],
        [177, 26, 1],
        [122, 4, 3],
    ],
    np.float32,
)


def colorize_depth(depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """float depth (m, 0 = no reading) -> uint8 RGB; near is red, far is blue, holes black."""
    d = np.asarray(depth, np.float32)
    valid = d > 0
    if lo is None or hi is None:
        v = d[valid]
        lo, hi = (float(np.percentile(v, 1)), float(np.percentile(v, 99))) if v.size else (0.0, 1.0)
    t = np.clip((hi - d) / max(hi - lo, 1e-6), 0.0, 1.0) * (len(_TURBO) - 1)
    i = np.minimum(t.astype(np.int32), len(_TURBO) - 2)
    f = (t - i)[..., None]
    rgb = _TURBO[i] * (1 - f) + _TURBO[i + 1] * f
    rgb[~valid] = 0
    return rgb.astype(np.uint8)


def frame_panel(
    ep: dict[str, np.ndarray],
    cameras: list[str],
    t: int,
    ranges: dict[str, tuple[float, float]],
    scale: int = 2,
) -> np.ndarray:
    """One row: for each camera, its colour-mapped depth, any noisified depth, then its RGB."""
    tiles = []
    for c in cameras:
        tiles.append(colorize_depth(ep[f"{c}_depth"][t], *ranges[c]))
        for k in sorted(k for k in ep if k.startswith(f"{c}_depth_")):  # noisified versions
            tiles.append(colorize_depth(ep[k][t], *ranges[c]))
        if f"{c}_rgb" in ep:
            tiles.append(ep[f"{c}_rgb"][t])
    h = max(x.shape[0] for x in tiles)
    tiles = [np.pad(x, ((0, h - x.shape[0]), (0, 2), (0, 0))) for x in tiles]
    row = np.concatenate(tiles, axis=1)
    return row.repeat(scale, 0).repeat(scale, 1)


def write_preview(store, episode: int, out: str, fps: int = 20) -> str:
    """Write episode `episode` of `store` (a simgen.store.Store) to out (.mp4 or .png)."""
    import imageio.v2 as imageio

    cams = list(store.meta["cameras"])
    keys = [
        k
        for k in store.keys()
        if any(k in (f"{c}_depth", f"{c}_rgb") or k.startswith(f"{c}_depth_") for c in cams)
    ]
    ep = store.episode(episode, keys)
    ranges = {}
    for c in cams:
        v = ep[f"{c}_depth"][ep[f"{c}_depth"] > 0]
        ranges[c] = (float(np.percentile(v, 1)), float(np.percentile(v, 99))) if v.size else (0.0, 1.0)
    n = len(ep[f"{cams[0]}_depth"])
    if out.lower().endswith(".mp4"):
        with imageio.get_writer(out, fps=fps, codec="libx264", quality=8, macro_block_size=1) as w:
            for t in range(n):
                w.append_data(frame_panel(ep, cams, t, ranges))
    elif out.lower().endswith(".png"):
        steps = np.linspace(0, n - 1, min(n, 6)).round().astype(int)
        rows = [frame_panel(ep, cams, t, ranges) for t in steps]
        imageio.imwrite(out, np.concatenate([np.pad(r, ((0, 4), (0, 0), (0, 0))) for r in rows], 0))
    else:
        raise ValueError(f"preview output {out!r} must end in .mp4 or .png")
    return out
