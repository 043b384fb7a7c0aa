"""`simgen render`: roll out a task's expert for many seeds in worker processes and append the
episodes to a store, resuming wherever a previous run stopped."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import mujoco
from tqdm import tqdm

import simgen
from plumbing.procs import WORKER_ENV, WorkerFailed, child_environment, exit_when_orphaned
from simgen.controller import ACTION_DIM
from simgen.env import CONTROL_HZ, Env, run_episode
from simgen.randomize import Randomization
from simgen.scene import DEFAULT_MESH_DETAIL, FIRST_OBJECT_SEGMENT, SEGMENTS
from simgen.store import DEPTH_UNIT_M, Writer, depth_to_stored
from tasks import get_task, make_env

if TYPE_CHECKING:
    from simgen.robosuite_env import RobosuiteEnv


FLUSH_BYTES = 256 << 20
RUN_ONLY = ("episodes", "workers", "commit_frames")  # how many and how fast: not part of a dataset's identity


@dataclass(frozen=True)
class RenderConfig:
    """Everything that defines a rendered dataset. Episode i uses seed `seed + i`."""

    task: str
    episodes: int
    seed: int = 0
    cameras: tuple[str, ...] = ("front", "wrist")
    width: int = 128
    height: int = 128
    rgb: bool = True
    seg: bool = False
    workers: int = 1
    mesh_detail: float = DEFAULT_MESH_DETAIL
    commit_frames: int = 256  # episodes are committed in batches of about this many frames
    randomize: Randomization = Randomization()

    def __post_init__(self):
        if not isinstance(self.randomize, Randomization):
            raise ValueError("randomize must be a Randomization")
        # An unknown task, camera or resolution, or a randomisation switch the task cannot honour.
        get_task(self.task, self.randomize).check(self.cameras, self.width, self.height)
        if self.episodes < 1:
            raise ValueError("--episodes must be at least 1")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if not 0.0 < self.mesh_detail <= 1.0:
            raise ValueError("mesh_detail must be in (0, 1]")
        if self.commit_frames < 1:
            raise ValueError("--commit-frames must be at least 1")
        if self.seed < 0:
            raise ValueError("--seed must be non-negative")

    def identity(self) -> dict:
        """The settings a store is tied to: re-running with these resumes it."""
        d = asdict(self)
        for k in RUN_ONLY:
            d.pop(k)
        d["cameras"] = list(self.cameras)
        return d

    def make_env(self) -> Env | RobosuiteEnv:
        return make_env(
            self.task,
            self.cameras,
            self.width,
            self.height,
            rgb=self.rgb,
            seg=self.seg,
            mesh_detail=self.mesh_detail,
            randomize=self.randomize,
        )


def store_attrs(cfg: RenderConfig) -> dict:
    """Root attributes describing the dataset (everything but per-episode records); the task
    describes itself and its cameras (a robosuite task adds a `robosuite` section)."""
    info = get_task(cfg.task).describe(cfg.cameras, cfg.width, cfg.height)
    attrs = {
        "task": cfg.task,
        "task_description": info["description"],
        "object_bodies": info["object_bodies"],
        "engine": {"simgen": simgen.__version__, "mujoco": mujoco.__version__, **info["engine"]},
        "control_hz": CONTROL_HZ,
        "physics_dt": info["physics_dt"],
        "cameras": info["cameras"],
        "depth": {
            "dtype": "uint16",
            "unit_m": DEPTH_UNIT_M,
            "no_reading": 0,
            "convention": "z-depth along the optical axis, not ray length",
        },
        "action": {
            "dim": ACTION_DIM,
            "layout": "eef target position xyz (m, world), first two "
            "columns of the target rotation matrix (6), gripper 0 open .. 1 closed",
        },
        "seed_rule": "episode i of a run with --seed S uses seed S + i",
        **info["extra_attrs"],
    }
    if cfg.seg:
        segs = dict(SEGMENTS)
        segs.update({FIRST_OBJECT_SEGMENT + i: b for i, b in enumerate(info["segment_bodies"])})
        attrs["segments"] = {str(k): v for k, v in segs.items()}
    return attrs


def _render_one(env: Env, seed: int):
    arrays, info = run_episode(env, seed)
    for k in arrays:  # quantise here: half the bytes to send, and the writer's CPU is scarcer
        if k.endswith("_depth"):
            arrays[k] = depth_to_stored(arrays[k])
    return arrays, info


def _worker_main(cfg: RenderConfig, seeds: list[int], results, parent: int) -> None:
    """Render `seeds` in order and put ('ok', seed, (arrays, info)) on `results`; on failure put
    ('error', seed, message). Exits as soon as the parent process dies."""
    exit_when_orphaned(parent)
    seed = None
    try:
        with cfg.make_env() as env:
            for seed in seeds:
                # mp.Queue sends from a background thread: rendering goes on meanwhile.
                results.put(("ok", seed, _render_one(env, seed)))
    except BaseException as e:  # report, don't hang the parent
        results.put(("error", seed, f"{type(e).__name__}: {e}"))


def render_episodes(cfg: RenderConfig, seeds: list[int]):
    """Yield (arrays, info) for `seeds`, in seed order, rendered by cfg.workers processes.

    Worker k renders seeds[k::workers]; results are put back in order here, so the output does
    not depend on the number of workers. A worker that fails or dies raises WorkerFailed."""
    n = max(1, min(cfg.workers, len(seeds)))
    ctx = mp.get_context("spawn")  # GL contexts do not survive fork
    results = ctx.Queue(maxsize=2 * n)  # bounds the episodes waiting in memory
    with child_environment(WORKER_ENV):
        procs = [
            ctx.Process(target=_worker_main, args=(cfg, seeds[k::n], results, os.getpid()), daemon=True)
            for k in range(n)
        ]
        for p in procs:
            p.start()
    index = {s: i for i, s in enumerate(seeds)}
    waiting, nxt = {}, 0
    try:
        while nxt < len(seeds):
            try:
                kind, seed, payload = results.get(timeout=2.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerFailed(f"a render worker died (exit code {dead[0].exitcode})") from None
                continue
            if kind == "error":
                raise WorkerFailed(f"render worker failed on seed {seed}: {payload}")
            waiting[index[seed]] = payload
            while nxt in waiting:
                yield waiting.pop(nxt)
                nxt += 1
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


def render_dataset(cfg: RenderConfig, out: str, progress: bool = True) -> dict:
    """Render episodes [done, cfg.episodes) into `out`; returns a summary dict."""
    with Writer(out, store_attrs(cfg), cfg.identity()) as writer:
        done = writer.n_episodes
        seeds = [cfg.seed + i for i in range(done, cfg.episodes)]
        bar = tqdm(
            total=cfg.episodes,
            initial=min(done, cfg.episodes),
            unit="ep",
            desc=f"render {cfg.task}",
            disable=not progress,
            dynamic_ncols=True,
        )
        frames = successes = frames_first = 0
        t_first = None
        # Finished episodes are committed in batches of about cfg.commit_frames frames (or
        # FLUSH_BYTES), on one writer thread in submission order; at most two batches wait in
        # memory. A killed run loses at most the uncommitted batches, re-rendered on resume.
        with ThreadPoolExecutor(max_workers=1) as io:
            pending, batch = [], []

            def flush():
                while len(pending) >= 2:
                    pending.pop(0).result()
                pending.append(io.submit(writer.append_many, list(batch)))
                batch.clear()

            def commit(arrays, info):
                nonlocal frames, successes, t_first, frames_first
                if t_first is None:  # steady-state rate: from the first finished episode on
                    t_first, frames_first = time.perf_counter(), info["length"]
                batch.append((arrays, _record(info)))
                if (
                    sum(len(a["action"]) for a, _ in batch) >= cfg.commit_frames
                    or sum(v.nbytes for a, _ in batch for v in a.values()) >= FLUSH_BYTES
                ):
                    flush()
                frames += info["length"]
                successes += info["success"]
                bar.update(1)
                bar.set_postfix(success=f"{successes}/{bar.n - min(done, cfg.episodes)}")

            # Episodes render in worker processes while this process writes, so writing
            # overlaps rendering even with one worker. Whatever happens, the whole episodes
            # already rendered are committed before leaving.
            try:
                for arrays, info in render_episodes(cfg, seeds) if seeds else ():
                    commit(arrays, info)
            finally:
                if batch:
                    flush()
            for f in pending:
                f.result()
            steady = (frames - frames_first) / (time.perf_counter() - t_first) if len(seeds) > 1 else None
        bar.close()
        return {
            "episodes_written": len(seeds),
            "episodes_total": writer.n_episodes,
            "frames_written": frames,
            "successes": successes,
            "steady_steps_per_s": steady,
        }


def _record(info: dict) -> dict:
    return {
        "seed": info["seed"],
        "success": bool(info["success"]),
        "length": int(info["length"]),
        "params": info["params"],
    }
