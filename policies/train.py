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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from plumbing.training import JsonlLog, Trainer, atomic_save, ema_power
from policies.data import PolicyData
from policies.model import DiffusionPolicy, PolicyConfig, n_params

RUN_VERSION = "policy-2"  # 2: the crop is a fraction of the image


@dataclass
class TrainConfig:
    steps: int = 8000  # the CPU configuration: about 45 minutes on 2 cores (docs/policies.md)
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


def run_config(
    store: str,
    episodes: int,
    depth_key: str,
    cameras,
    task: str | None,
    policy: PolicyConfig,
    train: TrainConfig,
) -> dict:
    return {
        "version": RUN_VERSION,
        "store": str(Path(store).resolve()),
        "episodes": episodes,
        "depth_key": depth_key,
        "cameras": cameras,
        "task": task,
        "policy": policy.to_dict(),
        "train": dataclasses.asdict(train),
    }


def _identity(conf: dict) -> dict:
    """The settings a resumed run must share with the saved one: all but the cache size, which changes
    only speed."""
    return {**conf, "train": {k: v for k, v in conf["train"].items() if k != "cache_mb"}}


def train(
    store: str,
    out: str,
    depth_key: str,
    cameras: list[str] | None = None,
    task: str | None = None,
    policy: PolicyConfig | None = None,
    cfg: TrainConfig | None = None,
    progress: bool = True,
) -> dict:
    """Train (or resume) the run in `out`; returns a summary. ValueError for bad input."""
    cfg = cfg or TrainConfig()
    out = Path(out)
    policy = policy or PolicyConfig()
    data = PolicyData(
        store, depth_key, cameras, policy.obs_horizon, policy.pred_horizon, cfg.cache_mb, cfg.max_episodes
    )
    if task is not None and task != data.task:
        raise ValueError(f"{store} holds task {data.task!r}, not {task!r}")
    policy = dataclasses.replace(
        policy, cameras=tuple(data.keys), proprio_dim=data.proprio.shape[1], action_dim=data.actions.shape[1]
    )
    conf = json.loads(
        json.dumps(run_config(store, data.n_episodes, depth_key, list(data.keys), data.task, policy, cfg))
    )
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
    trainer = Trainer(
        model,
        ema,
        opt,
        rng,
        total=cfg.steps,
        lr=cfg.lr,
        warmup=cfg.warmup,
        ckpt=out / "checkpoint.pt",
        config=_identity(conf),
        ckpt_every=cfg.ckpt_every,
        ema_decay=ema_power(cfg.ema_power, cfg.ema_max),
        generator=gen,
    )
    log = JsonlLog(out / "log.jsonl", resume_step=trainer.step)  # drops what a killed run logged past it
    if progress and trainer.step == 0:
        print(
            f"policy: {n_params(model) / 1e6:.2f} M parameters; {data.n_episodes} episodes, "
            f"{len(data)} sequences; cameras {', '.join(f'{c}={k}' for c, k in data.keys.items())}"
        )
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc="train policy", unit="step", disable=not progress)
    t0, losses = time.perf_counter(), []
    model.train()
    for _ in trainer.steps(bar):
        batch = data.batch(rng.integers(0, len(data), cfg.batch), policy.crop, rng)
        loss = model.loss(batch["depth"], batch["proprio"], batch["action"], gen)
        trainer.update(loss)
        losses.append(loss.item())
        if trainer.step % cfg.log_every == 0 or trainer.step == cfg.steps:
            log(
                {
                    "step": trainer.step,
                    "loss": float(np.mean(losses)),
                    "lr": trainer.lr_now(),
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
            losses = []
    bar.close()
    log.close()
    save_policy(ema, data, conf, out / "policy.pt")
    return {"out": str(out), "steps": trainer.step, "episodes": data.n_episodes, "sequences": len(data)}


def save_policy(model: DiffusionPolicy, data: PolicyData, conf: dict, path: Path) -> None:
    """The deployable policy: weights and plain data only (loads with weights_only=True)."""
    atomic_save(
        {
            "version": RUN_VERSION,
            "config": conf,
            "normalizer": dataclasses.asdict(data.normalizer),
            "cameras": data.cameras,
            "depth_keys": data.keys,
            "task": data.task,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        },
        path,
    )
