"""`policies train`: fit a diffusion policy to a store's demonstrations, in one plain loop.

A run folder holds:
    config.json      every setting (policy, training, data), written when the run starts
    checkpoint.pt    the training state (weights, EMA, optimiser, step, random states), replaced
                     atomically every `ckpt_every` steps: a killed run resumes from it
    policy.pt        the EMA weights with the config and normaliser, written at the end
    log.jsonl        step, loss and learning rate every `log_every` steps
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from policies.data import PolicyData
from policies.model import DiffusionPolicy, PolicyConfig, n_params

RUN_VERSION = "policy-1"


@dataclass
class TrainConfig:
    steps: int = 8000  # the CPU configuration: about 45 minutes on 2 cores (README)
    batch: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-6
    warmup: int = 200
    ema_power: float = 0.75
    ema_max: float = 0.9999
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 50
    cache_mb: int = 4096  # depth frames held in memory; a 200-demo 2-camera store at 128x128 takes 0.5-1 GB
    max_episodes: int | None = None  # use only the first N episodes of the store
    threads: int | None = None

    def __post_init__(self):
        for k in ("steps", "batch", "ckpt_every", "log_every", "cache_mb"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError("max_episodes must be >= 1")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def ema_decay(step: int, cfg: TrainConfig) -> float:
    """Chi et al.'s EMA warm-up: 1 - (1 + step)^-power, capped at ema_max."""
    return 0.0 if step <= 0 else min(cfg.ema_max, 1 - (1 + step) ** -cfg.ema_power)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run_config(store: str, episodes: int, depth_key: str, cameras, task: str | None, policy: PolicyConfig,
               train: TrainConfig) -> dict:
    return {"version": RUN_VERSION, "store": str(Path(store).resolve()), "episodes": episodes,
            "depth_key": depth_key, "cameras": cameras, "task": task, "policy": policy.to_dict(),
            "train": dataclasses.asdict(train)}


def _identity(conf: dict) -> dict:
    """The settings a resumed run must share with the saved one: all but the cache size, which changes
    only speed."""
    return {**conf, "train": {k: v for k, v in conf["train"].items() if k != "cache_mb"}}


def train(store: str, out: str, depth_key: str, cameras: list[str] | None = None, task: str | None = None,
          policy: PolicyConfig | None = None, cfg: TrainConfig | None = None, progress: bool = True) -> dict:
    """Train (or resume) the run in `out`; returns a summary. ValueError for bad input."""
    cfg = cfg or TrainConfig()
    out = Path(out)
    policy = policy or PolicyConfig()
    data = PolicyData(store, depth_key, cameras, policy.obs_horizon, policy.pred_horizon, cfg.cache_mb,
                      cfg.max_episodes)
    if task is not None and task != data.task:
        raise ValueError(f"{store} holds task {data.task!r}, not {task!r}")
    policy = dataclasses.replace(policy, cameras=tuple(data.keys),
                                 proprio_dim=data.proprio.shape[1], action_dim=data.actions.shape[1])
    conf = json.loads(json.dumps(run_config(store, data.n_episodes, depth_key, list(data.keys), data.task, policy, cfg)))
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if saved.exists() and _identity(json.loads(saved.read_text())) != _identity(conf):
        raise ValueError(f"{out} holds a run with other settings; use a new --out (or delete it)")
    saved.write_text(json.dumps(conf, indent=2))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    torch.manual_seed(cfg.seed)
    model = DiffusionPolicy(policy)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.95, 0.999), weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
            raise ValueError(f"{ckpt}: not a training checkpoint ({type(e).__name__}); delete it to restart") from None
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        rng.bit_generator.state = state["rng"]
        gen.set_state(state["gen"])
        step = state["step"]
    log_path = out / "log.jsonl"
    if log_path.exists():  # a killed run may have logged past its last checkpoint: redone, so dropped
        kept = [line for line in log_path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        log_path.write_text("".join(line + "\n" for line in kept))

    def checkpoint():
        _atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                      "rng": rng.bit_generator.state, "gen": gen.get_state(), "step": step}, ckpt)

    if progress and step == 0:
        print(f"policy: {n_params(model) / 1e6:.2f} M parameters; {data.n_episodes} episodes, "
              f"{len(data)} sequences; cameras {', '.join(f'{c}={k}' for c, k in data.keys.items())}")
    bar = tqdm(total=cfg.steps, initial=step, desc="train policy", unit="step", disable=not progress)
    log = open(log_path, "a")
    t0, losses = time.perf_counter(), []
    model.train()
    while step < cfg.steps:
        batch = data.batch(rng.integers(0, len(data), cfg.batch), policy.crop, rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = model.loss(batch["depth"], batch["proprio"], batch["action"], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():
            d = ema_decay(step, cfg)
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        losses.append(loss.item())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {"step": step, "loss": float(np.mean(losses)), "lr": lr_at(step - 1, cfg),
                   "elapsed_s": round(time.perf_counter() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            losses = []
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint()
    bar.close()
    log.close()
    save_policy(ema, data, conf, out / "policy.pt")
    return {"out": str(out), "steps": step, "episodes": data.n_episodes, "sequences": len(data)}


def save_policy(model: DiffusionPolicy, data: PolicyData, conf: dict, path: Path) -> None:
    """The deployable policy: weights and plain data only (loads with weights_only=True)."""
    _atomic_save({"version": RUN_VERSION, "config": conf, "normalizer": dataclasses.asdict(data.normalizer), "cameras": data.cameras,
                  "depth_keys": data.keys, "task": data.task,
                  "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}, path)
