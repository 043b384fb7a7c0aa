"""`realdiff train`: fit RealD²iff's two stages on a pair store's train split; `realdiff texture`
and `realdiff shift`: add an optional stage to a trained model (they train nothing).

The coarse stage trains first on whole frames reduced to 1/4 resolution, then the fine stage on
full-resolution patches. Every `val_every` steps the EMA weights generate the first `val_frames`
frames of the validation split and the realism benchmark's fast metrics are logged (tqdm bar and
`<out>.train/log.jsonl`). Each stage checkpoints to `<out>.train/<stage>.pt`, so re-running the
same command after a kill resumes where it stopped. The result, `<out>`, holds the EMA weights and
the config; it is written last.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from plumbing.training import JsonlLog, Trainer, ema_warmup
from realdiff import metrics
from realdiff.pairs import load_split
from realdiff.reald2iff.checkpoint import ModelFile, load_model, save_model
from realdiff.reald2iff.config import COARSE, PAD, TrainConfig
from realdiff.reald2iff.model import (
    RealD2iff,
    alpha_sigma,
    coarse_condition,
    coarse_target,
    dequantise,
    discrepancy_weight,
    encode_condition,
    encode_target,
    fgs_loss,
    fit_levels,
    q_sample,
    upsample,
    weighted_mse,
)
from realdiff.reald2iff.noiser import draft, generate, read_out
from realdiff.reald2iff.stages import (
    EdgeStage,
    ReadoutStage,
    RegistrationStage,
    TextureStage,
    fit_edge_swaps,
    fit_grid,
    fit_shifts,
    isolated_readings,
    texture_tiles,
)

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
            clean, real = clean[:, : H - H % PAD, : W - W % PAD], real[:, : H - H % PAD, : W - W % PAD]
        self.clean = torch.from_numpy(np.ascontiguousarray(clean))
        self.real = torch.from_numpy(np.ascontiguousarray(real))
        self.target_real = self.real

    def use_levels(self, levels: tuple, radius: int = 2) -> None:
        """Train on real depth with the readout banding of these levels undone (radius 0: as read)."""
        if radius > 0:
            self.target_real = torch.cat(
                [dequantise(self.real[s : s + 16], levels, radius) for s in range(0, len(self.real), 16)]
            )

    def __len__(self):
        return len(self.clean)

    def coarse_set(self, chunk: int = 32):
        """(coarse condition, coarse target) of every frame, (N, 2, H/4, W/4) each."""
        conds, targets = [], []
        for s in range(0, len(self), chunk):
            c, r = self.clean[s : s + chunk], self.target_real[s : s + chunk]
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
        c = torch.stack([self.clean[a, b : b + patch, d : d + patch] for a, b, d in zip(i, y, x)])
        r = torch.stack([self.target_real[a, b : b + patch, d : d + patch] for a, b, d in zip(i, y, x)])
        cond, target = encode_condition(c), encode_target(c, r)
        return cond, target, coarse_target(target, cond)


def validate(
    model: RealD2iff,
    val: PairData,
    seed: int,
    fine: bool = True,
    stages: ModelFile | None = None,
) -> dict:
    """Fast realism metrics of `model` (with the optional stages of the model file `stages`) on the
    frames of `val` (fine=False: of its coarse stage alone, while that is the one training)."""
    model.eval()
    clean = val.clean.numpy()
    rngs = [np.random.default_rng([seed, int(i)]) for i in val.ids]
    f = stages or ModelFile(model)
    gen = np.concatenate(
        [
            generate(
                model,
                clean[s : s + 4],
                rngs[s : s + 4],
                f.texture,
                f.registration,
                fine,
                edges=f.edges,
                readout=f.readout,
            )
            for s in range(0, len(clean), 4)
        ]
    )
    s = metrics.score(clean, val.real.numpy(), gen, two_sample=False, seed=seed)
    return {k: round(float(v), 4) for k, v in s.items()}


# --- training ------------------------------------------------------------------------------------


def train_stage(
    stage: str,
    model: RealD2iff,
    ema_model: RealD2iff,
    data: PairData,
    val: PairData,
    cfg: TrainConfig,
    work: Path,
    progress: bool = True,
    log=None,
) -> list[float]:
    """Train one stage ('coarse' or 'fine') in place, resuming from work/<stage>.pt; returns losses."""
    net, ema = getattr(model, stage), getattr(ema_model, stage)
    dev = torch.device(cfg.device)
    total = cfg.coarse_iters if stage == "coarse" else cfg.fine_iters
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, 0 if stage == "coarse" else 1])
    torch.manual_seed(cfg.seed)
    trainer = Trainer(
        net,
        ema,
        opt,
        rng,
        total=total,
        lr=cfg.lr,
        warmup=cfg.warmup,
        ckpt=work / f"{stage}.pt",
        config=cfg.to_dict(),
        ckpt_every=cfg.ckpt_every,
        ema_decay=ema_warmup(cfg.ema),
        clip=1.0,
    )
    if trainer.step >= total:
        return []
    if stage == "coarse":
        c_cond, c_target = data.coarse_set()
    net.to(dev).train()
    losses = []
    bar = tqdm(total=total, initial=trainer.step, desc=f"train {stage}", unit="it", disable=not progress)
    for _ in trainer.steps(bar):
        if stage == "coarse":
            i = torch.from_numpy(rng.integers(0, len(c_cond), cfg.coarse_batch))
            cond, x0 = c_cond[i], c_target[i]
            weight = (cond[:, 1:2] > 0).float()
        else:
            cond, target, coarse = data.fine_batch(rng, cfg.fine_batch, cfg.patch)
            if model.coarse is not None:  # the fine stage models what the coarse one leaves
                up = upsample(coarse + cfg.cond_noise * torch.randn_like(coarse))
                x0 = torch.cat([target[:, :1] - upsample(coarse)[:, :1], target[:, 1:]], 1)
            else:
                up = torch.zeros_like(cond)
                up[:, 1] = -1
                x0 = target
            cond = torch.cat([cond, up], 1)
            weight = discrepancy_weight(target, cond[:, 1:2], beta=cfg.dgo_beta, border=cfg.dgo_border)
        cond, x0, weight = cond.to(dev), x0.to(dev), weight.to(dev)
        t = torch.rand(len(x0), device=dev)
        x0_hat = net(q_sample(x0, torch.randn_like(x0), t), cond, t)
        loss = weighted_mse(x0_hat, x0, weight)
        if stage == "coarse" and cfg.fgs_weight > 0:
            loss = loss + cfg.fgs_weight * fgs_loss(x0_hat[:, 0], x0[:, 0], weight[:, 0], alpha_sigma(t)[0])
        trainer.update(loss)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        if trainer.step % cfg.val_every == 0 or trainer.step == total:
            m = validate(ema_model, val, cfg.seed, fine=stage == "fine")
            net.train()
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", w1=m["residual_w1_mm"], f1=m["hole_f1"])
            if log:
                log(
                    {
                        "stage": stage,
                        "step": trainer.step,
                        "loss": float(np.mean(losses[-cfg.val_every :])),
                        **m,
                    }
                )
    bar.close()
    net.cpu()
    return losses


def _copied_stages(cfg: TrainConfig, coarse_from: str | None, fine_from: str | None) -> dict:
    """{stage: (model, path)} of the stages copied from other model files, checked against cfg; the
    config takes a copied stage's sampler (a distilled coarse stage keeps its steps and eta)."""
    sources = {}
    for stage, src_path in (("coarse", coarse_from), ("fine", fine_from)):
        if not src_path:
            continue
        if getattr(cfg.model, stage) is None:
            raise ValueError(f"--{stage}-from needs a model with a {stage} stage")
        src = load_model(src_path).model
        if getattr(src.cfg, stage) != getattr(cfg.model, stage):
            raise ValueError(f"{src_path}: its {stage} stage does not match this config's")
        if stage == "fine" and (src.coarse is None) != (cfg.model.coarse is None):
            raise ValueError(
                f"{src_path}: its fine stage was trained "
                f"{'without' if src.coarse is None else 'with'} a coarse stage"
            )
        if stage == "coarse":
            cfg.model.coarse_steps, cfg.model.eta = src.cfg.coarse_steps, src.cfg.eta
        else:
            cfg.model.fine_steps = src.cfg.fine_steps
        sources[stage] = (src, str(src_path))
    return sources


def train(
    pairs,
    out,
    cfg: TrainConfig,
    coarse_from: str | None = None,
    fine_from: str | None = None,
    progress: bool = True,
) -> dict:
    """Train both stages (except one copied from another model file with coarse_from / fine_from,
    with its sampling steps, and for the coarse stage its eta: the fine stage is trained on the real
    coarse residual, so the stages are independent) and write the model, EMA weights, to `out`."""
    out = Path(out)
    sources = _copied_stages(cfg, coarse_from, fine_from)
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
    for stage, (src, _) in sources.items():
        getattr(model, stage).load_state_dict(getattr(src, stage).state_dict())
        getattr(ema_model, stage).load_state_dict(getattr(src, stage).state_dict())
    log = JsonlLog(work / "log.jsonl", resume_step=None)
    t0, losses = time.time(), {}
    try:
        for stage in ("coarse", "fine"):
            if getattr(model, stage) is not None and stage not in sources:
                losses[stage] = train_stage(stage, model, ema_model, data, val, cfg, work, progress, log)
    finally:
        log.close()
    meta = {
        "pairs": str(pairs),
        "train_frames": len(data),
        "K": data.K.tolist(),
        "train_config": json.dumps(cfg.to_dict()),
        "copied": json.dumps({stage: p for stage, (_, p) in sources.items()}),
        "train_seconds": round(time.time() - t0, 1),
    }
    meta["val"] = json.dumps(validate(ema_model, val, cfg.seed))  # the finished model's fast metrics
    save_model(ema_model, out, meta)
    return {"out": str(out), "seconds": time.time() - t0, "losses": losses, "meta": meta}


# --- adding a stage ------------------------------------------------------------------------------


def add_texture(
    pairs, model_path, out, tiles: int = 256, size: int = 64, seed: int = 0, name: str | None = None
) -> dict:
    """Give a trained model the sensor-texture stage (stages.py, 1): cut the flat tiles of the train
    split's dequantised real residual, keep `tiles` of them at random, and write the model with the
    bank to `out` (its name + "-texture" unless `name`)."""
    f = _load_without(model_path, "texture", "a texture stage")
    if tiles < 1:
        raise ValueError("--tiles must be >= 1")
    t0 = time.time()
    data = PairData(pairs, "train")
    radius = json.loads(f.meta.get("train_config", "{}")).get("dequantise_radius", 2)
    data.use_levels(f.model.cfg.levels, radius)
    bank = texture_tiles(data.clean, data.target_real, size)
    if len(bank) == 0:
        raise ValueError(
            f"{pairs}: no {size}x{size} tile of the train split is flat enough for a texture bank"
        )
    keep = np.sort(np.random.default_rng(seed).permutation(len(bank))[:tiles])
    f.texture = TextureStage(bank[torch.from_numpy(keep)])
    info = {
        "pairs": str(pairs),
        "model": str(model_path),
        "tiles": len(keep),
        "of": len(bank),
        "size": size,
        "seed": seed,
    }
    meta = _save_with_stage(f, pairs, out, name or f"{f.model.cfg.name}-texture", "texture_from", info, seed)
    return {
        "out": str(out),
        "tiles": len(keep),
        "candidates": len(bank),
        "seconds": time.time() - t0,
        "meta": meta,
    }


def add_registration(pairs, model_path, out, radius: int = 6, name: str | None = None) -> dict:
    """Give a model the twin-registration stage (stages.py, 2): fit each train frame's shift between
    its real and clean depth (fit_shifts) and write the model with them to `out` (its name +
    "-shift" unless `name`)."""
    f = _load_without(model_path, "registration", "a registration stage")
    if radius < 1:
        raise ValueError("--radius must be >= 1")
    t0 = time.time()
    data = PairData(pairs, "train")
    shifts = fit_shifts(data.clean, data.real, radius)
    f.registration = RegistrationStage(shifts.float(), float(data.K[0][0] + data.K[1][1]) / 2)
    stats = {
        "pairs": str(pairs),
        "model": str(model_path),
        "radius": radius,
        "frames": len(shifts),
        "mean": shifts.float().mean(0).tolist(),
        "std": shifts.float().std(0).tolist(),
        "at_radius": float((shifts.abs() == radius).any(1).float().mean()),
    }
    meta = _save_with_stage(f, pairs, out, name or f"{f.model.cfg.name}-shift", "shifts_from", stats)
    return {"out": str(out), "seconds": time.time() - t0, "stats": stats, "meta": meta}


def add_edges(
    pairs, model_path, out, max_dist: int = 12, length: float = 32.0, name: str | None = None
) -> dict:
    """Give a model the edge-displacement stage (stages.py, 3): fit the real edge swaps of the train
    split per jump-size bin (fit_edge_swaps) and write the model with them to `out` (its name +
    "-edges" unless `name`)."""
    f = _load_without(model_path, "edges", "an edge stage")
    if max_dist < 1 or length < 1:
        raise ValueError("--max-dist and --length must be >= 1")
    t0 = time.time()
    data = PairData(pairs, "train")
    grown, shrunk = fit_edge_swaps(data.clean.numpy(), data.real.numpy(), max_dist)
    if not grown.any() and not shrunk.any():
        raise ValueError(
            f"{pairs}: no one-sided edge swaps to fit (too few readings beside depth edges in the train "
            "split, or a sensor that does not move its edges)"
        )
    focal = float(data.K[0][0] + data.K[1][1]) / 2
    f.edges = EdgeStage(torch.from_numpy(grown), torch.from_numpy(shrunk), focal, length)
    info = {
        "pairs": str(pairs),
        "model": str(model_path),
        "max_dist": max_dist,
        "length": length,
        "grown": np.round(grown, 4).tolist(),
        "shrunk": np.round(shrunk, 4).tolist(),
    }
    meta = _save_with_stage(f, pairs, out, name or f"{f.model.cfg.name}-edges", "edges_from", info)
    return {"out": str(out), "seconds": time.time() - t0, "stats": info, "meta": meta}


READOUT_SMOOTH = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)  # px: the smoothing widths add_readout tries


def add_readout(
    pairs, model_path, out, frames: int = 32, grid: tuple | None = None, name: str | None = None
) -> dict:
    """Give a model the readout stage (stages.py, 4): the resampling pitch from the train split's
    real frames (fit_grid, unless `grid` is given) and the smoothing width, of READOUT_SMOOTH, whose
    output on the first `frames` train frames has the real's rate of isolated readings; write the
    model with it to `out` (its name + "-readout" unless `name`)."""
    f = _load_without(model_path, "readout", "a readout stage")
    if frames < 1:
        raise ValueError("--frames must be >= 1")
    t0 = time.time()
    data = PairData(pairs, "train")
    focal = float(data.K[0][0] + data.K[1][1]) / 2
    grid = tuple(grid) if grid else fit_grid(data.real.numpy())
    clean, real = data.clean[:frames].numpy(), data.real[:frames].numpy()
    target = isolated_readings(clean, real)
    rngs = [np.random.default_rng([0, int(i)]) for i in data.ids[:frames]]
    drafts = [  # the diffusion stages once; only the readout differs between the widths tried
        draft(
            f.model,
            clean[s : s + 4],
            rngs[s : s + 4],
            f.texture,
            f.registration,
            edges=f.edges,
            readout=ReadoutStage(0.0, grid, focal),
        )
        for s in range(0, len(clean), 4)
    ]
    rates = {}
    for smooth in READOUT_SMOOTH:
        stage = ReadoutStage(smooth, grid, focal)
        rates[smooth] = isolated_readings(
            clean, np.concatenate([read_out(f.model, d, stage) for d in drafts])
        )
    smooth = min(rates, key=lambda k: abs(rates[k] - target))
    f.readout = ReadoutStage(smooth, grid, focal)
    info = {
        "pairs": str(pairs),
        "model": str(model_path),
        "grid": [round(g, 4) for g in grid],
        "smooth": smooth,
        "isolated_real": round(target, 5),
        "isolated_by_smooth": {str(k): round(v, 5) for k, v in rates.items()},
    }
    meta = _save_with_stage(f, pairs, out, name or f"{f.model.cfg.name}-readout", "readout_from", info)
    return {"out": str(out), "seconds": time.time() - t0, "stats": info, "meta": meta}


def _load_without(model_path, stage: str, label: str) -> ModelFile:
    """The model file at model_path; ValueError if it has the stage (ModelFile attribute) already."""
    f = load_model(model_path)
    if getattr(f, stage) is not None:
        raise ValueError(f"{model_path}: already has {label}")
    return f


def _save_with_stage(f: ModelFile, pairs, out, name: str, key: str, info: dict, seed: int = 0) -> dict:
    """Write the model file `f` (a stage just added) to `out` under `name`, with `info` in the
    metadata under `key` and the fast validation metrics under "val". Returns the metadata."""
    f.model.cfg.name = name
    meta = {**f.meta, key: json.dumps(info)}
    val = PairData(pairs, "val", frames=TrainConfig.val_frames)
    meta["val"] = json.dumps(validate(f.model, val, seed, stages=f))
    save_model(f.model, out, meta, f.texture, f.registration, f.edges, f.readout)
    return meta
