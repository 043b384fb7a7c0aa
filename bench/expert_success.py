"""Scripted-expert success rate of each task over many seeds (physics only, no rendering).

    python bench/expert_success.py [--tasks pick,place,...,robosuite:Lift] [--seeds 100]
                                   [--randomize all] [--workers 2]

Prints one line per task: successes / seeds, the 95% Wilson interval, mean episode length and
the failing seeds (to replay with `simgen render --task T --seed S --episodes 1`). Target: at least
90% for every task. Seeds 0..N-1, as `simgen render` uses them.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(k, "1")


def _run(args: tuple[str, str, list[int]]) -> list[tuple[int, bool, int]]:
    from simgen.env import run_episode
    from simgen.randomize import Randomization
    from tasks import make_env

    task, spec, seeds = args
    out = []
    with make_env(task, cameras=(), randomize=Randomization.parse(spec)) as env:
        for s in seeds:
            _, info = run_episode(env, s)
            out.append((s, bool(info["success"]), int(info["length"])))
    return out


def main() -> None:
    from policies.evaluate import wilson_interval
    from tasks import task_names

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(task_names()), help="comma-separated (default: every task)")
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument(
        "--randomize",
        default="",
        help="as `simgen render --randomize` (default: defaults; "
        "robosuite tasks always use robosuite's own randomisation)",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    print(f"expert success over seeds 0..{a.seeds - 1}, randomize={a.randomize or 'defaults'}")
    for task in a.tasks.split(","):
        seeds = list(range(a.seeds))
        parts = [(task, a.randomize, seeds[k :: a.workers]) for k in range(a.workers)]
        with ProcessPoolExecutor(a.workers) as pool:
            rows = sorted(r for part in pool.map(_run, parts) for r in part)
        wins = sum(ok for _, ok, _ in rows)
        lo, hi = wilson_interval(wins, len(rows))
        failed = [s for s, ok, _ in rows if not ok]
        mean_len = sum(n for _, _, n in rows) / len(rows)
        print(
            f"{task:14s} {wins}/{len(rows)} = {100 * wins / len(rows):.0f}%  "
            f"(95% CI {100 * lo:.0f}-{100 * hi:.0f}%)  mean length {mean_len:.0f} steps  "
            f"failed seeds: {failed[:20]}{' ...' if len(failed) > 20 else ''}",
            flush=True,
        )


if __name__ == "__main__":
    main()
