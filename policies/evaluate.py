"""`policies eval`: closed-loop rollouts of a trained policy in simgen, each rendered depth frame
passed through a sensor (policies.sensors) before the policy sees it.

Episode i uses task seed `seed + i` (default seed 100000, far from the seeds demonstrations are
rendered with), the sensor's generator default_rng([seed + i, 1]) and the policy's sampling noise
default_rng([seed + i, 2]), so a result is reproducible episode by episode whatever the number
of worker processes. Episodes run in parallel, one process per core.
"""

from __future__ import annotations

import atexit
import json
import math
import os
from collections import deque
from concurrent.futures import as_completed
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

from plumbing.procs import WORKER_ENV, spawn_pool
from policies.data import Normalizer, crop, proprio_from
from policies.model import DiffusionPolicy, PolicyConfig, seeded_noise
from policies.sensors import make_sensor, sensor_label, sensor_model
from policies.train import RUN_VERSION
from realdiff.sensors import per_camera
from simgen.env import Env
from simgen.preview import colorize_depth
from tasks import get_task, make_env

DEFAULT_EVAL_SEED = 100_000


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (0..1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load_run(run: str | Path) -> dict:
    """The trained policy of a run folder (plain data, loaded with weights_only=True)."""
    path = Path(run) / "policy.pt"
    if not path.is_file():
        hint = (
            " (training has not finished: re-run `policies train` to resume)"
            if (Path(run) / "checkpoint.pt").exists()
            else ""
        )
        raise ValueError(f"{run}: no trained policy (policy.pt){hint}")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
        raise ValueError(f"{path}: not a policy file ({type(e).__name__})") from None
    if isinstance(bundle, dict) and bundle.get("version") == "policy-1":  # its crop in pixels
        bundle = _crop_as_fraction(bundle)
    if not isinstance(bundle, dict) or bundle.get("version") != RUN_VERSION:
        raise ValueError(f"{path}: not a policy of version {RUN_VERSION!r}")
    return bundle


def _crop_as_fraction(bundle: dict) -> dict:
    """A policy saved with its crop in pixels (square, of the first camera's height) as one saved
    with the crop as a fraction of the image, the same crop at the training images' size."""
    policy = dict(bundle["config"]["policy"])
    policy["crop"] = policy["crop"] / bundle["cameras"][policy["cameras"][0]]["height"]
    return {**bundle, "version": RUN_VERSION, "config": {**bundle["config"], "policy": policy}}


class Policy:
    """A trained policy acting step by step: keeps the last obs_horizon observations and a queue
    of planned actions, and plans action_horizon new ones whenever the queue runs out."""

    def __init__(self, bundle: dict):
        self.cfg = PolicyConfig(**bundle["config"]["policy"])
        self.model = DiffusionPolicy(self.cfg)
        self.model.load_state_dict(bundle["state_dict"])
        self.model.eval()
        self.norm = Normalizer(**bundle["normalizer"])
        self.task, self.cameras = bundle["task"], bundle["cameras"]
        self.K = {c: np.array(self.cameras[c]["K"]) for c in self.cfg.cameras}
        self.reset()

    def reset(self) -> None:
        self.history: deque = deque(maxlen=self.cfg.obs_horizon)
        self.queue: deque = deque()

    def act(self, depth: dict[str, np.ndarray], state: dict, rng: np.random.Generator) -> np.ndarray:
        """One action (action_dim,) given this step's depth per camera (H, W metres, as the sensor
        reported it) and state (eef_pos, eef_quat, gripper_qpos)."""
        obs = (
            {c: self.norm.depth(c, depth[c]) for c in self.cfg.cameras},
            self.norm.proprio(proprio_from(state)),
        )
        self.history.append(obs)
        while len(self.history) < self.cfg.obs_horizon:  # the first step: repeat it (as in training)
            self.history.appendleft(obs)
        if not self.queue:
            d = {
                c: torch.from_numpy(
                    crop(np.stack([h[0][c] for h in self.history])[None], self.cfg.crop, None).copy()
                )
                for c in self.cfg.cameras
            }
            p = torch.from_numpy(np.stack([h[1] for h in self.history])[None])
            noise = seeded_noise(rng, (1, self.cfg.pred_horizon, self.cfg.action_dim))
            a = self.norm.unnormalize_actions(self.model.sample(d, p, noise)[0].numpy())
            start = self.cfg.obs_horizon - 1
            self.queue.extend(a[start : start + self.cfg.action_horizon])
        return self.queue.popleft()


def rollout(
    env: Env, policy: Policy, sensors: dict, seed: int, record: bool = False, max_steps: int | None = None
) -> dict:
    """One closed-loop episode from task seed `seed` (at most max_steps, default the task's), each
    camera's depth through `sensors[camera]` (None: clean); frames (depth as seen | RGB) when record."""
    env.reset(seed)
    policy.reset()
    sensor_rng, policy_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    held, frames, steps, ranges = 0, [], 0, {}
    for steps in range(1, (max_steps or env.task.max_steps) + 1):  # noqa: B007 (the length, after it)
        obs = env.observe()
        seen = {}
        for c in policy.cfg.cameras:
            d = obs[f"{c}_depth"]
            seen[c] = d if sensors[c] is None else sensors[c].noisify(d[None], policy.K[c], sensor_rng)[0]
        if record:
            for c in policy.cfg.cameras:  # one colour range per camera, from its first clean frame
                if c not in ranges:
                    v = obs[f"{c}_depth"][obs[f"{c}_depth"] > 0]
                    ranges[c] = (
                        (float(np.percentile(v, 1)), float(np.percentile(v, 95))) if v.size else (0.0, 2.0)
                    )
            tiles = [colorize_depth(seen[c], *ranges[c]) for c in policy.cfg.cameras]
            tiles += [obs[f"{c}_rgb"] for c in policy.cfg.cameras if f"{c}_rgb" in obs]
            frames.append(np.concatenate(tiles, 1).repeat(2, 0).repeat(2, 1))
        env.step(policy.act(seen, obs, policy_rng))
        held = held + 1 if env.success() else 0
        if held >= env.task.success_hold:
            break
    eef = env.state()["eef_pos"]
    return {
        "seed": int(seed),
        "success": held >= env.task.success_hold,
        "steps": steps,
        "final_eef_pos": [round(float(v), 6) for v in eef],
        "frames": np.stack(frames) if record else None,
    }


_W: dict = {}  # the worker's policy, sensor and environments


def _close_envs() -> None:
    for env in _W.get("envs", {}).values():
        env.close()  # renderers left open make EGL complain at exit
    _W.clear()


def _init_worker(
    run: str, sensor: str, threads: int, max_steps: int | None, range_scale: dict | None = None
) -> None:
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    torch.set_num_threads(threads)
    policy = Policy(load_run(run))
    _W.update(
        policy=policy,
        sensors=per_camera(make_sensor(sensor), policy.cfg.cameras, range_scale),
        envs={},
        max_steps=max_steps,
    )


def _env(rgb: bool) -> Env:
    """The worker's environment for the policy's task and cameras (with RGB if `rgb`), built once."""
    if rgb not in _W["envs"]:
        p = _W["policy"]
        w, h = (p.cameras[p.cfg.cameras[0]][k] for k in ("width", "height"))
        env = make_env(p.task, list(p.cfg.cameras), w, h, rgb=rgb)
        for name, attrs in env.camera_attrs().items():
            if not np.allclose(attrs["K"], p.cameras[name]["K"], atol=1e-3):
                env.close()
                raise ValueError(
                    f"camera {name}: the simulator's intrinsics differ from the training store's"
                )
        _W["envs"][rgb] = env
        # Ours must run before the EGL display's own exit handler (registered when the first
        # renderer opened it; atexit runs last-registered first), or closing fails at exit.
        atexit.unregister(_close_envs)
        atexit.register(_close_envs)
    return _W["envs"][rgb]


def _episode(seed: int, record: bool) -> dict:
    return rollout(_env(record), _W["policy"], _W["sensors"], seed, record, _W["max_steps"])


def evaluate(
    run: str | Path,
    task: str,
    episodes: int = 50,
    sensor: str = "clean",
    seed: int = DEFAULT_EVAL_SEED,
    workers: int | None = None,
    videos: int = 3,
    out: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    range_scale: dict | None = None,
) -> dict:
    """Roll out `episodes` episodes (each at most max_steps control steps, default the task's); write
    results.json and `videos` MP4s to `out` (default <run>/eval/<task>_<sensor>); returns the summary.
    `range_scale` {camera: s}: that camera's sensor is built s times smaller (RangeScaled)."""
    bundle = load_run(run)
    get_task(task)  # unknown: ValueError naming the known ones
    if bundle["task"] != task:
        raise ValueError(f"{run} is a policy for task {bundle['task']!r}, not {task!r}")
    if episodes < 1:
        raise ValueError("--episodes must be at least 1")
    if max_steps is not None and max_steps < 1:
        raise ValueError("--max-steps must be at least 1")
    model = make_sensor(sensor)  # a bad one fails here
    per_camera(model, bundle["config"]["policy"]["cameras"], range_scale)
    out = Path(out) if out else Path(run) / "eval" / f"{task.replace(':', '_')}_{sensor_label(sensor)}"
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, episodes))
    seeds = [seed + i for i in range(episodes)]
    results = []
    bar = tqdm(total=episodes, desc=f"eval {sensor}", unit="episode", disable=not progress)
    if workers == 1:  # in this process, on one torch thread like a worker (so results match)
        threads = torch.get_num_threads()
        try:
            _init_worker(str(run), sensor, 1, max_steps, range_scale)
            for i, s in enumerate(seeds):
                results.append(_episode(s, i < videos))
                bar.update(1)
        finally:
            torch.set_num_threads(threads)
            _close_envs()
    else:
        with spawn_pool(workers, _init_worker, (str(run), sensor, 1, max_steps, range_scale)) as pool:
            futures = [pool.submit(_episode, s, i < videos) for i, s in enumerate(seeds)]
            for f in as_completed(futures):
                results.append(f.result())
                bar.update(1)
                bar.set_postfix(success=f"{sum(r['success'] for r in results)}/{len(results)}")
    bar.close()
    results.sort(key=lambda r: r["seed"])
    for r in results:
        if r["frames"] is not None:
            iio.imwrite(out / f"episode_{r['seed']}.mp4", r["frames"], fps=20, macro_block_size=1)
    n_ok = sum(r["success"] for r in results)
    lo, hi = wilson_interval(n_ok, episodes)
    summary = {
        "run": str(run),
        "task": task,
        "sensor": sensor,
        "range_scale": range_scale or {},
        "sensor_model": sensor_model(model),
        "episodes": episodes,
        "seed": seed,
        "successes": n_ok,
        "success_rate": n_ok / episodes,
        "ci95": [lo, hi],
        "episodes_detail": [
            {k: r[k] for k in ("seed", "success", "steps", "final_eef_pos")} for r in results
        ],
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    summary["out"] = str(out)
    return summary
