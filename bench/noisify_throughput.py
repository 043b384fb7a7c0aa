"""Noisify throughput: `realdiff noisify` (RealD²iff, the default noiser) versus `simgen render`.

For each resolution (128x128 and 640x480), in one run on one machine, both using every core:
  render    depth frames/s of `simgen render --task pick` with the front and wrist cameras, no RGB,
            --workers = all cores, writing included, counted as camera images (2 per control
            step), from the call to its return (process start-up and scene building included);
            also its steady rate from the first finished episode on;
  noisify   depth frames/s of `realdiff noisify` on that store with each noiser (default: the
            default RealD²iff, reald2iff-texture-shift, and the other committed RealD²iff models) and
            the default workers, from the call to its return (process start-up and model loading included);
and their ratio, both timed from call to return (target at 128x128: >= 1.0, the noiser keeps pace
with rendering), and noisify against render's steady rate. This machine's speed drifts by 20 % and
more within minutes, so the whole measurement (a fresh render, then each noiser) runs `--rounds`
times and the table gives the median of each round's figures, with the least and the greatest
ratio in brackets. `--profile` also prints where the noiser's time goes (torch profiler, one batch
at 128x128).

    python bench/noisify_throughput.py [--episodes 100] [--big-episodes 6] [--rounds 3]
                                       [--noiser reald2iff,reald2iff-2step,...] [--profile]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from realdiff.noisify import DEFAULT_NOISER, noisify_store
from simgen.runner import RenderConfig, render_dataset

CAMS = ("front", "wrist")


def measure(
    width: int, height: int, episodes: int, noisers: list[str], tmp: str, round_: int = 0
) -> list[dict]:
    """Render one store, then noisify it with each noiser in turn (each to its own arrays)."""
    path = os.path.join(tmp, f"b{width}x{height}_{round_}.zarr")
    cfg = RenderConfig(
        task="pick",
        episodes=episodes,
        seed=2000,
        cameras=CAMS,
        width=width,
        height=height,
        rgb=False,
        workers=os.cpu_count() or 1,
    )
    t = time.perf_counter()
    r = render_dataset(cfg, path, progress=False)
    render_fps = r["frames_written"] * len(CAMS) / (time.perf_counter() - t)
    steady = r["steady_steps_per_s"]  # None for a single episode: then no steady rate
    steady_fps = steady * len(CAMS) if steady else render_fps
    rows = []
    for i, noiser in enumerate(noisers):
        t = time.perf_counter()
        s = noisify_store(path, noiser=noiser, suffix=f"n{i}", progress=False)
        noisify_fps = s["frames"] * len(CAMS) / (time.perf_counter() - t)
        rows.append(
            {
                "resolution": f"{width}x{height}",
                "noiser": noiser,
                "frames": s["frames"] * len(CAMS),
                "render_fps": render_fps,
                "render_steady_fps": steady_fps,
                "noisify_fps": noisify_fps,
                "ratio": noisify_fps / render_fps,
                "ratio_steady": noisify_fps / steady_fps,
            }
        )
    return rows


def profile(noiser: str) -> None:
    import torch
    from torch.profiler import profile as torch_profile

    from realdiff.sensors import load_noiser

    model = load_noiser(noiser)
    depth = np.random.default_rng(0).uniform(0.6, 1.6, (model.batch, 128, 128)).astype(np.float32)
    K = np.array([[154.5, 0, 63.5], [0, 154.5, 63.5], [0, 0, 1]])
    rngs = lambda: [np.random.default_rng(i) for i in range(len(depth))]  # noqa: E731
    model.noisify_frames(depth, K, rngs())
    with torch_profile() as p:
        model.noisify_frames(depth, K, rngs())
    print(f"\nprofile of one batch of {len(depth)} frames at 128x128 ({torch.get_num_threads()} threads):")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=100, help="pick episodes at 128x128 (default 100)")
    ap.add_argument(
        "--big-episodes", type=int, default=6, help="pick episodes at 640x480 (default 6; 0 skips)"
    )
    ap.add_argument(
        "--noiser",
        default=f"{DEFAULT_NOISER},reald2iff,reald2iff-texture,reald2iff-2step,reald2iff-full",
        help=f"comma-separated noise models, each timed on the same store (default {DEFAULT_NOISER},"
        "reald2iff,reald2iff-texture,reald2iff-2step,reald2iff-full: the default and the other "
        "committed models)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="repeat the whole measurement; medians (default 3)")
    ap.add_argument("--profile", action="store_true", help="print a torch profile of the first noiser")
    args = ap.parse_args()
    noisers = [n.strip() for n in args.noiser.split(",") if n.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (w, h), eps in (((128, 128), args.episodes), ((640, 480), args.big_episodes)):
            for i in range(args.rounds if eps > 0 else 0):
                for r in measure(w, h, eps, noisers, tmp, i):
                    rows.append(r)
                    print(
                        f"round {i + 1}, {r['resolution']}: render {r['render_fps']:.1f} frames/s (steady "
                        f"{r['render_steady_fps']:.1f}), noisify ({r['noiser']}) "
                        f"{r['noisify_fps']:.1f} frames/s, ratio {r['ratio']:.2f} (to steady render "
                        f"{r['ratio_steady']:.2f}; {r['frames']} frames)",
                        flush=True,
                    )
    print(
        f"\n{os.cpu_count()} cores; median of {args.rounds} rounds (least and greatest ratio in brackets).\n"
        "| resolution | noiser | frames | render frames/s (steady) | noisify frames/s | noisify/render "
        "| noisify/steady render |"
    )
    print("|---|---|---|---|---|---|---|")
    for res, noiser in dict.fromkeys((r["resolution"], r["noiser"]) for r in rows):
        g = [r for r in rows if (r["resolution"], r["noiser"]) == (res, noiser)]
        med = {
            k: float(np.median([r[k] for r in g]))
            for k in ("render_fps", "render_steady_fps", "noisify_fps", "ratio", "ratio_steady")
        }
        lo, hi = min(r["ratio"] for r in g), max(r["ratio"] for r in g)
        print(
            f"| {res} | {noiser} | {g[0]['frames']} | {med['render_fps']:.1f} "
            f"({med['render_steady_fps']:.1f}) | {med['noisify_fps']:.1f} | **{med['ratio']:.2f}** "
            f"({lo:.2f}-{hi:.2f}) | {med['ratio_steady']:.2f} |"
        )
    if args.profile:
        profile(noisers[0])


if __name__ == "__main__":
    main()
