"""`realdiff train`: fit RealD²iff's two stages on a pair store's train split.

The coarse stage trains first on whole frames reduced to 1/4 resolution, then the fine stage on
full-resolution patches. Every `val_every` steps the EMA weights generate the first `val_frames`
frames of the validation split and the realism benchmark's fast metrics are logged (tqdm bar and
`<out>.train/log.jsonl`). Each stage checkpoints to `<out>.train/<stage>.pt` (weights, EMA, optimiser,
step, random states; written atomically), so re-running the same command after a kill resumes where
it stopped. The result, `<out>`, holds the EMA weights and the config; it is written last.
`realdiff texture` (add_texture) gives a trained model the sensor-texture stage; it trains nothing.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realdiff import metrics
from realdiff.evaluate import load_split
from realdiff.reald2iff import (COARSE, PAD, ModelConfig, NetConfig, RealD2iff, alpha_sigma, coarse_condition,
                                coarse_target, dequantise, discrepancy_weight, encode_condition,
                                encode_target, fgs_loss, fit_levels, fit_shifts, load_model, q_sample, save_model,
                                texture_tiles, upsample, weighted_mse)


@dataclass
class TrainConfig:
    """Everything a run depends on; printed at the start and saved with every checkpoint."""
    model: ModelConfig = field(default_factory=ModelConfig)
    coarse_iters: int = 3000
    fine_iters: int = 6000
    coarse_batch: int = 8
    fine_batch: int = 12
    patch: int = 128  # fine-stage training patch (pixels, a multiple of 16)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    ema: float = 0.999
    fgs_weight: float = 0.5  # lambda_FGS; 0 trains the coarse stage without FGS
    dgo_beta: float = 4.0  # beta of DGO; 0 trains the fine stage without DGO
    dgo_border: float = 0.5  # DGO's least discrepancy of a reading at a hole's border
    cond_noise: float = 0.1  # std of the conditioning augmentation on the coarse input of the fine stage
    dequantise_radius: int = 2  # de-banding window of the training targets (dequantise); 0 = raw readings
    val_every: int = 500
    val_frames: int = 8
    ckpt_every: int = 250
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: all cores)
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.patch % 16:
            raise ValueError(f"patch {self.patch} must be a multiple of 16")
        if self.model.fine is not None and self.patch % self.model.fine.granularity():
            raise ValueError(f"patch {self.patch} must be a multiple of the fine network's "
                             f"{self.model.fine.granularity()} pixels")
        for k in ("coarse_iters", "fine_iters", "coarse_batch", "fine_batch", "val_every", "ckpt_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d


PRESETS = {
    # about 20 minutes on a 2-core CPU (coarse 3000 iterations, then fine 6000)
    "cpu": {},
    # a CUDA GPU: wider networks, two blocks per level, more and larger batches
    "gpu": {"model": {"coarse": {"in_ch": 4, "widths": (64, 128, 128), "blocks": 2},
                      "fine": {"in_ch": 6, "widths": (64, 128), "blocks": 2, "unshuffle": 2}},
            "coarse_iters": 20000, "fine_iters": 40000, "coarse_batch": 32, "fine_batch": 32,
            "patch": 192, "lr": 1e-3, "device": "cuda"},
    # seconds, for tests
    "tiny": {"model": {"coarse": {"in_ch": 4, "widths": (8, 16)}, "fine": {"in_ch": 6, "widths": (8, 16),
                                                                             "unshuffle": 2},
                       "coarse_steps": 2, "fine_steps": 2},
             "coarse_iters": 20, "fine_iters": 20, "coarse_batch": 2, "fine_batch": 2, "patch": 32,
             "warmup": 5, "val_every": 10, "val_frames": 1, "ckpt_every": 10},
}


def make_config(preset: str = "cpu", **overrides) -> TrainConfig:
    """A preset with overrides (model-level keys: no_coarse, no_fine, name, coarse_steps,
    fine_fold (the fine network's pixels folded per side), ...)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use {', '.join(PRESETS)}")
    base = json.loads(json.dumps(PRESETS[preset]))
    model = ModelConfig(**base.pop("model", {}))
    fold = overrides.pop("fine_fold", None)
    if fold is not None and model.fine is not None:
        model.fine = NetConfig(**{**dataclasses.asdict(model.fine), "unshuffle": int(fold)})
    for k in ("coarse_steps", "fine_steps", "eta", "name"):
        if overrides.get(k) is not None:
            setattr(model, k, overrides.pop(k))
        overrides.pop(k, None)
    if overrides.pop("no_coarse", False):
        model.coarse = None
    if overrides.pop("no_fine", False):
        model.fine = None
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(model=ModelConfig(**model.to_dict()), **base)


# --- data ----------------------------------------------------------------------------------------

class PairData:
    """A split held in memory as torch tensors (clean, real: (N, H, W) float32 metres). With
    `levels`, `target_real` is real depth without its readout banding (`dequantise`): the model
    learns the continuous error and the readout quantises its output."""

    def __init__(self, pairs, split: str, frames: int | None = None):
        clean, real, self.K, self.ids = load_split(pairs, split)
        if frames:
            clean, real, self.ids = clean[:frames], real[:frames], self.ids[:frames]
        H, W = clean.shape[1:]
        if H % PAD or W % PAD:  # crop to a multiple of the networks' granularity
            clean, real = clean[:, :H - H % PAD, :W - W % PAD], real[:, :H - H % PAD, :W - W % PAD]
        self.clean, self.real = torch.from_numpy(np.ascontiguousarray(clean)), torch.from_numpy(np.ascontiguousarray(real))
        self.target_real = self.real

    def use_levels(self, levels: tuple, radius: int = 2) -> None:
        """Train on real depth with the readout banding of these levels undone (radius 0: as read)."""
        if radius > 0:
            self.target_real = torch.cat([dequantise(self.real[s:s + 16], levels, radius)
                                          for s in range(0, len(self.real), 16)])

    def __len__(self):
        return len(self.clean)

    def coarse_set(self, chunk: int = 32):
        """(coarse condition, coarse target) of every frame, (N, 2, H/4, W/4) each."""
        conds, targets = [], []
        for s in range(0, len(self), chunk):
            c, r = self.clean[s:s + chunk], self.target_real[s:s + chunk]
            cond = encode_condition(c)
            conds.append(coarse_condition(cond))
            targets.append(coarse_target(encode_target(c, r), cond))
        return torch.cat(conds), torch.cat(targets)

    def fine_batch(self, rng: np.random.Generator, batch: int, patch: int):
        """Random patches: (cond (B, 2, P, P), target (B, 2, P, P), coarse target (B, 2, P/4, P/4))."""
        N, H, W = self.clean.shape
        i = rng.integers(0, N, batch)
        y = rng.integers(0, (H - patch) // COARSE + 1, batch) * COARSE  # coarse blocks stay aligned
        x = rng.integers(0, (W - patch) // COARSE + 1, batch) * COARSE
        c = torch.stack([self.clean[a, b:b + patch, d:d + patch] for a, b, d in zip(i, y, x)])
        r = torch.stack([self.target_real[a, b:b + patch, d:d + patch] for a, b, d in zip(i, y, x)])
        cond, target = encode_condition(c), encode_target(c, r)
        return cond, target, coarse_target(target, cond)


# --- checkpoints ---------------------------------------------------------------------------------

def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, net, ema, opt, step: int, rng, config: dict) -> None:
    """A stage's state (weights, EMA, optimiser, step, random states, config), written atomically."""
    _atomic_save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                  "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                  "config": json.dumps(config)}, path)


def resume_checkpoint(path: Path, net, ema, opt, rng, config: dict) -> int:
    """Load a checkpoint written by save_checkpoint into these objects and return its step (0 if
    there is none); ValueError if it was made with another config."""
    if not path.is_file():
        return 0
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if json.loads(ck["config"]) != json.loads(json.dumps(config)):
        raise ValueError(f"{path} was made with another config; remove {path.parent} to start afresh")
    net.load_state_dict(ck["net"])
    ema.load_state_dict(ck["ema"])
    opt.load_state_dict(ck["opt"])
    rng.bit_generator.state = json.loads(ck["rng"])
    torch.set_rng_state(ck["torch_rng"])
    return int(ck["step"])


# --- training ------------------------------------------------------------------------------------

def _lr(step: int, cfg: TrainConfig, total: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, total - cfg.warmup)))


def _validate(model: RealD2iff, val: PairData, cfg: TrainConfig, fine: bool = True) -> dict:
    """Fast realism metrics of the current (EMA) model on the first val_frames validation frames
    (fine=False: of its coarse stage alone, while that is the one training)."""
    model.eval()
    clean = val.clean.numpy()
    rngs = [np.random.default_rng([cfg.seed, int(i)]) for i in val.ids]
    gen = np.concatenate([model.generate(clean[s:s + 4], rngs[s:s + 4], fine=fine)
                          for s in range(0, len(clean), 4)])
    s = metrics.score(clean, val.real.numpy(), gen, two_sample=False, seed=cfg.seed)
    return {k: round(float(v), 4) for k, v in s.items()}


def train_stage(stage: str, model: RealD2iff, ema_model: RealD2iff, data: PairData, val: PairData,
                cfg: TrainConfig, work: Path, progress: bool = True, log=None) -> list[float]:
    """Train one stage ('coarse' or 'fine') in place, resuming from work/<stage>.pt; returns losses."""
    net, ema = getattr(model, stage), getattr(ema_model, stage)
    dev = torch.device(cfg.device)
    total = cfg.coarse_iters if stage == "coarse" else cfg.fine_iters
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, 0 if stage == "coarse" else 1])
    torch.manual_seed(cfg.seed)
    path = work / f"{stage}.pt"
    start = resume_checkpoint(path, net, ema, opt, rng, cfg.to_dict())
    if start >= total:
        return []
    if stage == "coarse":
        c_cond, c_target = data.coarse_set()
    net.to(dev).train()
    losses = []
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {stage}", unit="it",
               disable=not progress)
    for step in bar:
        if stage == "coarse":
            i = torch.from_numpy(rng.integers(0, len(c_cond), cfg.coarse_batch))
            cond, x0 = c_cond[i], c_target[i]
            weight = (cond[:, 1:2] > 0).float()
        else:
            cond, target, coarse = data.fine_batch(rng, cfg.fine_batch, cfg.patch)
            if model.coarse is not None:  # the fine stage models what the coarse one leaves
                aug = coarse + cfg.cond_noise * torch.randn_like(coarse)
                up = upsample(aug)
                x0 = torch.cat([target[:, :1] - upsample(coarse)[:, :1], target[:, 1:]], 1)
            else:
                up = torch.zeros_like(cond)
                up[:, 1] = -1
                x0 = target
            cond = torch.cat([cond, up], 1)
            weight = discrepancy_weight(target, cond[:, 1:2], beta=cfg.dgo_beta, border=cfg.dgo_border)
        cond, x0, weight = cond.to(dev), x0.to(dev), weight.to(dev)
        t = torch.rand(len(x0), device=dev)
        noise = torch.randn_like(x0)
        x0_hat = net(q_sample(x0, noise, t), cond, t)
        loss = weighted_mse(x0_hat, x0, weight)
        if stage == "coarse" and cfg.fgs_weight > 0:
            loss = loss + cfg.fgs_weight * fgs_loss(x0_hat[:, 0], x0[:, 0], weight[:, 0], alpha_sigma(t)[0])
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg, total)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p.detach().to(pe.device), 1 - decay)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        done = step + 1
        if done % cfg.ckpt_every == 0 or done == total:
            save_checkpoint(path, net, ema, opt, done, rng, cfg.to_dict())
        if done % cfg.val_every == 0 or done == total:
            m = _validate(ema_model, val, cfg, fine=stage == "fine")
            net.train()
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", w1=m["residual_w1_mm"], f1=m["hole_f1"])
            if log:
                log({"stage": stage, "step": done, "loss": float(np.mean(losses[-cfg.val_every:])), **m})
    net.cpu()
    return losses


def train(pairs, out, cfg: TrainConfig, coarse_from: str | None = None, fine_from: str | None = None,
          progress: bool = True) -> dict:
    """Train both stages (except one copied from another model file with coarse_from / fine_from,
    with its sampling steps, and for the coarse stage its eta: the fine stage is trained on the real
    coarse residual, so the stages are independent) and write the model, EMA weights, to `out`."""
    out = Path(out)
    sources = {}  # a copied stage comes with its sampler: a distilled coarse stage keeps its steps and eta
    for stage, src_path in (("coarse", coarse_from), ("fine", fine_from)):
        if not src_path:
            continue
        if getattr(cfg.model, stage) is None:
            raise ValueError(f"--{stage}-from needs a model with a {stage} stage")
        src, _ = load_model(src_path)
        if getattr(src.cfg, stage) != getattr(cfg.model, stage):
            raise ValueError(f"{src_path}: its {stage} stage does not match this config's")
        if stage == "fine" and (src.coarse is None) != (cfg.model.coarse is None):
            raise ValueError(f"{src_path}: its fine stage was trained {'without' if src.coarse is None else 'with'} "
                             "a coarse stage")
        if stage == "coarse":
            cfg.model.coarse_steps, cfg.model.eta = src.cfg.coarse_steps, src.cfg.eta
        else:
            cfg.model.fine_steps = src.cfg.fine_steps
        sources[stage] = (src, str(src_path))
    work = Path(str(out) + ".train")
    work.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = PairData(pairs, "train")
    if not cfg.model.levels:  # the sensor's readout levels, from the train split
        cfg.model.levels = fit_levels(data.real[::10].numpy())
    data.use_levels(cfg.model.levels, cfg.dequantise_radius)
    val = PairData(pairs, "val", frames=cfg.val_frames)
    if progress:
        shown = json.loads(json.dumps(cfg.to_dict()))
        shown["model"]["levels"] = f"{len(cfg.model.levels)} readout levels"
        print("config: " + json.dumps(shown), flush=True)
    (work / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    torch.manual_seed(cfg.seed)
    model = RealD2iff(cfg.model)
    ema_model = RealD2iff(cfg.model)
    ema_model.load_state_dict(model.state_dict())
    copied = {}
    for stage, (src, src_path) in sources.items():
        getattr(model, stage).load_state_dict(getattr(src, stage).state_dict())
        getattr(ema_model, stage).load_state_dict(getattr(src, stage).state_dict())
        copied[stage] = src_path
    logf = open(work / "log.jsonl", "a")

    def log(rec):
        logf.write(json.dumps(rec) + "\n")
        logf.flush()

    t0, losses = time.time(), {}
    try:
        for stage in ("coarse", "fine"):
            if getattr(model, stage) is not None and stage not in copied:
                losses[stage] = train_stage(stage, model, ema_model, data, val, cfg, work, progress, log)
    finally:
        logf.close()
    meta = {"pairs": str(pairs), "train_frames": len(data), "K": data.K.tolist(),
            "train_config": json.dumps(cfg.to_dict()), "copied": json.dumps(copied),
            "train_seconds": round(time.time() - t0, 1)}
    meta["val"] = json.dumps(_validate(ema_model, val, cfg))  # the finished model's fast metrics
    save_model(ema_model, out, meta)
    return {"out": str(out), "seconds": time.time() - t0, "losses": losses, "meta": meta}


def add_texture(pairs, model_path, out, tiles: int = 256, size: int = 64, seed: int = 0,
                name: str | None = None) -> dict:
    """Give a trained model the sensor-texture stage (realdiff.reald2iff docstring, 5): cut the flat
    tiles of the train split's dequantised real residual, keep `tiles` of them at random, and write
    the model with the bank to `out` (its name + "-texture" unless `name`)."""
    model, meta = load_model(model_path)
    if model.texture is not None:
        raise ValueError(f"{model_path}: already has a texture stage")
    if tiles < 1:
        raise ValueError("--tiles must be >= 1")
    t0 = time.time()
    data = PairData(pairs, "train")
    radius = json.loads(meta.get("train_config", "{}")).get("dequantise_radius", 2)
    data.use_levels(model.cfg.levels, radius)
    bank = texture_tiles(data.clean, data.target_real, size)
    if len(bank) == 0:
        raise ValueError(f"{pairs}: no {size}x{size} tile of the train split is flat enough for a texture bank")
    keep = np.sort(np.random.default_rng(seed).permutation(len(bank))[:tiles])
    meta = _save_with_stage(model, meta, pairs, out,
                            {"texture_tiles": len(keep), "texture_size": size, "name": name or f"{model.cfg.name}-texture"},
                            {"texture": bank[torch.from_numpy(keep)]}, "texture_from",
                            {"pairs": str(pairs), "model": str(model_path), "tiles": len(keep), "of": len(bank),
                             "size": size, "seed": seed}, seed)
    return {"out": str(out), "tiles": len(keep), "candidates": len(bank), "seconds": time.time() - t0,
            "meta": meta}


def add_registration(pairs, model_path, out, radius: int = 6, name: str | None = None) -> dict:
    """Give a model the twin-registration stage (realdiff.reald2iff docstring, 6): fit each train
    frame's shift between its real and clean depth (fit_shifts) and write the model with them to
    `out` (its name + "-shift" unless `name`)."""
    model, meta = load_model(model_path)
    if model.shift_bank is not None:
        raise ValueError(f"{model_path}: already has a registration stage")
    if radius < 1:
        raise ValueError("--radius must be >= 1")
    t0 = time.time()
    data = PairData(pairs, "train")
    shifts = fit_shifts(data.clean, data.real, radius)
    focal = float(data.K[0][0] + data.K[1][1]) / 2
    stats = {"pairs": str(pairs), "model": str(model_path), "radius": radius, "frames": len(shifts),
             "mean": shifts.float().mean(0).tolist(), "std": shifts.float().std(0).tolist(),
             "at_radius": float((shifts.abs() == radius).any(1).float().mean())}
    meta = _save_with_stage(model, meta, pairs, out,
                            {"shifts": len(shifts), "shift_focal": focal, "name": name or f"{model.cfg.name}-shift"},
                            {"shift_bank": shifts.float()}, "shifts_from", stats)
    return {"out": str(out), "seconds": time.time() - t0, "stats": stats, "meta": meta}


def _save_with_stage(model: RealD2iff, meta: dict, pairs, out, config: dict, buffers: dict, key: str,
                     info: dict, seed: int = 0) -> dict:
    """Write `model` with a stage added after training (texture, registration): its config updated
    with `config`, its weights with `buffers`, `info` in the metadata under `key` and the fast
    validation metrics under "val". Returns the metadata."""
    staged = RealD2iff(ModelConfig(**{**model.cfg.to_dict(), **config})).eval()
    staged.load_state_dict({**model.state_dict(), **buffers})
    meta = {**meta, key: json.dumps(info)}
    vcfg = TrainConfig(seed=seed)
    meta["val"] = json.dumps(_validate(staged, PairData(pairs, "val", frames=vcfg.val_frames), vcfg))
    save_model(staged, out, meta)
    return meta
