"""`simgen batch job.toml`: a multi-task dataset from one job file, on local processes or Ray.

A job lists render settings per task (tasks x episodes x seeds x cameras x resolution x
randomisation). Each task's seeds are cut into shards of `shard_episodes`; a shard is the unit of
work and of retry. A worker renders a shard into `<out>/<name>.shards/NNNNN.zarr.partial` (an
ordinary simgen store, committed every ~commit_frames frames) and renames it to
`NNNNN.zarr` when complete, so a shard folder without `.partial` is always whole. When all of a
task's shards exist they are merged, in seed order, into one store per task, `<out>/<name>.zarr`,
identical to what `simgen render` makes with the same settings; the shards are then deleted.

Re-running a job skips finished shards, resumes partial ones where they stopped, and finishes the
merge: a killed job is finished by running it again, and gives the same stores as an
uninterrupted run. A shard whose worker raises or dies is retried up to `retries` times; a shard
only ever touches its own folder, so a crash cannot corrupt another.

Backends: `local` (a process pool, all cores by default) and `ray` (Ray Core: `address="auto"`
joins a running cluster, otherwise a local Ray starts with `workers` CPUs). On a multi-node
cluster `out` must be on storage every node sees (NFS and the like), and the project installed in
every node's Python environment.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tomllib
import zarr
from tqdm import tqdm

from plumbing.backends import BACKENDS, ray_session
from plumbing.procs import WORKER_ENV, spawn_pool
from simgen.cameras import parse_resolution
from simgen.randomize import Randomization
from simgen.runner import RenderConfig, _record, store_attrs
from simgen.store import (
    SCHEMA,
    StoreError,
    Writer,
    check_store,
    committed_episode_ends,
    depth_to_stored,
    is_store,
    source_arrays,
)

JOB_KEYS = {
    "out",
    "backend",
    "workers",
    "address",
    "shard_episodes",
    "retries",
    "keep_shards",
    "defaults",
    "task",
}
TASK_KEYS = {
    "name",
    "task",
    "episodes",
    "seed",
    "cameras",
    "resolution",
    "rgb",
    "seg",
    "mesh_detail",
    "randomize",
}


class JobError(ValueError):
    """A job file mistake or a job that could not finish: printed as one line."""


@dataclass(frozen=True)
class TaskJob:
    """One store of the job: `name` (the store is `<out>/<name>.zarr`) and its render settings."""

    name: str
    render: RenderConfig


@dataclass(frozen=True)
class Job:
    out: Path
    tasks: tuple[TaskJob, ...]
    backend: str = "local"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    address: str | None = None  # Ray: "auto" or a cluster address; None starts a local Ray
    shard_episodes: int = 10
    retries: int = 2
    keep_shards: bool = False

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise JobError(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.workers < 1 or self.shard_episodes < 1 or self.retries < 0:
            raise JobError("workers and shard_episodes must be at least 1, retries at least 0")
        if self.address is not None and self.backend != "ray":
            raise JobError('address is a Ray setting: set backend = "ray"')
        names = [t.name for t in self.tasks]
        if not names:
            raise JobError("the job lists no [[task]]")
        if len(set(names)) != len(names):
            raise JobError(f"two [[task]] entries share a store name: {names}; give each a distinct name")

    def shards(self, t: TaskJob) -> list[tuple[int, RenderConfig]]:
        """(index, settings) of each shard of task t: a RenderConfig covering its seeds."""
        n, k = t.render.episodes, self.shard_episodes
        return [
            (i, replace(t.render, seed=t.render.seed + i * k, episodes=min(k, n - i * k), workers=1))
            for i in range((n + k - 1) // k)
        ]

    def store_path(self, t: TaskJob) -> Path:
        return self.out / f"{t.name}.zarr"

    def shard_dir(self, t: TaskJob) -> Path:
        return self.out / f"{t.name}.shards"


def load_job(path: str | Path, **overrides) -> Job:
    """Parse and validate a job file (TOML); `overrides` (backend, workers, address) win over it.
    Relative `out` is taken from the job file's folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise JobError(f"{path}: no such job file") from None
    except tomllib.TOMLDecodeError as e:
        raise JobError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(raw) - JOB_KEYS)
    if unknown:
        raise JobError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(JOB_KEYS))}"
        )
    defaults = raw.get("defaults", {})
    entries = raw.get("task", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise JobError(f"{path}: tasks are given as [[task]] tables")
    tasks = []
    for i, entry in enumerate(entries):
        merged = {**defaults, **entry}
        rnd = {**defaults.get("randomize", {}), **entry.get("randomize", {})}
        try:
            tasks.append(_task_job(merged, rnd))
        except (ValueError, TypeError) as e:
            raise JobError(
                f"{path}: [[task]] #{i + 1} ({entry.get('name', entry.get('task', '?'))}): {e}"
            ) from None
    out = Path(raw.get("out", "out/job"))
    if not out.is_absolute():
        out = Path(os.path.normpath(path.parent / out))
    settings = {
        k: raw[k]
        for k in ("backend", "workers", "address", "shard_episodes", "retries", "keep_shards")
        if k in raw
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Job(out=out, tasks=tuple(tasks), **settings)
    except TypeError as e:
        raise JobError(f"{path}: {e}") from None


def _task_job(d: dict, randomize: dict) -> TaskJob:
    unknown = sorted(set(d) - TASK_KEYS)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(TASK_KEYS))}")
    for k in ("task", "episodes"):
        if k not in d:
            raise ValueError(f"`{k}` is required")
    w, h = parse_resolution(str(d.get("resolution", "128x128")))
    cams = d.get("cameras", ["front", "wrist"])
    if isinstance(cams, str):
        cams = [c.strip() for c in cams.split(",") if c.strip()]
    cfg = RenderConfig(
        task=d["task"],
        episodes=int(d["episodes"]),
        seed=int(d.get("seed", 0)),
        cameras=tuple(cams),
        width=w,
        height=h,
        rgb=bool(d.get("rgb", True)),
        seg=bool(d.get("seg", False)),
        mesh_detail=float(d.get("mesh_detail", RenderConfig.mesh_detail)),
        randomize=Randomization.from_dict(randomize),
    )
    name = str(d.get("name", d["task"])).replace(":", "_")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"store name {name!r}: use letters, digits, - and _")
    return TaskJob(name, cfg)


# ---------------------------------------------------------------------------------------------
# Worker side: render one shard (runs in a pool process or a Ray worker).

_ENV: dict = {}  # the worker's environment, reused by consecutive shards with the same settings


def _env_for(cfg: RenderConfig):
    """(environment, store attributes) for cfg's settings, built once per worker process."""
    key = json.dumps({**cfg.identity(), "seed": 0}, sort_keys=True)
    if _ENV.get("key") != key:
        _close_env()
        _ENV.update(env=cfg.make_env(), attrs=store_attrs(cfg), key=key)
        # Registered after the renderer exists, so it runs before EGL's own exit handler.
        atexit.register(_close_env)
    return _ENV["env"], _ENV["attrs"]


def _close_env() -> None:
    if _ENV.get("env") is not None:
        _ENV.pop("env").close()
        _ENV.clear()


def render_shard(cfg: RenderConfig, shard: str) -> dict:
    """Render cfg's episodes into `shard` (resuming its .partial folder), then publish it by a
    rename. Returns {"episodes", "successes", "frames"}. Safe to call again after any crash."""
    from simgen.env import run_episode

    shard = Path(shard)
    partial = shard.with_name(shard.name + ".partial")
    if not is_store(shard):
        env, attrs = _env_for(cfg)
        with Writer(partial, attrs, cfg.identity()) as w:
            batch: list = []
            for i in range(w.n_episodes, cfg.episodes):
                arrays, info = run_episode(env, cfg.seed + i)
                for k in arrays:
                    if k.endswith("_depth"):
                        arrays[k] = depth_to_stored(arrays[k])
                batch.append((arrays, _record(info)))
                if sum(len(a["action"]) for a, _ in batch) >= cfg.commit_frames:
                    w.append_many(batch)
                    batch = []
            w.append_many(batch)
        os.replace(partial, shard)
    meta = check_store(shard).attrs[SCHEMA]
    eps = meta["episodes"]
    return {
        "episodes": len(eps),
        "successes": sum(e["success"] for e in eps),
        "frames": sum(e["length"] for e in eps),
    }


def _episodes_in(store: Path) -> int:
    """Committed episodes of a (possibly partial) store; 0 if unreadable."""
    try:
        return len(committed_episode_ends(zarr.open_group(store, mode="r")))
    except Exception:  # being created or renamed right now
        return 0


# ---------------------------------------------------------------------------------------------
# Driver side.


def run_job(job: Job, progress: bool = True) -> dict:
    """Render every unfinished shard of the job, then merge each task's shards into its store.
    Returns a summary; raises JobError naming a shard that failed after its retries (finished
    shards are kept: run the job again to retry)."""
    job.out.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[TaskJob, int, RenderConfig, Path]] = []
    total = done_before = 0
    for t in job.tasks:
        total += t.render.episodes
        merged = _merged(job, t)
        if merged >= t.render.episodes:
            done_before += t.render.episodes
            continue
        _check_plan(job.shard_dir(t), job.shard_episodes)
        for i, cfg in job.shards(t):
            path = job.shard_dir(t) / f"{i:05d}.zarr"
            if i * job.shard_episodes + cfg.episodes <= merged or is_store(path):
                done_before += cfg.episodes
            else:
                todo.append((t, i, cfg, path))
    bar = tqdm(
        total=total, initial=done_before, unit="ep", desc="batch", disable=not progress, dynamic_ncols=True
    )
    t0 = time.perf_counter()
    rendered = {"episodes": 0, "successes": 0, "frames": 0}
    failures: list[str] = []

    def on_done(result: dict) -> None:
        for k in rendered:
            rendered[k] += result[k]

    def show(running: list[Path]) -> None:
        """Episodes done = finished shards + episodes committed in the shards still running."""
        n = rendered["episodes"] + sum(_episodes_in(p.with_name(p.name + ".partial")) for p in running)
        bar.n = done_before + n
        bar.set_postfix_str(
            f"{n / max(time.perf_counter() - t0, 1e-9) * 3600:.0f} ep/h"
            + (f", {len(failures)} shards failed" if failures else "")
        )
        bar.refresh()

    try:
        if todo:
            (_run_ray if job.backend == "ray" else _run_local)(job, todo, on_done, failures, show)
        show([])
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    stores = {}
    for t in job.tasks:
        if all(
            i * job.shard_episodes + cfg.episodes <= _merged(job, t)
            or is_store(job.shard_dir(t) / f"{i:05d}.zarr")
            for i, cfg in job.shards(t)
        ):
            stores[t.name] = merge_task(job, t)
    if failures:
        raise JobError(
            f"{len(failures)} shard(s) failed after {job.retries} retries ({failures[0]}); "
            "finished shards are kept: run the job again to retry"
        )
    return {
        "stores": stores,
        "rendered": rendered,
        "render_wall_s": wall,
        "episodes_per_hour": rendered["episodes"] / max(wall, 1e-9) * 3600,
    }


def _merged(job: Job, t: TaskJob) -> int:
    """Episodes already in the task's merged store."""
    return _episodes_in(job.store_path(t)) if is_store(job.store_path(t)) else 0


def _check_plan(sdir: Path, shard_episodes: int) -> None:
    """Shards of one task must keep their size across re-runs (their seeds depend on it)."""
    sdir.mkdir(parents=True, exist_ok=True)
    plan = sdir / "plan.json"
    if plan.exists():
        old = json.loads(plan.read_text())["shard_episodes"]
        if old != shard_episodes:
            raise JobError(
                f"{sdir}: shards were cut at {old} episodes, the job now says "
                f"{shard_episodes}; restore shard_episodes or delete the folder"
            )
    else:
        tmp = plan.with_suffix(".tmp")
        tmp.write_text(json.dumps({"shard_episodes": shard_episodes}))
        os.replace(tmp, plan)


def _run_local(job: Job, todo, on_done, failures, show) -> None:
    """Shards on a pool of spawned processes. A worker that raises or dies (which breaks the
    pool: every shard it was running fails) costs those shards one attempt; the pool is
    rebuilt for the retries."""
    attempts = [0] * len(todo)
    pending = list(range(len(todo)))
    while pending:
        with spawn_pool(min(job.workers, len(pending)), env=WORKER_ENV) as pool:
            futures = {pool.submit(render_shard, todo[j][2], str(todo[j][3])): j for j in pending}
            pending = []
            while futures:
                done, _ = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
                for f in done:
                    j = futures.pop(f)
                    try:
                        on_done(f.result())
                    except Exception as e:
                        why = (
                            "its worker died"
                            if isinstance(e, BrokenProcessPool)
                            else f"{type(e).__name__}: {e}"
                        )
                        attempts[j] += 1
                        if attempts[j] > job.retries:
                            failures.append(f"{todo[j][0].name} shard {todo[j][1]}: {why}")
                        else:
                            pending.append(j)
                show([todo[j][3] for j in futures.values()])


def _run_ray(job: Job, todo, on_done, failures, show) -> None:
    """Shards as Ray tasks (one CPU each). Ray retries a task whose worker died or raised."""
    with ray_session(job.address, job.workers) as ray:
        remote = ray.remote(num_cpus=1, max_retries=job.retries, retry_exceptions=True)(render_shard)
        refs = {remote.remote(cfg, str(path)): item for item in todo for (_, _, cfg, path) in [item]}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=1.0, fetch_local=True)
            for r in done:
                item = refs.pop(r)
                try:
                    on_done(ray.get(r))
                except Exception as e:  # RayTaskError / WorkerCrashedError after the retries
                    failures.append(
                        f"{item[0].name} shard {item[1]}: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[-1]}"
                    )
            show([p for (_, _, _, p) in refs.values()])


def merge_task(job: Job, t: TaskJob) -> dict:
    """Append the task's shards, in seed order, to `<out>/<name>.zarr` (resuming a merge that was
    cut short), then delete the shards unless keep_shards. Returns the store's summary."""
    cfg = t.render
    out = job.store_path(t)
    with Writer(out, store_attrs(cfg), cfg.identity()) as w:
        for i, scfg in job.shards(t):
            first = i * job.shard_episodes
            if first + scfg.episodes <= w.n_episodes:
                continue  # merged earlier
            shard = job.shard_dir(t) / f"{i:05d}.zarr"
            root = check_store(shard)
            ends = committed_episode_ends(root)
            starts = np.concatenate([[0], ends[:-1]])
            records = root.attrs[SCHEMA]["episodes"]
            arrays = source_arrays(root)
            j0 = w.n_episodes - first  # episodes of this shard already in the store
            lo, hi = int(starts[j0]), int(ends[-1])
            data = {k: a[lo:hi] for k, a in arrays.items()}  # stored units: depth stays uint16
            eps = []
            for j in range(j0, len(ends)):
                a, b = int(starts[j]) - lo, int(ends[j]) - lo
                eps.append(({k: v[a:b] for k, v in data.items()}, records[j]))
            w.append_many(eps)
        n = w.n_episodes
    if n < cfg.episodes:
        raise StoreError(f"{out}: merged {n} of {cfg.episodes} episodes")
    if not job.keep_shards and job.shard_dir(t).exists():
        shutil.rmtree(job.shard_dir(t))
    eps = check_store(out).attrs[SCHEMA]["episodes"]
    return {"path": str(out), "episodes": len(eps), "successes": sum(e["success"] for e in eps)}
