"""Episodes per hour of `simgen batch` for one task: 1 and 2 local workers and Ray on 2 CPUs,
measured side by side in one run. Target: at least 1.8x from 1 to 2 local workers.

    python bench/batch_scaling.py [--task pick] [--episodes 40] [--shard 5] [--resolution 128x128]

Each setting renders the same seeds into a fresh folder (a job file in a temporary directory).
Rates count rendering only (from the first shard submitted to the last one finished); the merge
into one store and Ray's start-up are reported apart. Ray's scheduling cost per episode is its
render time minus the local backend's with the same 2 workers, divided by the episodes. Needs the
machine otherwise idle: the load average is printed first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simgen.batch import load_job, run_job  # noqa: E402

JOB = """out = "out"
shard_episodes = {shard}
[[task]]
task = "{task}"
episodes = {episodes}
resolution = "{res}"
cameras = ["front", "wrist"]
rgb = true
"""


def measure(folder: Path, text: str, **overrides) -> dict:
    folder.mkdir(parents=True)
    (folder / "job.toml").write_text(text)
    t0 = time.perf_counter()
    s = run_job(load_job(folder / "job.toml", **overrides), progress=False)
    s["total_s"] = time.perf_counter() - t0
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="pick")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--shard", type=int, default=5, help="episodes per shard")
    ap.add_argument("--resolution", default="128x128")
    ap.add_argument("--skip-ray", action="store_true")
    a = ap.parse_args()
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; task {a.task}, "
        f"{a.episodes} episodes at {a.resolution}, two cameras, depth + RGB, shards of {a.shard}",
        flush=True,
    )
    text = JOB.format(task=a.task, episodes=a.episodes, shard=a.shard, res=a.resolution)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, kw in [
            ("local, 1 worker", dict(backend="local", workers=1)),
            ("local, 2 workers", dict(backend="local", workers=2)),
        ]:
            rows.append((label, measure(tmp / label.replace(", ", "_").replace(" ", ""), text, **kw), None))
            print(f"  {label}: done", flush=True)
        if not a.skip_ray:
            import ray

            os.environ.setdefault("RAY_worker_niceness", "0")  # as simgen.batch does for a local Ray
            t0 = time.perf_counter()
            from plumbing.procs import WORKER_ENV

            ray.init(
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=128 << 20,
                log_to_driver=False,
                logging_level="ERROR",
                runtime_env={"env_vars": dict(WORKER_ENV)},
            )
            startup = time.perf_counter() - t0
            try:
                rows.append(("ray, 2 CPUs", measure(tmp / "ray", text, backend="ray", workers=2), startup))
            finally:
                ray.shutdown()
            print("  ray: done", flush=True)
    print()
    print("| setting | render wall (s) | episodes/hour | merge + overhead (s) | Ray start-up (s) |")
    print("|---|---|---|---|---|")
    for label, s, startup in rows:
        print(
            f"| {label} | {s['render_wall_s']:.1f} | {s['episodes_per_hour']:.0f} | "
            f"{s['total_s'] - s['render_wall_s']:.1f} | {'' if startup is None else f'{startup:.1f}'} |"
        )
    one, two = rows[0][1], rows[1][1]
    print(
        f"\nscaling 1 -> 2 local workers: {two['episodes_per_hour'] / one['episodes_per_hour']:.2f}x "
        "(target >= 1.8x)"
    )
    if len(rows) == 3:
        ray_s = rows[2][1]
        per_ep = (ray_s["render_wall_s"] - two["render_wall_s"]) / a.episodes
        print(
            f"Ray vs local, 2 workers each: {ray_s['episodes_per_hour'] / two['episodes_per_hour']:.2f}x "
            "the rate; "
            f"scheduling cost {1000 * per_ep:+.0f} ms per episode "
            f"({100 * per_ep * two['episodes_per_hour'] / 3600:+.1f}% of an episode), "
            f"plus {rows[2][2]:.1f} s to start Ray"
        )


if __name__ == "__main__":
    main()
