"""`policies`: train a diffusion policy on a store's depth, and evaluate it in closed loop.

policies train STORE --task pick --depth-key front_depth_noisy [--cameras front,wrist] --out RUN [--steps N]
policies eval RUN --task pick --episodes 50 --sensor SENSOR [--seed S]
"""

from __future__ import annotations

import argparse

from plumbing.cli import Parser, given, main_of, option, quiet
from policies.train import TrainConfig


def _cameras(text: str | None):
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def cmd_train(a) -> int:
    from policies.model import PolicyConfig
    from policies.train import train

    r = train(
        a.store,
        a.out,
        a.depth_key,
        _cameras(a.cameras),
        a.task,
        PolicyConfig(),
        TrainConfig(**given(a, TrainConfig)),
        progress=not a.quiet,
    )
    print(
        f"{r['out']}: trained {r['steps']} steps on {r['episodes']} episodes ({r['sequences']} sequences); "
        f"policy in {r['out']}/policy.pt"
    )
    return 0


def cmd_eval(a) -> int:
    from policies.evaluate import evaluate
    from realdiff.sensors import parse_range_scale

    r = evaluate(
        a.run,
        a.task,
        a.episodes,
        a.sensor,
        a.seed,
        a.workers,
        a.videos,
        a.out,
        a.max_steps,
        progress=not a.quiet,
        range_scale=parse_range_scale(a.range_scale),
    )
    lo, hi = r["ci95"]
    print(
        f"{a.task} under {a.sensor}: success {r['successes']}/{r['episodes']} = "
        f"{100 * r['success_rate']:.1f}% "
        f"(95% Wilson interval {100 * lo:.1f}-{100 * hi:.1f}%); results and videos in {r['out']}"
    )
    return 0


def build_parser() -> Parser:
    from policies.evaluate import evaluate
    from realdiff.cli import RANGE_SCALE_HELP

    ap = Parser(prog="policies", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    t = sub.add_parser("train", help="train a diffusion policy on a simgen store")
    t.add_argument("store", help="simgen store with demonstrations (and noisified depth)")
    t.add_argument("--task", required=True, help="the store's task (checked)")
    t.add_argument(
        "--depth-key",
        required=True,
        help="depth array of the first camera, e.g. front_depth or front_depth_noisy; other "
        "cameras use the same variant. Several, comma-separated (copies noisified with "
        "other seeds): each training sequence reads one of them at random",
    )
    t.add_argument("--cameras", default=None, help="comma-separated cameras (default: the depth key's)")
    t.add_argument("--out", required=True, help="run folder (re-running resumes it)")
    option(t, TrainConfig, "steps", "gradient steps")
    option(t, TrainConfig, "batch", "batch size")
    option(t, TrainConfig, "lr", "peak learning rate")
    option(t, TrainConfig, "max_episodes", "train on the first N episodes only", type=int)
    option(t, TrainConfig, "seed", "seed")
    option(t, TrainConfig, "ckpt_every", "steps between checkpoints")
    option(t, TrainConfig, "cache_mb", "MB of depth frames held in memory (below the store's size: slow)")
    option(t, TrainConfig, "threads", "torch threads (none: all cores)", type=int)
    quiet(t)
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="closed-loop success rate of a trained policy under a sensor")
    e.add_argument("run", help="run folder from `policies train`")
    e.add_argument("--task", required=True, help="task to roll out (must be the run's)")
    option(e, evaluate, "episodes", "episodes")
    option(
        e,
        evaluate,
        "sensor",
        "clean, noiser:NAME (e.g. noiser:structured-light, noiser:reald2iff) or "
        "module:function (f(depth, K, rng) -> noisy depth)",
    )
    e.add_argument("--range-scale", default=None, metavar="CAM=S[,CAM=S]", help=RANGE_SCALE_HELP)
    option(e, evaluate, "seed", "episode i uses task seed SEED + i")
    option(e, evaluate, "workers", "processes (none: all cores)", type=int)
    option(e, evaluate, "max_steps", "control steps per episode (none: the task's)", type=int)
    option(e, evaluate, "videos", "episodes written as MP4")
    option(e, evaluate, "out", "folder for results.json and videos (none: RUN/eval/TASK_SENSOR)", type=str)
    quiet(e)
    e.set_defaults(func=cmd_eval)
    return ap


main = main_of(build_parser)
