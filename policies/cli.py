"""`policies`: train a diffusion policy on a store's depth, and evaluate it in closed loop.

    policies train STORE --task pick --depth-key front_depth_noisy [--cameras front,wrist] --out RUN [--steps N]
    policies eval RUN --task pick --episodes 50 --sensor SENSOR [--seed S]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")


def _cameras(text: str | None):
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def cmd_train(a) -> None:
    from policies.model import PolicyConfig
    from policies.train import TrainConfig, train

    cfg = TrainConfig(steps=a.steps, batch=a.batch, lr=a.lr, seed=a.seed, max_episodes=a.max_episodes,
                      threads=a.threads, ckpt_every=a.ckpt_every, cache_mb=a.cache_mb)
    r = train(a.store, a.out, a.depth_key, _cameras(a.cameras), a.task, PolicyConfig(), cfg, progress=not a.quiet)
    print(f"{r['out']}: trained {r['steps']} steps on {r['episodes']} episodes ({r['sequences']} sequences); "
          f"policy in {r['out']}/policy.pt")


def cmd_eval(a) -> None:
    from policies.evaluate import evaluate

    from realdiff.noise_models import parse_range_scale

    r = evaluate(a.run, a.task, a.episodes, a.sensor, a.seed, a.workers, a.videos, a.out, a.max_steps,
                 progress=not a.quiet, range_scale=parse_range_scale(a.range_scale))
    lo, hi = r["ci95"]
    print(f"{a.task} under {a.sensor}: success {r['successes']}/{r['episodes']} = {100 * r['success_rate']:.1f}% "
          f"(95% Wilson interval {100 * lo:.1f}-{100 * hi:.1f}%); results and videos in {r['out']}")


def main(argv=None) -> None:
    from policies.evaluate import DEFAULT_EVAL_SEED
    from policies.train import TrainConfig

    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="policies", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a diffusion policy on a simgen store")
    t.add_argument("store", help="simgen store with demonstrations (and noisified depth)")
    t.add_argument("--task", required=True, help="the store's task (checked)")
    t.add_argument("--depth-key", required=True,
                   help="depth array of the first camera, e.g. front_depth or front_depth_noisy; other "
                        "cameras use the same variant. Several, comma-separated (copies noisified with "
                        "other seeds): each training sequence reads one of them at random")
    t.add_argument("--cameras", default=None, help="comma-separated cameras (default: the depth key's)")
    t.add_argument("--out", required=True, help="run folder (re-running resumes it)")
    t.add_argument("--steps", type=int, default=d.steps, help=f"gradient steps (default {d.steps})")
    t.add_argument("--batch", type=int, default=d.batch, help=f"batch size (default {d.batch})")
    t.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    t.add_argument("--max-episodes", type=int, default=None, help="train on the first N episodes only")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="steps between checkpoints")
    t.add_argument("--cache-mb", type=int, default=d.cache_mb,
                   help=f"MB of depth frames held in memory (default {d.cache_mb}; below the store's size, slow)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="closed-loop success rate of a trained policy under a sensor")
    e.add_argument("run", help="run folder from `policies train`")
    e.add_argument("--task", required=True, help="task to roll out (must be the run's)")
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--sensor", default="clean",
                   help="clean, noiser:NAME (e.g. noiser:structured-light, noiser:reald2iff) or "
                        "module:function (f(depth, K, rng) -> noisy depth)")
    e.add_argument("--range-scale", default=None, metavar="CAM=S[,CAM=S]",
                   help="give these cameras the sensor built S times smaller (depth errors and range "
                        "times S), e.g. wrist=0.1 for a short-range wrist camera")
    e.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEED,
                   help=f"episode i uses task seed SEED + i (default {DEFAULT_EVAL_SEED})")
    e.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    e.add_argument("--max-steps", type=int, default=None, help="control steps per episode (default: the task's)")
    e.add_argument("--videos", type=int, default=3, help="episodes written as MP4 (default 3)")
    e.add_argument("--out", default=None, help="folder for results.json and videos "
                                               "(default RUN/eval/TASK_SENSOR)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_eval)
    a = ap.parse_args(argv)
    try:
        a.func(a)
    except (ValueError, OSError) as err:
        print(f"policies {a.cmd}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"policies {a.cmd}: interrupted (a re-run resumes)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
