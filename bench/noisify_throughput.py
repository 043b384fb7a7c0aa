"""Noisify throughput: `realdiff noisify` (RealD²iff, the default noiser) versus `simgen render`.

For each resolution (128x128 and 640x480), in one run on one machine, both using every core:
  render    depth frames/s of `simgen render --task pick` with the front and wrist cameras, no RGB,
            --workers = all cores, writing included, counted as camera images (2 per control
            step), from the call to its return (process start-up and scene building included);
            also its steady rate from the first finished episode on;
  noisify   depth frames/s of `realdiff noisify` on that store with each noiser (default: the
            default noiser, reald2iff-texture (realdiff.sensors.DEFAULT_NOISER), then the other
            committed RealD²iff models) and the default workers, from the call to its return
            (process start-up and model loading included);
and their ratios: to render timed from call to return, and to render's steady rate (the target:
>= 1.0 at both resolutions, the noiser keeps pace with rendering). This machine's speed drifts by
20 % and more within minutes, so the whole measurement (a fresh render, then each noiser) runs
`--rounds` times and the table gives the median of each round's figures, with the least and the
greatest ratio in brackets.

`--profile` also prints what bounds the first noiser, on one core (torch at one thread, as each
noisify worker runs) at 128x128 and at 640x480: a frame's CPU time, each stage's share (the
record_function labels reald2iff.* of realdiff/reald2iff), the networks' multiply-accumulates a
frame and the rate their convolutions run at, and torch's operator table of one batch at 128x128.

    python bench/noisify_throughput.py [--episodes 100] [--big-episodes 6] [--rounds 3]
                                       [--noiser reald2iff-texture,reald2iff,...] [--profile]
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
MODELS = ("reald2iff-texture", "reald2iff", "reald2iff-texture-shift", "reald2iff-2step", "reald2iff-full")


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


def network_macs(model, H: int, W: int) -> dict:
    """Multiply-accumulates of one H x W frame in the convolutions of each network of a RealD²iff
    model (all its sampling steps)."""
    import torch

    from realdiff.reald2iff.config import COARSE

    def one_call(net, h, w, cin):
        total = []

        def hook(mod, inp, out):
            if isinstance(mod, torch.nn.Conv2d):
                total.append(out.numel() * mod.weight[0].numel())
            elif isinstance(mod, torch.nn.ConvTranspose2d):
                total.append(inp[0].numel() * mod.weight[0].numel())

        hooks = [m.register_forward_hook(hook) for m in net.modules()]
        with torch.inference_mode():
            net(torch.zeros(1, 2, h, w), torch.zeros(1, cin, h, w), torch.ones(1))
        for x in hooks:
            x.remove()
        return sum(total)

    cfg, out = model.cfg, {}
    if model.coarse is not None:
        out["coarse"] = cfg.coarse_steps * one_call(
            model.coarse, H // COARSE, W // COARSE, cfg.coarse.in_ch - 2
        )
    if model.fine is not None:
        out["fine"] = cfg.fine_steps * one_call(model.fine, H, W, cfg.fine.in_ch - 2)
    return out


def profile(noiser: str) -> None:
    """What bounds `noiser` (see the docstring): one core, 128x128 and 640x480."""
    import torch
    from torch.profiler import profile as torch_profile

    from realdiff.sensors import load_noiser

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for H, W in ((128, 128), (480, 640)):
            m = load_noiser(noiser)
            n = max(1, getattr(m, "batch", 32) * 128 * 128 // (H * W)) * 2
            yy, xx = np.mgrid[0:H, 0:W]  # a floor in front of two boxes: planes, edges, a hole
            depth = np.stack([0.9 + 0.8 * yy / H + 0.3 * (((xx + 7 * i) // (W // 4)) % 2) for i in range(n)])
            depth = depth.astype(np.float32)
            depth[:, : H // 12, W // 3 : W // 2] = 0
            K = np.array([[W * 1.207, 0, (W - 1) / 2], [0, W * 1.207, (H - 1) / 2], [0, 0, 1]])
            m.noisify_frames(depth, K, [np.random.default_rng(i) for i in range(n)])
            times = []
            for _ in range(3):
                t = time.process_time()
                m.noisify_frames(depth, K, [np.random.default_rng(i) for i in range(n)])
                times.append(time.process_time() - t)
            frame = min(times) / len(depth)
            print(
                f"\n{noiser} at {W}x{H}, one core: {frame * 1e3:.2f} ms of CPU a frame (least of 3 runs of "
                f"{len(depth)} frames), at most {(os.cpu_count() or 1) / frame:.0f} frames/s on "
                f"{os.cpu_count()} cores before reading and writing the store"
            )
            if not hasattr(m, "model"):  # not RealD²iff: its frame time only
                continue
            with torch_profile() as p:
                m.noisify_frames(depth, K, [np.random.default_rng(i) for i in range(n)])
            ev = p.key_averages()
            total = sum(e.self_cpu_time_total for e in ev)
            stages = {e.key: e.cpu_time_total for e in ev if e.key.startswith("reald2iff.")}
            conv = sum(e.self_cpu_time_total for e in ev if "convolution" in e.key)
            print("  stage       share of the CPU time (under the profiler)")
            for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
                print(f"  {k[10:]:<11} {100 * v / total:5.1f} %")
            macs = network_macs(m.model, -(-H // 32) * 32, -(-W // 32) * 32)
            per_frame = conv / 1e6 / len(depth)
            print(
                f"  convolutions (oneDNN, {'bfloat16' if m.bf16 else 'float32'}): {100 * conv / total:.0f} % "
                f"of it; the networks do {sum(macs.values()) / 1e6:.0f} M multiply-accumulates a frame "
                f"({', '.join(f'{k} {v / 1e6:.0f} M' for k, v in macs.items())}), "
                f"{sum(macs.values()) / per_frame / 1e9:.0f} G/s in the convolutions"
            )
            if (H, W) == (128, 128):
                print(ev.table(sort_by="self_cpu_time_total", row_limit=12))
    finally:
        torch.set_num_threads(saved)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=100, help="pick episodes at 128x128 (default 100)")
    ap.add_argument(
        "--big-episodes", type=int, default=6, help="pick episodes at 640x480 (default 6; 0 skips)"
    )
    ap.add_argument(
        "--noiser",
        default=",".join(dict.fromkeys([DEFAULT_NOISER, *MODELS])),
        help="comma-separated noise models, each timed on the same store (default: the default "
        f"noiser, {DEFAULT_NOISER}, then the other committed RealD²iff models)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="repeat the whole measurement; medians (default 3)")
    ap.add_argument("--profile", action="store_true", help="print what bounds the first noiser, one core")
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
